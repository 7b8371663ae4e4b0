"""The buckets pane: one keyed row per work queue (counts, sparkline of queued, rate, ETA, consumer and its
state, problem mark) under a one-line summary of the Buckets service. Rows update cell by cell."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from typing import Any

from textual.app import ComposeResult
from textual.widgets import Static

from ..collectors.buckets import link_consumers
from ..format import ERROR, MUTED, STATE_TONE, SUCCESS, WARNING, Cell, Column, Row
from ..model import RUNNING, BucketsReport, BucketStatus, SiteStatus
from ..queue_trend import QueueHistory, changes, format_eta, format_rate, sparkline
from .source import ResponsiveTable, SourcePane, unreachable_summary

WIDE_COLUMNS = (
    Column("bucket", "bucket", 34),
    Column("queued", "queued", 7),
    Column("running", "running", 7),
    Column("success", "success", 8),
    Column("failure", "failure", 7),
    Column("total", "total", 8),
    Column("trend", "queued trend", 12),
    Column("rate", "rate", 8),
    Column("eta", "eta", 6),
    Column("state", "consumer", 9),
    Column("consumer", "consumed by", 0),
)

#: At 80 columns the consumer and its state share one cell, state first so truncation spares it
#: ("degraded gbo/replicator"; just the consumer while it runs), coloured by the state.
COMPACT_COLUMNS = (
    Column("bucket", "bucket", 24),
    Column("queued", "queued", 6),
    Column("trend", "trend", 5),
    Column("rate", "rate", 7),
    Column("eta", "eta", 5),
    Column("consumer", "consumer", 0),
)

#: Below this width the wide columns leave the consumer too little room (at 120 its state read "runn").
WIDE_NEEDS = sum(c.width + 2 for c in WIDE_COLUMNS if c.width) + 2 + 24 + 1

#: Marks in front of a bucket's name.
PROBLEM_MARK, GROWING_MARK = "!", "▲"


def bucket_columns(compact: bool) -> tuple[Column, ...]:
    return COMPACT_COLUMNS if compact else WIDE_COLUMNS


def common_prefix(names: list[str]) -> str:
    """The longest prefix ending in "-" that every name shares and none is only ("datatrail-")."""
    if not names:
        return ""
    first = names[0]
    prefix = ""
    for index, char in enumerate(first):
        if any(len(n) <= index or n[index] != char for n in names):
            break
        if char == "-" and all(len(n) > index + 1 for n in names):
            prefix = first[: index + 1]
    return prefix


def short_consumer(pattern: str) -> str:
    """A consumer without its stack: "kko/datatrail-client_replicator" -> "kko/replicator"."""
    site, _, service = pattern.partition("/")
    return f"{site}/{service.split('_', 1)[1] if '_' in service else service}"


def _order(bucket: BucketStatus) -> tuple[int, str]:
    return (0 if bucket.problem else 1 if bucket.growing else 2, bucket.name)


def bucket_row(bucket: BucketStatus, compact: bool, stale: bool, prefix: str = "") -> Row:
    """The row of one bucket; everything dimmed when the data is stale (the last poll failed)."""
    mark = PROBLEM_MARK if bucket.problem else GROWING_MARK if bucket.growing else " "
    name = bucket.name[len(prefix) :] if prefix and bucket.name.startswith(prefix) else bucket.name
    trend_width = next(c.width for c in bucket_columns(compact) if c.key == "trend")
    rate = bucket.rate_per_hour
    consumer = bucket.consumer or "—"
    if not bucket.consumer and bucket.problem:  # work waiting, nobody known to do it
        consumer = "unknown: map it in [buckets.consumers]"
    if bucket.consumer and compact:
        consumer = short_consumer(bucket.consumer)
    if bucket.consumer and len(bucket.consumers) > 1:
        consumer = f"{consumer} ({len(bucket.consumers)})"
    state = bucket.consumer_state or ("?" if bucket.consumer or bucket.problem else "")
    state_tone = ERROR if bucket.problem else STATE_TONE.get(state)
    if compact and (bucket.consumer or bucket.problem) and state != RUNNING:
        consumer = f"{state} {consumer}"
    cells = {
        "bucket": Cell(f"{mark} {name}", ERROR if bucket.problem else WARNING if bucket.growing else None,
                       bold=bool(bucket.problem)),
        "queued": Cell(str(bucket.queued), WARNING if bucket.growing else None, bold=bucket.queued > 0),
        "running": Cell(str(bucket.running)),
        "success": Cell(str(bucket.success)),
        "failure": Cell(str(bucket.failure), ERROR if bucket.failure else None),
        "total": Cell(str(bucket.total)),
        "trend": Cell(sparkline(changes(bucket.history), trend_width), WARNING if bucket.growing else None),
        "rate": Cell(format_rate(rate), WARNING if rate and rate > 0.05 else SUCCESS if rate and rate < -0.05 else None),
        "eta": Cell(format_eta(bucket.eta_seconds)),
        "state": Cell(state, state_tone, bold=bool(bucket.problem)),
        "consumer": Cell(consumer, state_tone if compact else ERROR if bucket.problem else None,
                         bold=compact and bool(bucket.problem)),
    }
    if stale:
        cells = {k: Cell(c.text, MUTED, c.bold) for k, c in cells.items()}
    return Row(bucket.key, "bucket", tuple(cells[c.key] for c in bucket_columns(compact)))


def bucket_rows(report: BucketsReport | None, compact: bool = False) -> list[Row]:
    """Every bucket's row: problems first, then growing queues, then by name."""
    if report is None:
        return []
    stale = not report.reachable
    buckets = sorted(report.buckets, key=_order)
    prefix = common_prefix([b.name for b in buckets]) if compact and len(buckets) > 1 else ""
    return [bucket_row(b, compact, stale, prefix) for b in buckets]


