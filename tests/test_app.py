"""Pilot tests of the dashboard: keys, views and in-place updates, on fake collectors with time frozen."""

from __future__ import annotations

import threading
import time
from dataclasses import replace
from datetime import timedelta

import pytest
from tui_fakes import (
    NOW,
    FakeCollector,
    chime,
    fake_config,
    frozen_clock,
    gbo_stale,
    kko,
    tasks_for,
    with_service,
    world,
)

from dtmon import format as fmt
from dtmon.app import DtmonApp, stylesheet
from dtmon.model import SiteStatus
from dtmon.screens.detail import DetailScreen
from dtmon.screens.help import HelpScreen, class_bindings, key_name
from dtmon.widgets.header import SiteChips
from dtmon.widgets.table import ServicesTable

WIDE = (160, 48)
SMALL = (80, 24)


async def until(pilot, condition, timeout: float = 30.0) -> None:  # generous: a loaded machine is slow, a pass is not
    """Let the app run until `condition()` holds (fails the test after `timeout`)."""
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"condition never held: {condition}")
        await pilot.pause(0.02)


def make_app(collectors=None, refresh: float = 3600.0) -> DtmonApp:
    return DtmonApp(fake_config(refresh), collectors=collectors or world(), clock=frozen_clock)


def table_keys(app: DtmonApp) -> list[str]:
    table = app.query_one(ServicesTable)
    return [table.coordinate_to_cell_key((i, 0))[0].value for i in range(table.row_count)]


async def polled(pilot, app: DtmonApp, count: int | None = None) -> None:
    await until(pilot, lambda: app.polls >= (count if count is not None else len(app.order)))
    await pilot.pause()


class Spy:
    """Counts the table's cell updates, row additions and removals."""

    def __init__(self, table: ServicesTable) -> None:
        self.updates: list[tuple[str, str]] = []
        self.added: list[str] = []
        self.removed: list[str] = []
        update, add, remove = table.update_cell, table.add_row, table.remove_row

        def update_cell(row_key, column_key, value, **kw):
            self.updates.append((str(row_key), str(column_key)))
            return update(row_key, column_key, value, **kw)

        def add_row(*cells, key=None, **kw):
            self.added.append(key)
            return add(*cells, key=key, **kw)

        def remove_row(row_key):
            self.removed.append(str(row_key))
            return remove(row_key)

        table.update_cell, table.add_row, table.remove_row = update_cell, add_row, remove_row


def test_stylesheet_is_found():
    assert stylesheet().name == "dtmon.tcss"
    assert stylesheet().is_file()


async def test_rows_appear_keyed_and_grouped():
    app = make_app()
    async with app.run_test(size=WIDE) as pilot:
        await polled(pilot, app)
        keys = table_keys(app)
        assert keys == [r.key for r in fmt.build_rows([chime(), kko(), gbo_stale()], NOW)]
        assert keys[:2] == ["site:chime", "stack:chime/datatrail"]
        assert "chime/datatrail-daemons_inventory" in keys
        chips = app.query_one(SiteChips).shown
        assert chips["chime"].text == "chime ▲3"  # fresh data: no ticking age; a fast poll: no latency figure
        assert chips["chime"].state == "problems"
        assert chips["gbo"].state == "unreachable"
        assert app.query_one(ServicesTable).ordered_columns[3].key.value == "tag"  # wide layout


