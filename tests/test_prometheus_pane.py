"""The progress pane: pure rows (bars, counts, feeds, summary) and Pilot tests of polling and in-place updates."""

from __future__ import annotations

import threading
import time
from dataclasses import replace
from datetime import datetime, timedelta, timezone
from pathlib import Path

import pytest
from textual.app import App, ComposeResult

from dtmon.collectors.prometheus import derive
from dtmon.format import ERROR, MUTED, SUCCESS, WARNING
from dtmon.model import FeedCheck, ProgressReport
from dtmon.widgets.progress import (
    FeedsTable,
    ProgressPane,
    ProgressTable,
    bar,
    feed_rows,
    progress_columns,
    progress_rows,
    progress_summary,
    resample,
)

NOW = datetime(2026, 11, 25, 12, 0, tzinfo=timezone.utc)
URL = "http://p:9090"


def report(*progress, feeds=(), errors=(), reachable=True, polled_at=NOW) -> ProgressReport:
    return ProgressReport(URL, reachable, None if reachable else f"{URL}: connection refused", 4.0, polled_at, "24h",
                          tuple(progress), tuple(feeds), tuple(errors))


CHIME = derive("chime", "replication", 300.0, 2400.0, 5.0, "24h", (900.0, 600.0, 300.0))
KKO = derive("kko", "deletion", 0.0, 48.0, 0.0, "24h")
UP = FeedCheck("targets_up", (("instance", "a:1"), ("job", "j")), 1.0, True, "target job=j instance=a:1: up")
PG_DOWN = FeedCheck("pg_up", (("instance", "pg"),), 0.0, False, "pg_up instance=pg: 0")


def cell(row, compact: bool, column: str):
    return row.cells[[c.key for c in progress_columns(compact)].index(column)]


# -- pure ----------------------------------------------------------------------------------------


def test_short_count_fits_seven_cells():
    from dtmon.widgets.progress import short_count

    assert [short_count(v) for v in (None, 0.0, 179_996.0, 999_999.0, 1_234_567.0, 98_765_432.0, 3.2e9)] == \
        ["-", "0", "179,996", "999,999", "1.23M", "98.8M", "3.20G"]
    from dtmon.widgets.progress import short_rate

    assert [short_rate(v) for v in (None, 7200.0, 9999.0, 123_456.0, 4_500_000.0)] == \
        ["-", "7,200/h", "9,999/h", "123k/h", "4.5M/h"]


def test_bar_and_resample():
    assert bar(0, 4) == "░░░░" and bar(99.9, 4) == "███░" and bar(100, 4) == "████" and bar(None, 3) == "···"
    assert resample(list(range(49)), 5) == [0, 12, 24, 36, 48]
    assert resample([1.0, 2.0], 8) == [1.0, 2.0]


def test_progress_rows_wide_and_compact():
    wide = progress_rows(report(CHIME, KKO))
    assert [r.key for r in wide] == ["chime/replication", "kko/deletion"]
    chime, kko = wide
    assert cell(chime, False, "bar").text == "████████████░░  88.9%"
    assert [cell(chime, False, k).text for k in ("pending", "done", "failed", "rate", "eta")] == \
        ["300", "2,400", "5", "100/h", "3h00m"]
    assert cell(chime, False, "failed").tone == WARNING
    assert cell(chime, False, "trend").text == "█▅▁"
    assert cell(kko, False, "bar").tone == SUCCESS and cell(kko, False, "eta").text == "done"
    compact = progress_rows(report(CHIME, KKO), compact=True)
    assert cell(compact[0], True, "kind").text == "repl" and cell(compact[1], True, "kind").text == "del"
    fixed = sum(c.width + 2 for c in progress_columns(True) if c.width)
    assert fixed + 2 + 10 <= 79  # the sparkline keeps 10 cells beside the scrollbar at 80 columns
    stale = progress_rows(report(CHIME, reachable=False))
    assert {c.tone for c in stale[0].cells} == {MUTED}


def test_feed_rows_put_failed_queries_then_bad_feeds_first():
    rows = feed_rows(report(feeds=(UP, PG_DOWN), errors=("deletion_done: bad_data: parse error",)))
    assert [r.key for r in rows] == [
        "query/deletion_done", 'feed/pg_up/[["instance","pg"]]', 'feed/targets_up/[["instance","a:1"],["job","j"]]'
    ]
    assert rows[0].cells[0].tone == ERROR and rows[0].cells[3].text == "deletion_done: bad_data: parse error"
    assert [c.text for c in rows[1].cells] == ["BAD", "pg_up", "0", "pg_up instance=pg: 0"]
    assert rows[2].cells[0].text == "ok" and rows[2].cells[0].tone == SUCCESS


