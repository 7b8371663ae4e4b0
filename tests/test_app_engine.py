"""The dashboard against real engines: what the table shows is what `docker service ls` reports."""

from __future__ import annotations

import dataclasses
import time

import pytest

from dtmon import format as fmt
from dtmon.app import DtmonApp
from dtmon.config import load
from dtmon.screens.detail import DetailScreen
from dtmon.widgets.table import ServicesTable

pytestmark = pytest.mark.engine

COLUMNS = [c.key for c in fmt.WIDE_COLUMNS]


async def until(pilot, condition, timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"condition never held: {condition}")
        await pilot.pause(0.05)


def cell(table: ServicesTable, key: str, column: str) -> str:
    row = table.row_for(key)
    assert row is not None, key
    return row.cells[COLUMNS.index(column)].text


async def test_table_matches_docker_service_ls_and_detail_shows_engine_tasks(world):
    app = DtmonApp(load(world.config))
    async with app.run_test(size=(160, 48)) as pilot:
        await until(pilot, lambda: all(s.polled_at is not None for s in app.sites.values()))
        table = app.query_one(ServicesTable)
        # Readings of the engines taken around one look at the table; services whose reading moved
        # in between (the failing one restarts all the time) are compared by what must hold anyway.
        before = {site: engine.service_ls() for site, engine in world.engines.items()}
        await pilot.pause()
        shown = {r.key: r for r in table.shown_rows if r.kind == "service"}
        after = {site: engine.service_ls() for site, engine in world.engines.items()}
        compared = 0
        for site, readings in before.items():
            for name, (running, desired) in readings.items():
                if after[site].get(name) != (running, desired):
                    continue
                assert cell(table, f"{site}/{name}", "replicas") == f"{running}/{desired}", (site, name)
                compared += 1
        assert compared >= len(shown) - 3  # every deployed service but the one restarting

        site, name = world.degraded
        assert (cell(table, f"{site}/{name}", "replicas"), cell(table, f"{site}/{name}", "state")) == ("1/2", "degraded")
        site, name = world.missing
        assert cell(table, f"{site}/{name}", "state") == "missing"
        site, name = world.unexpected
        assert cell(table, f"{site}/{name}", "service").startswith("? ")
        site, name = world.failing
        failing = f"{site}/{name}"
        assert "non-zero exit (1)" in cell(table, failing, "error")
        assert int(cell(table, failing, "failed").lstrip("≥") or 0) >= 3  # "≥4" once the task history is full
        assert cell(table, failing, "state") == "crashloop"

        # Its detail: tasks straight from the engine, the failed ones with their error.
        table.move_cursor(row=[r.key for r in table.shown_rows].index(failing))
        await pilot.press("enter")
        screen = app.screen
        assert isinstance(screen, DetailScreen)
        await until(pilot, lambda: screen.fetches >= 1)
        assert screen.error is None
        errors = [t.error for t in screen.detail.tasks if t.error]
        assert "task: non-zero exit (1)" in errors
        assert screen.query_one("#tasks").row_count == len(screen.detail.tasks)


async def test_a_hung_manager_goes_stale_on_screen_while_the_other_site_keeps_updating(world):
    # Polled every 0.5 s even while the event streams are open: a SIGSTOPped engine keeps its stream open
    # and silent, so only a poll finds it hung (with the default events.refresh, within 60 s).
    config = load(world.write_config(timeout=2.0, refresh=0.5))
    config = dataclasses.replace(config, events=dataclasses.replace(config.events, refresh=0.5))
    chime = world.engines["chime"]
    app = DtmonApp(config)
    async with app.run_test(size=(160, 48)) as pilot:
        await until(pilot, lambda: all(s.reachable for s in app.sites.values()))
        table = app.query_one(ServicesTable)
        keys_before = [r.key for r in table.shown_rows]
        chime.pause()
        try:
            await until(pilot, lambda: not app.sites["chime"].reachable, timeout=15)
            kko_polled = app.sites["kko"].polled_at
            await until(pilot, lambda: app.sites["kko"].polled_at > kko_polled, timeout=5)  # not held up
            assert [r.key for r in table.shown_rows] == keys_before  # chime's last good data stays
            site = table.row_for("site:chime")
            assert site.cells[COLUMNS.index("state")].text == "unreachable"
            assert "timed out" in site.cells[COLUMNS.index("error")].text
            server = table.row_for("chime/datatrail_server")
            assert all(c.tone == fmt.MUTED for c in server.cells)  # dimmed
            assert app.query_one("#chips").state("chime") == "unreachable"
        finally:
            chime.resume()
            chime.wait_manager()
        await until(pilot, lambda: app.sites["chime"].reachable, timeout=30)
        assert table.row_for("chime/datatrail_server").cells[COLUMNS.index("state")].tone == fmt.SUCCESS


async def test_crash_loops_read_the_same_at_every_poll_without_flicker(world):
    """Over a whole cycle of the slow loop (runs ~12 s, then fails), polled twice a second: both loops read
    `crashloop` and chime's chip counts the same problems at every poll, never dropping one while a task runs."""
    chime = world.engines["chime"]
    slow = world.slow_loop[1]
    chime.wait_until(lambda: sum(1 for t in chime.tasks(slow) if (t.get("Status") or {}).get("State") == "failed") >= 3,
                     120, "the slow loop to fail three times", interval=1.0)
    app = DtmonApp(load(world.write_config(refresh=0.5)))
    async with app.run_test(size=(160, 48)) as pilot:
        await until(pilot, lambda: all(s.polled_at is not None for s in app.sites.values()))
        from dtmon.widgets.header import SiteChips

        table = app.query_one(ServicesTable)
        chips = app.query_one(SiteChips)
        seen: set[tuple[str, str, str]] = set()
        slow_running = set()
        polls, started = app.polls, time.monotonic()
        while time.monotonic() - started < 16:
            await pilot.pause(0.1)
            mark = chips.shown["chime"].text.split()[1]
            seen.add((mark, cell(table, f"chime/{world.failing[1]}", "state"), cell(table, f"chime/{slow}", "state")))
            slow_running.add(cell(table, f"chime/{slow}", "replicas"))
        assert app.polls - polls >= 10
        # inventory, healing_stager, replication_stager_kko (degraded), update_canfar_certificates (missing)
        assert seen == {("▲4", "crashloop", "crashloop")}, seen
        assert "1/1" in slow_running  # it did run in between
        site_row = table.row_for("site:chime")
        assert site_row.cells[COLUMNS.index("state")].text == "4 problems"
