"""SVG snapshots of the dashboard at 80×24 and 160×48 on a fixed fake world, time frozen.

Update after an intended change with `pytest tests/test_snapshots.py --snapshot-update` and look at
the report before committing.
"""

from __future__ import annotations

import time

import pytest
from tui_fakes import fake_config, frozen_clock, world

from dtmon.app import DtmonApp
from dtmon.screens.detail import DetailScreen

SMALL = (80, 24)
WIDE = (160, 48)


def make_app() -> DtmonApp:
    # tick=3600: the age tick never fires during a snapshot (time is frozen anyway).
    return DtmonApp(fake_config(), title_suffix="test", collectors=world(), clock=frozen_clock, tick=3600)


async def settle(pilot, condition, timeout: float = 5.0) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, "the app never settled"
        await pilot.pause(0.02)
    await pilot.pause()


async def polled(pilot) -> None:
    app = pilot.app
    await settle(pilot, lambda: app.polls >= len(app.order))


def keys_to(pilot, key: str) -> list[str]:
    table = pilot.app.query_one("#services")
    keys = [table.coordinate_to_cell_key((i, 0))[0].value for i in range(table.row_count)]
    return ["down"] * keys.index(key)


@pytest.mark.parametrize("size", [SMALL, WIDE], ids=["80x24", "160x48"])
def test_overview(snap_compare, size):
    assert snap_compare(make_app(), terminal_size=size, run_before=polled)


@pytest.mark.parametrize("size", [SMALL, WIDE], ids=["80x24", "160x48"])
def test_problems_only(snap_compare, size):
    async def run_before(pilot):
        await polled(pilot)
        await pilot.press("p")

    assert snap_compare(make_app(), terminal_size=size, run_before=run_before)


def test_filter_box(snap_compare):
    async def run_before(pilot):
        await polled(pilot)
        await pilot.press("slash", *"stager")

    assert snap_compare(make_app(), terminal_size=SMALL, run_before=run_before)


@pytest.mark.parametrize("size", [SMALL, WIDE], ids=["80x24", "160x48"])
def test_detail(snap_compare, size):
    async def run_before(pilot):
        await polled(pilot)
        await pilot.press(*keys_to(pilot, "chime/datatrail-daemons_inventory"), "enter")
        await settle(pilot, lambda: isinstance(pilot.app.screen, DetailScreen) and pilot.app.screen.fetches >= 1)

    assert snap_compare(make_app(), terminal_size=size, run_before=run_before)


def test_help(snap_compare):
    async def run_before(pilot):
        await polled(pilot)
        await pilot.press("question_mark")

    assert snap_compare(make_app(), terminal_size=WIDE, run_before=run_before)
