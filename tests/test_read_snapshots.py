"""SVG snapshots of the read-only screens (log pane with sources and a search; later nodes, inspect) at 80×24
and 120×40, on the fixed fake world with time frozen. Update with `--snapshot-update` and look at the result."""

from __future__ import annotations

import pytest
from test_logs import detail_with_sources
from test_snapshots import keys_to, polled, settle
from tui_fakes import FakeCollector, chime, fake_config, frozen_clock, kko

from dtmon.app import DtmonApp
from dtmon.screens.detail import DetailScreen

SIZES = pytest.mark.parametrize("size", [(80, 24), (120, 40)], ids=["80x24", "120x40"])


def app_with_sources() -> DtmonApp:
    collectors = [FakeCollector(chime(), detail=detail_with_sources), FakeCollector(kko())]
    return DtmonApp(fake_config(), title_suffix="test", collectors=collectors, clock=frozen_clock, tick=3600)


@SIZES
def test_log_pane_with_sources_times_and_a_search(snap_compare, size):
    async def run_before(pilot):
        await polled(pilot)
        await pilot.press(*keys_to(pilot, "chime/datatrail-daemons_inventory"), "enter")
        await settle(pilot, lambda: isinstance(pilot.app.screen, DetailScreen) and pilot.app.screen.fetches >= 1)
        await pilot.press("T", "slash", *"error", "enter", "n")
        await pilot.pause()

    assert snap_compare(app_with_sources(), terminal_size=size, run_before=run_before)


def app_with_nodes() -> DtmonApp:
    from dataclasses import replace

    from dtmon.model import NodeInfo

    nodes = (NodeInfo("n1", "frb-vsop", "manager", "ready", "active", True, "20.10.24", 14),
             NodeInfo("n2", "outrigger_buffer", "manager", "ready", "drain", False, "20.10.24", 0),
             NodeInfo("n3", "frb-compute-7", "worker", "down", "active", False, "20.10.21", 0))
    collectors = [FakeCollector(replace(chime(), nodes=nodes)),
                  FakeCollector(replace(kko(), nodes=(NodeInfo("k1", "aux.kko", "manager", "ready", "active", True,
                                                                "24.0.7", 6),)))]
    return DtmonApp(fake_config(), title_suffix="test", collectors=collectors, clock=frozen_clock, tick=3600)


@SIZES
def test_nodes_screen(snap_compare, size):
    async def run_before(pilot):
        await polled(pilot)
        await pilot.press("n")
        await pilot.pause()

    assert snap_compare(app_with_nodes(), terminal_size=size, run_before=run_before)


@SIZES
def test_overview_counts_bad_nodes(snap_compare, size):
    assert snap_compare(app_with_nodes(), terminal_size=size, run_before=polled)