async def test_refresh_updates_only_changed_cells_and_keeps_the_cursor():
    collectors = world()
    app = make_app(collectors)
    async with app.run_test(size=WIDE) as pilot:
        await polled(pilot, app)
        table = app.query_one(ServicesTable)
        target = "kko/datatrail-client_replicator"
        await pilot.press(*["down"] * table_keys(app).index(target))
        assert table.cursor_key == target
        spy = Spy(table)

        # Same data again: nothing is touched at all.
        await pilot.press("r")
        await polled(pilot, app, 6)
        assert (spy.updates, spy.added, spy.removed) == ([], [], [])

        # chime's degraded stager recovers (so it moves down its stack) and a new kko service appears.
        stager = "chime/datatrail-daemons_replication_stager_kko"
        collectors[0].status = with_service(chime(), stager, running=2, state="running", error=None, error_at=None)
        stack = kko().stacks[0]
        new = replace(stack.services[0], service="aaa_new", name="datatrail-client_aaa_new")
        collectors[1].status = replace(kko(), stacks=(replace(stack, services=(new,) + stack.services),))
        row_before = table.cursor_row
        await pilot.press("r")
        await polled(pilot, app, 9)
        assert table.cursor_key == target  # the cursor stays on its service
        assert table.cursor_row == row_before + 1  # one row was added above it
        assert spy.added == ["kko/datatrail-client_aaa_new"] and spy.removed == []
        assert {row for row, _ in spy.updates} == {
            stager, "stack:chime/datatrail-daemons", "site:chime", "stack:kko/datatrail-client", "site:kko"}
        assert sorted(col for row, col in spy.updates if row == stager) == ["error", "replicas", "state"]
        assert table_keys(app) == [r.key for r in fmt.build_rows(app.site_list(), NOW)]


async def test_age_ticks_do_not_touch_the_table():
    app = DtmonApp(fake_config(), collectors=world(), clock=frozen_clock, tick=0.05)
    async with app.run_test(size=WIDE) as pilot:
        await polled(pilot, app)
        spy = Spy(app.query_one(ServicesTable))
        await pilot.pause(0.3)  # several ticks with time frozen
        assert spy.updates == [] and spy.added == []


async def test_filter_narrows_rows_and_escape_clears_it():
    app = make_app()
    async with app.run_test(size=WIDE) as pilot:
        await polled(pilot, app)
        everything = table_keys(app)
        await pilot.press("slash")
        assert app.focused.id == "filter"
        await pilot.press(*"inventory")
        assert table_keys(app) == ["site:chime", "stack:chime/datatrail-daemons", "chime/datatrail-daemons_inventory"]
        await pilot.press("enter")
        assert isinstance(app.focused, ServicesTable)
        assert 'filter "inventory"' in app.query_one("#status").text
        await pilot.press("escape")
        assert table_keys(app) == everything
        assert app.view.filter == ""
        # Typing "q" into the filter filters; it does not quit.
        await pilot.press("slash", "q")
        assert app.is_running and app.view.filter == "q"
        await pilot.press("escape")
        assert table_keys(app) == everything


async def test_problems_only_toggle():
    app = make_app()
    async with app.run_test(size=WIDE) as pilot:
        await polled(pilot, app)
        everything = table_keys(app)
        await pilot.press("p")
        services = [k for k in table_keys(app) if not k.startswith(("site:", "stack:"))]
        assert set(services) >= {"chime/datatrail-daemons_inventory", "chime/datatrail-client_update_canfar_certificates"}
        assert "kko/datatrail-client_replicator" not in services
        assert "site:gbo" in table_keys(app)  # unreachable sites stay visible
        await pilot.press("p")
        assert table_keys(app) == everything


async def test_help_lists_every_binding():
    app = make_app()
    async with app.run_test(size=WIDE) as pilot:
        await polled(pilot, app)
        await pilot.press("question_mark")
        assert isinstance(app.screen, HelpScreen)
        text = "\n".join(str(w.render()) for w in app.screen.query("Static"))
        for cls in (DtmonApp, ServicesTable, DetailScreen):
            for binding in class_bindings(cls):
                if binding.action == "select_cursor" and cls is not ServicesTable:
                    continue
                description = binding.tooltip or binding.description
                assert description in text, (cls.__name__, binding.key)
                assert key_name(binding) in text
        assert "Move a page up / down" in text  # the table keys, in words of ours
        await pilot.press("escape")
        assert not isinstance(app.screen, HelpScreen)