def test_summary():
    text, tone = progress_summary(report(CHIME, feeds=(UP, PG_DOWN), errors=("x: y",)), NOW)
    assert tone == "problems"
    assert text == f"prometheus {URL} · window 24h · feeds 1/2 ok · 1 query failed"
    slow = progress_summary(replace(report(CHIME), latency_ms=2500.0), NOW)[0]
    assert slow == f"prometheus {URL} · slow: 2.5s · window 24h · feeds 0/0 ok"
    assert progress_summary(report(CHIME, feeds=(UP,)), NOW)[1] == "ok"
    text, tone = progress_summary(report(CHIME, reachable=False, polled_at=NOW - timedelta(minutes=3)), NOW)
    assert tone == "unreachable" and text.endswith("connection refused; showing data from 3m ago")
    assert progress_summary(None, NOW)[1] == "pending"


# -- Pilot ---------------------------------------------------------------------------------------


class Host(App):
    def __init__(self, pane: ProgressPane) -> None:
        super().__init__()
        self.pane = pane

    def compose(self) -> ComposeResult:
        yield self.pane


def spy_updates(table) -> list[tuple[str, str]]:
    updates: list[tuple[str, str]] = []
    original = table.update_cell

    def update_cell(row_key, column_key, value, **kw):
        updates.append((str(row_key), str(column_key)))
        return original(row_key, column_key, value, **kw)

    table.update_cell = update_cell
    return updates


async def test_pane_shows_rows_and_updates_only_changed_cells():
    pane = ProgressPane(clock=lambda: NOW)
    async with Host(pane).run_test(size=(160, 30)) as pilot:
        pane.show(report(CHIME, KKO, feeds=(UP, PG_DOWN)))
        await pilot.pause()
        table = pane.query_one(ProgressTable)
        assert table.compact is False
        assert str(table.get_cell("chime/replication", "pending")) == "300"
        assert str(table.get_cell("kko/deletion", "eta")) == "done"
        feeds = pane.query_one(FeedsTable)
        assert feeds.row_count == 2
        summary = pane.query_one("#progress-summary")
        assert summary.has_class("-problems")

        updates = spy_updates(table)
        moved = derive("chime", "replication", 240.0, 2460.0, 5.0, "24h", (900.0, 600.0, 300.0))
        pane.show(report(moved, KKO, feeds=(UP, PG_DOWN)))
        await pilot.pause()
        assert {key for key, _ in updates} == {"chime/replication"}
        assert {col for _, col in updates} == {"bar", "pending", "done", "rate", "eta"}
        assert str(table.get_cell("chime/replication", "pending")) == "240"
        updates.clear()
        pane.show(report(moved, KKO, feeds=(UP, PG_DOWN)))
        await pilot.pause()
        assert updates == []  # the same data touches nothing

        pane.show(report(moved, KKO, feeds=(UP,)))
        await pilot.pause()
        assert summary.has_class("-ok") and not summary.has_class("-problems")
        assert feeds.row_count == 1


class FakeCollector:
    """Stands in for PrometheusCollector: hands out prepared reports, counting polls (from worker threads)."""

    def __init__(self, reports: list[ProgressReport]) -> None:
        self.reports = reports
        self.last = ProgressReport(URL, reachable=False, error="not polled yet")
        self.calls = 0
        self.threads: set[str] = set()
        self.closed = False

    def poll(self) -> ProgressReport:
        self.threads.add(threading.current_thread().name)
        self.last = self.reports[min(self.calls, len(self.reports) - 1)]
        self.calls += 1
        return self.last

    def close(self) -> None:
        self.closed = True


async def test_pane_polls_in_a_thread_and_schedules_the_next_poll_when_done():
    fake = FakeCollector([report(CHIME), report(CHIME, KKO), report(CHIME, reachable=False)])
    pane = ProgressPane(fake, refresh=0.05, clock=lambda: NOW)
    async with Host(pane).run_test(size=(120, 30)) as pilot:
        table = pane.query_one(ProgressTable)
        deadline = time.monotonic() + 5
        while pane.polls < 3 and time.monotonic() < deadline:
            await pilot.pause(0.02)
        assert pane.polls >= 3
        assert threading.main_thread().name not in fake.threads
        assert [table.coordinate_to_cell_key((i, 0))[0].value for i in range(table.row_count)] == \
            ["chime/replication", "kko/deletion"][: table.row_count]
        assert pane.query_one("#progress-summary").has_class("-unreachable")
    assert fake.closed


