"""The buckets pane: pure rows (marks, tones, compact names) and Pilot tests of in-place, cell-level updates."""

from __future__ import annotations

import time
from dataclasses import replace
from datetime import datetime, timedelta, timezone

from textual.app import App, ComposeResult

from dtmon.format import ERROR, MUTED, WARNING
from dtmon.model import BucketsReport, BucketStatus
from dtmon.widgets.buckets import (
    GROWING_MARK,
    PROBLEM_MARK,
    BucketsPane,
    BucketsTable,
    bucket_columns,
    bucket_rows,
    buckets_summary,
    common_prefix,
    short_consumer,
)

NOW = datetime(2026, 11, 25, 12, 0, tzinfo=timezone.utc)
KKO, HEAL, STATE = "datatrail-replicator-kko-minoc", "datatrail-replica-heal", "datatrail-state-updater"


def bucket(name: str, queued: int, **kw) -> BucketStatus:
    base = dict(running=1, success=10, failure=0, total=queued + 11, consumer=f"kko/{name}", consumer_state="running")
    base.update(kw)
    return BucketStatus(name, queued, **base)


def report(*buckets: BucketStatus, reachable: bool = True, polled_at: datetime | None = NOW) -> BucketsReport:
    return BucketsReport("http://b:8004", reachable, None if reachable else "http://b:8004: HTTP 500", 3.0,
                         polled_at, buckets)


def cell(row, compact: bool, column: str):
    keys = [c.key for c in bucket_columns(compact)]
    return row.cells[keys.index(column)]


# -- pure ----------------------------------------------------------------------------------------


def test_rows_put_problems_first_then_growing_queues_and_mark_them():
    rows = bucket_rows(report(
        bucket(STATE, 0),
        bucket(KKO, 5, growing=True, history=(1, 2, 4, 5), rate_per_hour=120.0),
        bucket(HEAL, 3, consumer_state="down", problem="3 queued, consumer not running"),
    ))
    assert [r.key for r in rows] == [HEAL, KKO, STATE]
    heal, kko, state = rows
    assert cell(heal, False, "bucket").text == f"{PROBLEM_MARK} {HEAL}" and cell(heal, False, "bucket").tone == ERROR
    assert cell(heal, False, "state").text == "down" and cell(heal, False, "state").tone == ERROR
    assert cell(kko, False, "bucket").text == f"{GROWING_MARK} {KKO}" and cell(kko, False, "queued").tone == WARNING
    assert cell(kko, False, "trend").text == "▁▃▆█"
    assert cell(kko, False, "rate").text == "+120/h"
    assert cell(state, False, "bucket").text == f"  {STATE}"
    assert [cell(state, False, k).text for k in ("queued", "running", "success", "failure", "total")] == \
        ["0", "1", "10", "0", "11"]


def test_compact_rows_drop_the_shared_prefix_and_fit_80_columns():
    rows = bucket_rows(report(bucket(KKO, 1), bucket(HEAL, 2)), compact=True)
    assert [cell(r, True, "bucket").text for r in rows] == ["  replica-heal", "  replicator-kko-minoc"]
    assert [cell(r, True, "consumer").text for r in rows] == [f"kko/{HEAL}", "kko/datatrail-replicator-kko-minoc"]
    down = bucket(KKO, 1, consumer="kko/datatrail-client_replicator", consumer_state="down", problem="x")
    compact_down = cell(bucket_rows(report(down), compact=True)[0], True, "consumer")
    assert (compact_down.text, compact_down.tone, compact_down.bold) == ("down kko/replicator", ERROR, True)
    heal = bucket(HEAL, 1, consumer="*/datatrail-client_*_healer",
                  consumers=(("chime/datatrail-client_deletion_healer", "running"),
                             ("kko/datatrail-client_deletion_healer", "running")))
    assert cell(bucket_rows(report(heal), compact=True)[0], True, "consumer").text == "*/*_healer (2)"
    assert cell(bucket_rows(report(heal))[0], False, "consumer").text == "*/datatrail-client_*_healer (2)"
    assert short_consumer("kko/datatrail-client_replicator") == "kko/replicator"
    fixed = sum(c.width + 2 for c in bucket_columns(True) if c.width)
    assert fixed + 2 + 10 <= 79  # the flexible consumer column keeps at least 10 cells plus the scrollbar
    assert common_prefix([KKO, HEAL]) == "datatrail-"
    assert common_prefix(["a-b", "a-"]) == ""
    assert common_prefix([]) == ""