async def test_enter_opens_detail_with_tasks_and_logs_and_refreshes_it():
    collectors = world()
    app = make_app(collectors, refresh=0.1)
    async with app.run_test(size=WIDE) as pilot:
        await polled(pilot, app)
        target = "chime/datatrail-daemons_inventory"
        await pilot.press(*["down"] * table_keys(app).index(target))
        await pilot.press("enter")
        assert isinstance(app.screen, DetailScreen)
        screen = app.screen
        assert screen.service.key == target
        await until(pilot, lambda: screen.fetches >= 1)
        tasks = screen.query_one("#tasks")
        assert [tasks.coordinate_to_cell_key((i, 0))[0].value for i in range(tasks.row_count)] == ["t-new", "t-old"]
        log = screen.query_one("#logs")
        assert [strip.text.rstrip() for strip in log.lines] == [
            f"datatrail-daemons_inventory log line {i}" for i in range(1, 6)
        ]
        assert "down" in str(screen.query_one("#detail-summary").render())
        await until(pilot, lambda: screen.fetches >= 3)  # refreshed while open
        assert len(log.lines) == 5  # the same tail is not appended twice
        await pilot.press("escape")
        assert not isinstance(app.screen, DetailScreen)
        fetched = collectors[0].details
        await pilot.pause(0.3)
        assert collectors[0].details == fetched  # closed: no more fetches


async def test_an_empty_log_says_so():
    def no_logs(service):
        from dtmon.collectors.swarm import ServiceDetail

        return ServiceDetail(tasks=tasks_for(service).tasks, logs=())

    collectors = [FakeCollector(chime(), detail=no_logs), *world()[1:]]
    app = make_app(collectors)
    async with app.run_test(size=WIDE) as pilot:
        await polled(pilot, app)
        await pilot.press(*["down"] * table_keys(app).index("chime/datatrail-daemons_inventory"))
        await pilot.press("enter")
        screen = app.screen
        assert isinstance(screen, DetailScreen)
        await until(pilot, lambda: screen.fetches >= 1)
        assert len(screen.query_one("#logs").lines) == 0
        assert str(screen.query_one("#logs-label").render()) == "logs — no log lines"


async def test_a_crash_loops_detail_says_how_long_and_how_many():
    looping = with_service(chime(), "chime/datatrail-daemons_inventory", state="crashloop", running=1,
                           failed_recent=4, failed_capped=True, looping_since=NOW - timedelta(minutes=25))
    app = make_app([FakeCollector(looping), *world()[1:]])
    async with app.run_test(size=WIDE) as pilot:
        await polled(pilot, app)
        await pilot.press(*["down"] * table_keys(app).index("chime/datatrail-daemons_inventory"))
        await pilot.press("enter")
        screen = app.screen
        assert isinstance(screen, DetailScreen)
        summary = str(screen.query_one("#detail-summary").render())
        assert summary.startswith("crashloop · 1/1 running")
        assert "crash-looping for ≥25m · ≥4 failed recently" in summary
        assert screen.query_one("#detail-summary").has_class("-error")


async def test_enter_on_a_group_row_folds_it():
    app = make_app()
    async with app.run_test(size=WIDE) as pilot:
        await polled(pilot, app)
        everything = table_keys(app)
        table = app.query_one(ServicesTable)
        daemons = "stack:chime/datatrail-daemons"
        table.move_cursor(row=everything.index(daemons))
        await pilot.press("enter")
        assert not isinstance(app.screen, DetailScreen)
        keys = table_keys(app)
        assert daemons in keys and "chime/datatrail-daemons_inventory" not in keys
        assert table.cursor_key == daemons  # the cursor stays on the folded stack
        assert table.row_for(daemons).cells[0].text == "▸ datatrail-daemons"
        await pilot.press("enter")
        assert table_keys(app) == everything
        # On a site row: every stack of the site folds, then unfolds.
        table.move_cursor(row=0)
        await pilot.press("enter")
        assert [k for k in table_keys(app) if k.startswith("chime/")] == []
        assert [k for k in table_keys(app) if k.startswith("stack:chime/")] == [
            "stack:chime/datatrail", "stack:chime/datatrail-daemons", "stack:chime/datatrail-client"]
        await pilot.press("enter")
        assert table_keys(app) == everything