async def test_pane_at_80_by_24_is_compact_and_fits():
    pane = ProgressPane(clock=lambda: NOW)
    async with Host(pane).run_test(size=(80, 24)) as pilot:
        pane.show(report(CHIME, KKO, feeds=(UP, PG_DOWN)))
        table = pane.query_one(ProgressTable)
        deadline = time.monotonic() + 5
        while table.compact is not True and time.monotonic() < deadline:
            await pilot.pause(0.02)
        assert table.compact is True
        assert [c.key for c in table.columns.values()] == [c.key for c in progress_columns(True)]
        assert sum(c.get_render_width(table) for c in table.columns.values()) <= 80
        assert str(table.get_cell("chime/replication", "kind")) == "repl"
        assert pane.query_one(FeedsTable).region.height >= 3  # the feeds stay visible under the rows


async def test_dashboard_at_80x24_has_a_progress_tab_one_key_away(tmp_path: Path):
    """The whole app with a [prometheus] that refuses: the progress tab is reachable with its key."""
    from dtmon.app import DtmonApp
    from dtmon.config import load
    from dtmon.widgets.views import Views

    from promserver import closed_port_url

    url = closed_port_url()
    path = tmp_path / "config.toml"
    path.write_text(f'timeout = 1.0\nrefresh = 30.0\n[prometheus]\nurl = "{url}"\n')
    app = DtmonApp(load(path), collectors=[])
    async with app.run_test(size=(80, 24)) as pilot:
        pane = app.query_one(ProgressPane)
        views = app.query_one(Views)
        deadline = time.monotonic() + 15
        while views.tabbed is None and time.monotonic() < deadline:
            await pilot.pause(0.02)
        assert views.tabbed is True and not pane.display
        index = views.views.index(pane)
        await pilot.press(str(index + 1))
        await pilot.pause()
        assert pane.display and views.active == index
        deadline = time.monotonic() + 15
        while pane.polls < 1 and time.monotonic() < deadline:
            await pilot.pause(0.05)
        summary = pane.query_one("#progress-summary")
        assert summary.has_class("-unreachable"), (pane.polls, pane.report)
        assert f"{url}: connection refused" in str(summary.render())
        await pilot.press("1")
        await pilot.pause()
        assert not pane.display and views.active == 0


# -- SVG snapshots -------------------------------------------------------------------------------

HISTORY = tuple(float(v) for v in (900, 880, 860, 800, 700, 650, 600, 560, 500, 420, 380, 300))
SNAPSHOT_REPORT = report(
    derive("chime", "replication", 43200.0, 172800.0, 10800.0, "24h", tuple(v * 48 for v in HISTORY)),
    derive("chime", "deletion", 900.0, 64800.0, 10800.0, "24h", HISTORY),
    derive("kko", "replication", 0.0, 86400.0, 21600.0, "24h", tuple(reversed(HISTORY))),
    derive("kko", "deletion", 3600.0, 0.0, 0.0, "24h", (3600.0,) * 12),
    derive("gbo", "replication", 1800.0, 21600.0, 0.0, "24h"),
    feeds=(UP, PG_DOWN, FeedCheck("push_age", (("instance", "chime"), ("job", "metric_pusher")), 75.0, True,
                                  "last push job=metric_pusher instance=chime: 1m ago")),
    errors=("deletion_failed: bad_data: 1:14: parse error: unexpected end of input",),
)


class SnapshotHost(App):
    def compose(self) -> ComposeResult:
        yield ProgressPane(clock=lambda: NOW)

    def on_mount(self) -> None:
        self.query_one(ProgressPane).show(SNAPSHOT_REPORT)


@pytest.mark.parametrize("size", [(80, 24), (160, 48)], ids=["80x24", "160x48"])
def test_pane_snapshot(snap_compare, size):
    async def settled(pilot):
        table = pilot.app.query_one(ProgressTable)
        deadline = time.monotonic() + 5
        while (table.compact is not (size[0] < 120) or table.row_count != 5) and time.monotonic() < deadline:
            await pilot.pause(0.02)
        await pilot.pause()

    assert snap_compare(SnapshotHost(), terminal_size=size, run_before=settled)
