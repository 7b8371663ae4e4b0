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