async def test_failing_site_keeps_stale_data_with_its_error():
    collectors = world(chime(), kko())
    app = make_app(collectors)
    async with app.run_test(size=WIDE) as pilot:
        await polled(pilot, app)
        good = table_keys(app)
        failed = replace(kko(), reachable=False, error="timed out after 1s", error_since=NOW)
        collectors[1].status = failed
        await pilot.press("r")
        await polled(pilot, app, 4)
        assert table_keys(app) == good  # the last good data stays
        table = app.query_one(ServicesTable)
        site = table.row_for("site:kko")
        assert "timed out after 1s" in site.cells[-1].text
        assert site.cells[2].text == "unreachable"
        assert all(c.tone == fmt.MUTED for c in table.row_for("kko/datatrail-client_replicator").cells)
        assert app.query_one(SiteChips).state("kko") == "unreachable"


async def test_a_collector_that_raises_is_shown_not_fatal():
    class Broken(FakeCollector):
        def poll(self):
            self.polls += 1
            raise RuntimeError("boom")

    broken = Broken(SiteStatus("hco", False))
    app = make_app([FakeCollector(kko()), broken], refresh=0.05)
    async with app.run_test(size=WIDE) as pilot:
        await until(pilot, lambda: broken.polls >= 3)  # polled again after failing
        assert app.is_running
        assert app.sites["hco"].error == "RuntimeError: boom"
        assert "RuntimeError: boom" in app.query_one(ServicesTable).row_for("site:hco").cells[-1].text


async def test_a_slow_site_delays_no_other_and_polls_never_pile_up():
    slow, fast = FakeCollector(chime()), FakeCollector(kko())
    slow.gate = threading.Event()
    app = make_app([slow, fast], refresh=0.05)
    async with app.run_test(size=WIDE) as pilot:
        await until(pilot, lambda: fast.polls >= 4)  # kko keeps being polled while chime hangs
        assert "site:kko" in table_keys(app)
        assert app.query_one(SiteChips).state("chime") == "pending"
        await pilot.press("r", "r", "r")
        await pilot.pause(0.2)
        assert slow.polls == 0
        assert len([w for w in app.workers if w.group == "poll-chime"]) == 1  # one poll in flight, not four
        slow.gate.set()
        await until(pilot, lambda: "site:chime" in table_keys(app) and slow.polls >= 1)
        slow.gate = None


async def test_polls_pause_while_the_app_is_suspended():
    collectors = world(kko())
    app = make_app(collectors, refresh=0.05)
    async with app.run_test(size=SMALL) as pilot:
        await until(pilot, lambda: collectors[0].polls >= 2)
        app.app_suspend_signal.publish(app)  # what Textual does on ctrl+z
        await pilot.pause(0.15)
        paused_at = collectors[0].polls
        await pilot.pause(0.4)
        assert collectors[0].polls <= paused_at + 1  # at most the poll already in flight
        app.app_resume_signal.publish(app)
        await until(pilot, lambda: collectors[0].polls >= paused_at + 3)


async def test_compact_layout_at_80x24():
    app = make_app()
    async with app.run_test(size=SMALL) as pilot:
        await polled(pilot, app)
        table = app.query_one(ServicesTable)
        assert [c.key.value for c in table.ordered_columns] == [c.key for c in fmt.COMPACT_COLUMNS]
        width = sum(c.get_render_width(table) for c in table.ordered_columns)
        assert width <= 80
        await pilot.resize_terminal(*WIDE)
        await until(pilot, lambda: len(table.ordered_columns) == len(fmt.WIDE_COLUMNS))


async def test_layout_gives_the_table_every_line_but_three():
    app = make_app()
    async with app.run_test(size=SMALL) as pilot:
        await polled(pilot, app)
        regions = {w.id: w.region for w in app.screen.query("#sitebar, #services, #statusbar")}
        assert regions["sitebar"].y == 0 and regions["sitebar"].height == 1
        assert regions["statusbar"].y == 22 and regions["statusbar"].height == 1  # just above the footer
        assert regions["services"].height == 21  # site chips, status line and footer take one line each
        title, status = app.query_one("#title"), app.query_one("#status")
        assert title.region.width == len(app.title) + 2 and status.region.x == title.region.right
        assert "27 services" in status.text


async def test_quit_closes_collectors():
    collectors = world()
    app = make_app(collectors)
    async with app.run_test(size=SMALL) as pilot:
        await polled(pilot, app)
        await pilot.press("q")
    assert all(c.closed for c in collectors)


