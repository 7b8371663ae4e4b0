"""The progress pane: per site and kind a bar with percent done, pending, done and failed in the window, rate,
ETA and a sparkline of pending over the window; under it the health of the feeds (scrape targets, pushes,
Postgres) and any query that failed. Rows are keyed and update cell by cell."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from typing import Any

from textual.app import ComposeResult
from textual.widgets import Static

from ..format import ERROR, MUTED, SUCCESS, WARNING, Cell, Column, Row, latency
from ..model import FeedCheck, Progress, ProgressReport
from ..queue_trend import sparkline
from ..report import format_count, format_duration, format_per_hour
from .source import ResponsiveTable, SourcePane, unreachable_summary
from .table import KeyedTable

WIDE_COLUMNS = (
    Column("site", "site", 8),
    Column("kind", "kind", 11),
    Column("bar", "done in window", 21),
    Column("pending", "pending", 9),
    Column("done", "done", 9),
    Column("failed", "failed", 7),
    Column("rate", "rate", 9),
    Column("eta", "eta", 6),
    Column("trend", "pending over window", 0),
)

COMPACT_COLUMNS = (
    Column("site", "site", 6),
    Column("kind", "kind", 4),
    Column("bar", "done", 15),
    Column("pending", "pending", 7),
    Column("failed", "failed", 6),
    Column("rate", "rate", 7),
    Column("eta", "eta", 6),
    Column("trend", "trend", 0),
)

FEED_COLUMNS = (
    Column("state", "feed", 4),
    Column("check", "check", 8),
    Column("value", "value", 7),
    Column("detail", "detail", 0),
)

#: A poll slower than this (ms) shows its latency in the summary line.
SLOW_MS = 1000.0

_SHORT_KIND = {"replication": "repl", "deletion": "del"}
_CHECK_LABEL = {"targets_up": "up", "push_age": "push", "pg_up": "pg_up"}
#: Width of the sparkline cell when the trend column takes the remaining width.
TREND_WIDTH = {False: 24, True: 10}


def progress_columns(compact: bool) -> tuple[Column, ...]:
    return COMPACT_COLUMNS if compact else WIDE_COLUMNS


def bar(percent: float | None, width: int) -> str:
    """A bar of `width` cells filled to `percent` (floor, so only 100% looks full); dots when unknown."""
    if percent is None:
        return "·" * width
    filled = max(0, min(width, int(percent / 100 * width)))
    return "█" * filled + "░" * (width - filled)


def resample(values: Sequence[float], width: int) -> list[float]:
    """At most `width` values spread evenly over the whole series (first and last kept)."""
    values = list(values)
    if len(values) <= width or width < 2:
        return values[-width:] if width > 0 else []
    step = (len(values) - 1) / (width - 1)
    return [values[round(i * step)] for i in range(width)]


def short_count(value: float | None) -> str:
    """A count in at most 7 cells: "179,996", then "1.23M"."""
    if value is not None and abs(value) >= 9_999_999.5:
        return f"{value / 1e9:.2f}G" if abs(value) >= 999_999_999.5 else f"{value / 1e6:.1f}M"
    if value is not None and abs(value) >= 999_999.5:
        return f"{value / 1e6:.2f}M"
    return format_count(value)


def short_rate(value: float | None) -> str:
    """A rate per hour in at most 7 cells: "7,200/h", then "123k/h", "4.5M/h"."""
    if value is not None and abs(value) >= 999_999.5:
        return f"{value / 1e6:.1f}M/h"
    if value is not None and abs(value) >= 9_999.5:
        return f"{value / 1e3:.0f}k/h"
    return format_per_hour(value)


def progress_row(p: Progress, compact: bool, stale: bool) -> Row:
    """One site and kind; muted when the data is stale (the last poll failed)."""
    bar_width = 8 if compact else 14
    percent = f"{p.percent:5.1f}%" if p.percent is not None else "    -"
    done_fully = p.pending == 0
    count = short_count if compact else format_count
    cells = {
        "site": Cell(p.site, bold=True),
        "kind": Cell(_SHORT_KIND.get(p.kind, p.kind) if compact else p.kind),
        "bar": Cell(f"{bar(p.percent, bar_width)} {percent}", SUCCESS if done_fully else None),
        "pending": Cell(count(p.pending), None, bold=bool(p.pending)),
        "done": Cell(count(p.done)),
        "failed": Cell(count(p.failed), WARNING if p.failed else None),
        "rate": Cell((short_rate if compact else format_per_hour)(p.rate_per_hour),
                     WARNING if p.rate_per_hour == 0 and p.pending else None),
        "eta": Cell(format_duration(p.eta_seconds), WARNING if p.eta_seconds is None and p.pending else None),
        "trend": Cell(sparkline(resample(p.pending_history, TREND_WIDTH[compact]), TREND_WIDTH[compact])),
    }
    if stale:
        cells = {k: Cell(c.text, MUTED, c.bold) for k, c in cells.items()}
    return Row(p.key, "progress", tuple(cells[c.key] for c in progress_columns(compact)))


def progress_rows(report: ProgressReport | None, compact: bool = False) -> list[Row]:
    """Every site and kind in the report's order (configured sites first)."""
    if report is None:
        return []
    stale = not report.reachable
    return [progress_row(p, compact, stale) for p in report.progress]