def test_stale_rows_are_dimmed_and_the_summary_says_why():
    stale = report(bucket(KKO, 4), reachable=False, polled_at=NOW - timedelta(minutes=3))
    assert {c.tone for c in bucket_rows(stale)[0].cells} == {MUTED}
    text, tone = buckets_summary(stale, NOW)
    assert tone == "unreachable"
    assert text == "buckets UNREACHABLE: http://b:8004: HTTP 500; showing data from 3m ago"
    text, tone = buckets_summary(report(bucket(KKO, 4, problem="x"), bucket(HEAL, 1, growing=True)), NOW)
    assert tone == "problems" and f"{PROBLEM_MARK} 1 with work waiting" in text and f"{GROWING_MARK} 1 growing" in text
    assert "5 queued" in text
    assert buckets_summary(None, NOW)[1] == "pending"


# -- Pilot ---------------------------------------------------------------------------------------


class Host(App):
    def compose(self) -> ComposeResult:
        yield BucketsPane()


class Spy:
    def __init__(self, table: BucketsTable) -> None:
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


def keys(table: BucketsTable) -> list[str]:
    return [table.coordinate_to_cell_key((i, 0))[0].value for i in range(table.row_count)]


def text_at(table: BucketsTable, key: str, column: str) -> str:
    return str(table.get_cell(key, column))


async def test_pane_updates_only_the_cells_that_changed_and_keeps_the_cursor():
    app = Host()
    async with app.run_test(size=(160, 30)) as pilot:
        pane = app.query_one(BucketsPane)
        first = report(bucket(HEAL, 2), bucket(KKO, 5), bucket(STATE, 0))
        pane.show(first, NOW)
        await pilot.pause()
        table = pane.table
        assert table.compact is False
        assert keys(table) == [HEAL, KKO, STATE]
        assert text_at(table, KKO, "queued") == "5"
        table.focus()
        await pilot.press("down")
        assert table.cursor_key == KKO

        spy = Spy(table)
        pane.show(replace(first, buckets=(bucket(HEAL, 2), bucket(KKO, 4), bucket(STATE, 0))), NOW)
        await pilot.pause()
        assert spy.updates == [(KKO, "queued"), (KKO, "total")]
        assert spy.added == [] and spy.removed == []

        spy.updates.clear()
        pane.show(replace(first, buckets=(bucket(HEAL, 2), bucket(KKO, 4), bucket(STATE, 0))), NOW)
        await pilot.pause()
        assert spy.updates == []  # the same data touches nothing

        # A longer history of the same value leaves the sparkline (and the whole row) alone.
        pane.show(replace(first, buckets=(bucket(HEAL, 2, history=(2,)), bucket(KKO, 4), bucket(STATE, 0))), NOW)
        await pilot.pause()
        spy.updates.clear()
        pane.show(replace(first, buckets=(bucket(HEAL, 2, history=(2, 2, 2, 2)), bucket(KKO, 4), bucket(STATE, 0))), NOW)
        await pilot.pause()
        assert spy.updates == []

        # A problem moves its bucket to the top; the cursor stays on its row.
        down = bucket(STATE, 7, consumer_state="down", problem="7 queued, consumer not running")
        pane.show(replace(first, buckets=(bucket(HEAL, 2), bucket(KKO, 4), down)), NOW)
        await pilot.pause()
        assert keys(table) == [STATE, HEAL, KKO]
        assert table.cursor_key == KKO
        assert text_at(table, STATE, "bucket") == f"{PROBLEM_MARK} {STATE}"
        assert text_at(table, STATE, "state") == "down"
        assert str(app.query_one("#buckets-summary").render()).startswith("buckets http://b:8004")
        assert app.query_one("#buckets-summary").has_class("-problems")

        # A vanished bucket's row goes; nothing else is rebuilt.
        spy.updates.clear()
        pane.show(replace(first, buckets=(bucket(HEAL, 2), down)), NOW)
        await pilot.pause()
        assert spy.removed == [KKO] and spy.added == [] and spy.updates == []
        assert keys(table) == [STATE, HEAL]


async def test_pane_at_80_columns_is_compact_and_shows_an_unreachable_source():
    app = Host()
    async with app.run_test(size=(80, 24)) as pilot:
        pane = app.query_one(BucketsPane)
        pane.show(report(bucket(HEAL, 2), bucket(KKO, 5)), NOW)
        await pilot.pause()
        table = pane.table
        deadline = time.monotonic() + 5
        while table.compact is not True and time.monotonic() < deadline:
            await pilot.pause(0.02)
        assert table.compact is True
        assert [c.key for c in table.columns.values()] == [c.key for c in bucket_columns(True)]
        assert text_at(table, KKO, "bucket").strip() == "replicator-kko-minoc"
        assert sum(c.get_render_width(table) for c in table.columns.values()) <= 80

        pane.show(report(bucket(HEAL, 2), bucket(KKO, 5), reachable=False, polled_at=NOW - timedelta(minutes=2)), NOW)
        await pilot.pause()
        summary = app.query_one("#buckets-summary")
        assert summary.has_class("-unreachable") and not summary.has_class("-problems")
        assert "showing data from 2m ago" in str(summary.render())
        assert keys(table) == [HEAL, KKO]  # the last good data stays, dimmed