@pytest.mark.parametrize("key", ["p", "slash"])
async def test_dashboard_keys_are_off_on_the_detail_screen(key):
    app = make_app()
    async with app.run_test(size=WIDE) as pilot:
        await polled(pilot, app)
        await pilot.press(*["down"] * table_keys(app).index("chime/datatrail_server"), "enter")
        assert isinstance(app.screen, DetailScreen)
        await pilot.press(key)
        assert app.view == fmt.View(compact=False)
        assert isinstance(app.screen, DetailScreen)


INSTALLED_CHECK = """
import asyncio, sys
import dtmon
from dtmon.app import DtmonApp, stylesheet
from dtmon.config import Config

async def main():
    app = DtmonApp(Config(path=None), collectors=[])
    async with app.run_test(size=(80, 24)) as pilot:
        await pilot.pause()
        # Only styles/dtmon.tcss hides the filter box until "/" is pressed.
        print(dtmon.__file__, stylesheet(), app.query_one("#filter").display)

asyncio.run(main())
"""


@pytest.mark.slow
def test_pip_install_ships_the_stylesheet(tmp_path):
    """`pip install .` (not only an editable checkout) finds styles/dtmon.tcss as dtmon.styles."""
    import shutil
    import subprocess
    import sys
    from pathlib import Path

    root = Path(__file__).resolve().parent.parent
    src = tmp_path / "src"  # a copy: building in place would leave build/ and egg-info in the checkout
    src.mkdir()
    for name in ("pyproject.toml", "README.md"):
        shutil.copy(root / name, src / name)
    for name in ("dtmon", "styles"):
        shutil.copytree(root / name, src / name, ignore=shutil.ignore_patterns("__pycache__"))
    target = tmp_path / "target"
    subprocess.run(
        [sys.executable, "-m", "pip", "install", "--quiet", "--no-deps", "--target", str(target), str(src)],
        check=True, capture_output=True, timeout=300,
    )
    out = subprocess.run(
        [sys.executable, "-c", INSTALLED_CHECK], env={"PYTHONPATH": str(target), "PATH": "/usr/bin:/bin"},
        cwd=tmp_path, check=True, capture_output=True, text=True, timeout=120,
    ).stdout.split()
    assert out[0].startswith(str(target))  # the installed copy, not the checkout
    assert out[1] == str(target / "dtmon" / "styles" / "dtmon.tcss")
    assert out[2] == "False"


async def test_the_dashboard_on_the_demo_world_through_the_real_collectors():
    """End to end: SwarmCollectors in worker threads, over the Engine API the demo serves on unix sockets."""
    import dataclasses

    from dtmon.config import load
    from dtmon.demo import Demo
    from dtmon.demo.world import DEGRADED, MISSING, UNEXPECTED

    with Demo(timeout=3.0) as demo:
        config = dataclasses.replace(load(demo.config_path), buckets=None, prometheus=None)
        app = DtmonApp(config, title_suffix="demo")
        async with app.run_test(size=WIDE) as pilot:
            await until(pilot, lambda: all(s.polled_at is not None for s in app.sites.values()), timeout=15)
            await pilot.pause()
            table = app.query_one(ServicesTable)
            state = [c.key for c in fmt.WIDE_COLUMNS].index("state")

            def row(site_and_name):
                return table.row_for(f"{site_and_name[0]}/{site_and_name[1]}")

            assert row(DEGRADED).cells[state].text == "degraded"
            assert row(MISSING).cells[state].text == "missing"
            assert row(UNEXPECTED).cells[0].text.startswith("? ")
            # The table holds exactly what the collectors returned, in display order.
            assert table_keys(app) == [r.key for r in fmt.build_rows(app.site_list(), app.clock())]
            table.move_cursor(row=table_keys(app).index(f"{DEGRADED[0]}/{DEGRADED[1]}"))
            await pilot.press("enter")
            screen = app.screen
            assert isinstance(screen, DetailScreen)
            await until(pilot, lambda: screen.fetches >= 1, timeout=10)
            assert screen.error is None and screen.detail.tasks  # fetched from the engine
            assert screen.query_one("#tasks").row_count == len(screen.detail.tasks)
            assert len(screen.query_one("#logs").lines) == len(screen.detail.logs) > 0