def buckets_summary(report: BucketsReport | None, now: datetime) -> tuple[str, str]:
    """The pane's header line and its tone ("ok", "problems", "unreachable", "pending")."""
    if report is None:
        return "buckets: not configured ([buckets] url in the config)", "pending"
    if failed := unreachable_summary("buckets", report, now):
        return failed
    problems = sum(1 for b in report.buckets if b.problem)
    growing = sum(1 for b in report.buckets if b.growing)
    queued = sum(b.queued for b in report.buckets)
    # No latency here: it changes at every poll, and each repaint is paid for over the SSH link.
    parts = [f"buckets {report.url}", f"{len(report.buckets)} queues",
             f"{queued} queued"]
    if problems:
        parts.append(f"{PROBLEM_MARK} {problems} with work waiting and a consumer not running or unknown")
    if growing:
        parts.append(f"{GROWING_MARK} {growing} growing")
    return " · ".join(p for p in parts if p), "problems" if problems else "ok"


class BucketsTable(ResponsiveTable):
    """One row per bucket, keyed by its name."""

    def __init__(self, *, compact_below: int = WIDE_NEEDS, id: str | None = None) -> None:
        super().__init__(compact_below=compact_below, id=id)

    def layout_for(self, report: BucketsReport | None, compact: bool) -> tuple[Sequence[Column], list[Row]]:
        return bucket_columns(compact), bucket_rows(report, compact)


class BucketsPane(SourcePane):
    """The Buckets service's summary line over the buckets table; polls the service itself when given a
    collector (async: httpx). Each poll's report goes into the queue history, then the buckets are linked
    to the sites' services (`link`, which the app also calls whenever the sites change) and repainted.
    """

    VIEW_TITLE = "buckets"
    SUMMARY_ID = "buckets-summary"
    DATA_FIELDS = ("buckets",)

    DEFAULT_CSS = """
    BucketsPane { height: 1fr; }
    BucketsPane > #buckets-summary { height: 1; padding: 0 1; background: $panel; color: $text-muted; }
    BucketsPane > #buckets-summary.-problems { color: $warning; }
    BucketsPane > #buckets-summary.-unreachable { color: $text; background: $error; }
    BucketsPane > BucketsTable { height: 1fr; scrollbar-size-vertical: 1; scrollbar-size-horizontal: 0; }
    """

    def __init__(self, collector: Any = None, *, id: str | None = "buckets-pane", **options: Any) -> None:
        super().__init__(collector, id=id, **options)
        self.history = QueueHistory()
        self.raw: BucketsReport | None = None  #: the last poll with its trend, before linking to the sites
        self.report: BucketsReport | None = None  #: what is shown
        self.sites: tuple[SiteStatus, ...] = ()

    def compose(self) -> ComposeResult:
        yield Static("", id=self.SUMMARY_ID, markup=False)
        yield BucketsTable(id="buckets")

    def on_mount(self) -> None:
        if self.collector is not None:
            self.raw = self.collector.last
            self.poll_now()
        self.link(self.sites)

    @property
    def table(self) -> BucketsTable:
        return self.query_one(BucketsTable)

    def received(self, report: BucketsReport) -> None:
        self.raw = self.history.record(report)
        self.link(self.sites)

    def link(self, sites: Sequence[SiteStatus], now: datetime | None = None) -> None:
        """Judge the buckets' consumers against the sites' services and repaint what changed."""
        self.sites = tuple(sites)
        try:
            report = link_consumers(self.raw, self.sites) if self.raw is not None else None
        except Exception as exc:  # noqa: BLE001 - bad data is this source's error, never the app's end
            report = self.unshowable(self.raw, exc)
        self.show(report, now or self.clock())

    def show(self, report: BucketsReport | None, now: datetime) -> None:
        """Display `report`; only the cells and the summary that changed are repainted."""
        self.report = report
        self.paint_summary(buckets_summary(report, now))
        self.table.show(report)
        self.post_badge(len(report.problems()) if report is not None else 0)