def _feed_value(check: FeedCheck) -> str:
    if check.value is None:
        return "-"
    if check.name == "push_age":
        return "<1m" if check.value < 60 else format_duration(check.value)
    return f"{check.value:g}"


def feed_rows(report: ProgressReport | None) -> list[Row]:
    """Failed queries first, then bad feeds, then good ones; muted when stale."""
    if report is None:
        return []
    stale = not report.reachable
    rows = []
    if not stale:
        for text in report.query_errors:
            name, _, error = text.partition(": ")
            rows.append(Row(f"query/{name}", "query", (
                Cell("ERR", ERROR, bold=True), Cell("query"), Cell(""), Cell(f"{name}: {error}", ERROR),
            )))
    for check in sorted(report.feeds, key=lambda c: c.ok):
        state = Cell("ok", SUCCESS) if check.ok else Cell("BAD", ERROR, bold=True)
        cells = (state, Cell(_CHECK_LABEL.get(check.name, check.name)), Cell(_feed_value(check)),
                 Cell(check.detail, None if check.ok else ERROR))
        if stale:
            cells = tuple(Cell(c.text, MUTED, c.bold) for c in cells)
        rows.append(Row(f"feed/{check.key}", "feed", cells))
    return rows


def progress_summary(report: ProgressReport | None, now: datetime) -> tuple[str, str]:
    """The pane's header line and its tone ("ok", "problems", "unreachable", "pending")."""
    if report is None:
        return "progress: not configured ([prometheus] url in the config)", "pending"
    if failed := unreachable_summary("prometheus", report, now):
        return failed
    bad = sum(1 for f in report.feeds if not f.ok)
    # Latency only when slow: a number that changes every poll would repaint the line every poll.
    slow = f"slow: {latency(report.latency_ms)}" if report.latency_ms and report.latency_ms >= SLOW_MS else ""
    parts = [f"prometheus {report.url}", slow, f"window {report.window}",
             f"feeds {len(report.feeds) - bad}/{len(report.feeds)} ok"]
    if report.query_errors:
        parts.append(f"{len(report.query_errors)} quer{'y' if len(report.query_errors) == 1 else 'ies'} failed")
    return " · ".join(p for p in parts if p), "problems" if bad or report.query_errors else "ok"


class ProgressTable(ResponsiveTable):
    """One row per site and kind, keyed "site/kind"."""

    def layout_for(self, report: ProgressReport | None, compact: bool) -> tuple[Sequence[Column], list[Row]]:
        return progress_columns(compact), progress_rows(report, compact)


class FeedsTable(KeyedTable):
    """One row per feed check and per failed query."""

    def show(self, report: ProgressReport | None) -> None:
        self.set_columns(FEED_COLUMNS, feed_rows(report))


class ProgressPane(SourcePane):
    """Prometheus's summary line over the progress table and the feeds table; polls Prometheus itself when
    given a collector (blocking: each poll runs in a thread worker)."""

    VIEW_TITLE = "progress"
    SUMMARY_ID = "progress-summary"
    DATA_FIELDS = ("progress", "feeds", "query_errors")

    DEFAULT_CSS = """
    ProgressPane { height: 1fr; }
    ProgressPane > #progress-summary { height: 1; padding: 0 1; background: $panel; color: $text-muted; }
    ProgressPane > #progress-summary.-problems { color: $warning; }
    ProgressPane > #progress-summary.-unreachable { color: $text; background: $error; }
    ProgressPane > ProgressTable { height: auto; max-height: 2fr; scrollbar-size-horizontal: 0; }
    ProgressPane > FeedsTable { height: 1fr; min-height: 3; scrollbar-size-horizontal: 0; }
    """

    def __init__(self, collector: Any = None, *, id: str | None = "progress-pane", **options: Any) -> None:
        super().__init__(collector, id=id, **options)
        self.report: ProgressReport | None = None

    def compose(self) -> ComposeResult:
        yield Static("", id=self.SUMMARY_ID, markup=False)
        yield ProgressTable(id="progress-table")
        yield FeedsTable(id="feeds-table")

    def on_mount(self) -> None:
        if self.collector is not None:
            self.show(self.collector.last)
            self.poll_now()
        else:
            self.show(self.report)

    def on_unmount(self) -> None:
        if self.collector is not None:
            try:
                self.collector.close()
            except Exception:
                pass

    def received(self, report: ProgressReport) -> None:
        self.show(report)

    def show(self, report: ProgressReport | None, now: datetime | None = None) -> None:
        """Display `report`; only the cells and the summary that changed are repainted."""
        self.report = report
        self.paint_summary(progress_summary(report, now or self.clock()))
        with self.app.batch_update():
            self.query_one(ProgressTable).show(report)
            self.query_one(FeedsTable).show(report)
        self.post_badge(len(report.problems()) if report is not None and report.error != "not polled yet" else 0)