async def test_a_row_added_above_does_not_move_the_cursor_on_screen():
    collectors = world()
    app = make_app(collectors)
    async with app.run_test(size=SMALL) as pilot:
        await polled(pilot, app)
        table = app.query_one(ServicesTable)
        target = "kko/datatrail-client_replication_healer"
        await pilot.press(*["down"] * (table_keys(app).index(target) + 4), *["up"] * 4)
        await pilot.pause()
        assert table.cursor_key == target and table.scroll_y > 0  # scrolled down, cursor mid-screen
        line_on_screen = table.cursor_row - table.scroll_y
        stack = chime().stacks[0]
        extra = replace(stack.services[0], service="aaa_new", name="datatrail_aaa_new")
        collectors[0].status = replace(chime(), stacks=(replace(stack, services=(extra,) + stack.services),)
                                       + chime().stacks[1:])
        await pilot.press("r")
        await polled(pilot, app, 6)
        await pilot.pause()
        assert table.cursor_key == target
        assert table.cursor_row - table.scroll_y == line_on_screen  # same line of the screen as before


async def test_a_cell_change_repaints_its_row_not_the_whole_table(monkeypatch):
    from textual.widgets import DataTable

    collectors = world()
    app = make_app(collectors)
    async with app.run_test(size=WIDE) as pilot:
        await polled(pilot, app)
        table = app.query_one(ServicesTable)
        calls: list[tuple[int, bool]] = []  # (number of regions, layout) of each refresh that went through
        original = DataTable.refresh

        def spy(self, *regions, **kw):
            if self is table:
                calls.append((len(regions), kw.get("layout", False)))
            return original(self, *regions, **kw)

        monkeypatch.setattr(DataTable, "refresh", spy)
        # One replicator's tag changes: one cell of one row, no reordering.
        key = "kko/datatrail-client_replicator"
        collectors[1].status = with_service(kko(), key, image="chimefrb/maestro-datatrail:v3.5.0")
        await pilot.press("r")
        await polled(pilot, app, 4)
        await pilot.pause()
        assert table.row_for(key).cells[3].text == "v3.5.0"
        assert calls and all(regions == 1 and not layout for regions, layout in calls)  # row regions only


async def test_a_chip_change_repaints_that_chip_only(monkeypatch):
    from textual.widget import Widget

    collectors = world()
    app = make_app(collectors)
    app.config = replace(app.config, slow_poll_ms=0)  # every latency shown: the chip that changes is kko's
    async with app.run_test(size=WIDE) as pilot:
        await polled(pilot, app)
        chips = app.query_one(SiteChips)
        regions = []
        original = Widget.refresh

        def spy(self, *args, **kw):
            if self is chips:
                regions.append((args, kw.get("layout", False)))
            return original(self, *args, **kw)

        monkeypatch.setattr(Widget, "refresh", spy)
        collectors[1].status = replace(kko(), latency_ms=51.0)  # within the noise: the chip stays as it is
        await pilot.press("r")
        await polled(pilot, app, 6)
        assert chips.shown["kko"].text == "kko ✓ 48ms" and regions == []
        collectors[1].status = replace(kko(), latency_ms=91.0)  # "kko ✓ 48ms" -> "kko ✓ 91ms": same width
        await pilot.press("r")
        await polled(pilot, app, 9)
        assert chips.shown["kko"].text == "kko ✓ 91ms"
        x = len(" chime ▲3 12ms ") + 1
        assert regions == [(((x, 0, len(" kko ✓ 91ms "), 1),), False)]


async def test_a_fast_poll_keeps_its_latency_off_the_chip():
    """Below slow_poll_ms (500 ms by default) a chip carries no latency, so its jitter repaints nothing;
    a slow poll shows it."""
    collectors = world()
    app = make_app(collectors)
    async with app.run_test(size=WIDE) as pilot:
        await polled(pilot, app)
        chips = app.query_one(SiteChips)
        assert chips.shown["kko"].text == "kko ✓"
        collectors[1].status = replace(kko(), latency_ms=1534.0)
        await pilot.press("r")
        await polled(pilot, app, 6)
        assert chips.shown["kko"].text == "kko ✓ 1.5s"
