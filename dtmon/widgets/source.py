"""What the buckets and progress panes share: a table with a wide and a compact layout, and a pane that
polls its source (the Buckets service, Prometheus) on its own schedule under a one-line summary."""

from __future__ import annotations

import inspect
from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace
from datetime import datetime, timezone
from typing import Any

from textual.containers import Vertical
from textual.content import Content
from textual.message import Message
from textual.timer import Timer
from textual.widgets import Static

from ..format import COMPACT_BELOW, Column, Row, since
from ..sanitize import clean
from .table import KeyedTable
from .views import ViewBadge

#: The tones of a summary line; each is a CSS class ("-ok", ...) on the line.
TONES = ("ok", "problems", "unreachable", "pending")


def unreachable_summary(source: str, report: Any, now: datetime) -> tuple[str, str] | None:
    """The summary of a source whose last poll failed (None when it answered): waiting for the first
    poll, failing with no data yet, or failing while older data stays on screen."""
    if report.reachable:
        return None
    if report.polled_at is None:
        if report.error == "not polled yet":
            return f"{source} {report.url} …", "pending"
        return f"{source} UNREACHABLE: {report.error}; no data yet", "unreachable"
    return f"{source} UNREACHABLE: {report.error}; showing data from {since(report.polled_at, now)} ago", "unreachable"


class ResponsiveTable(KeyedTable):
    """A keyed table that shows a report with wide columns, or compact ones below `compact_below` cells."""

    def __init__(self, *, compact_below: int = COMPACT_BELOW, id: str | None = None) -> None:
        super().__init__(id=id)
        self.compact_below = compact_below
        self.compact: bool | None = None
        self.report: Any = None

    def layout_for(self, report: Any, compact: bool) -> tuple[Sequence[Column], list[Row]]:
        """The columns and rows of `report` in the wide or the compact layout."""
        raise NotImplementedError

    def show(self, report: Any) -> None:
        self.report = report
        compact = self.size.width < self.compact_below if self.size.width else bool(self.compact)
        self.compact = compact
        self.set_columns(*self.layout_for(report, compact))

    def relayout(self) -> None:
        if self.size.width and (self.size.width < self.compact_below) != self.compact:
            self.show(self.report)
            return
        super().relayout()


def _utc_now() -> datetime:
    return datetime.now(timezone.utc)


class SourcePane(Vertical):
    """A source's summary line over its tables; polls the source itself when given a collector.

    The collector's `poll()` never raises and returns a report; a coroutine function runs in an async
    worker, a blocking one in a thread worker. Polls never pile up: the next is scheduled when the last
    has finished. The worker only posts `Polled`; `received` (the subclass's) updates the display.
    """

    #: id of the summary line (a Static) that `compose` yields.
    SUMMARY_ID = "summary"

    @dataclass
    class Polled(Message):
        """A poll of the pane's source finished."""

        report: Any

    def __init__(
        self,
        collector: Any = None,
        *,
        refresh: float = 5.0,
        clock: Callable[[], datetime] = _utc_now,
        id: str | None = None,
    ) -> None:
        super().__init__(id=id)
        self.collector = collector
        self.refresh_seconds = refresh
        self.clock = clock
        self.polls = 0  #: completed polls
        self._summary: tuple[str, str] | None = None
        self._badge: str | None = None
        self._in_flight = False
        self._timer: Timer | None = None

    # -- polling -----------------------------------------------------------------------

    def poll_now(self) -> None:
        """Poll the source now, unless a poll is already running."""
        if self.collector is None or self._in_flight:
            return
        if self._timer is not None:
            self._timer.stop()
            self._timer = None
        self._in_flight = True
        name = f"poll {self.id or type(self).__name__}"
        if inspect.iscoroutinefunction(self.collector.poll):
            self.run_worker(self._poll_async(), group=name, name=name, exit_on_error=False)
        else:
            self.run_worker(self._poll_blocking, thread=True, group=name, name=name, exit_on_error=False)

    async def _poll_async(self) -> None:
        try:
            report = await self.collector.poll()
        except Exception as exc:  # a collector never raises; if one does, it is shown, not a crash
            report = self._failed(exc)
        self.post_message(self.Polled(report))

    def _poll_blocking(self) -> None:
        try:
            report = self.collector.poll()
        except Exception as exc:  # as above
            report = self._failed(exc)
        self.post_message(self.Polled(report))

    def _failed(self, exc: Exception) -> Any:
        return replace(self.collector.last, reachable=False, error=clean(f"{type(exc).__name__}: {exc}"))

    def on_source_pane_polled(self, message: Polled) -> None:
        message.stop()
        self._in_flight = False
        self.polls += 1
        try:
            self.received(message.report)
        except Exception as exc:  # noqa: BLE001 - an answer that cannot be shown is this source's error
            self.received(self.unshowable(message.report, exc))
        if self.is_attached and self.app.is_running:
            self._timer = self.set_timer(self.refresh_seconds, self.poll_now, name=f"next poll {self.id}")

    def received(self, report: Any) -> None:
        """A poll's report arrived: show it."""
        raise NotImplementedError

    #: The report's fields that hold the source's data (emptied when that data cannot be shown).
    DATA_FIELDS: tuple[str, ...] = ()

    def unshowable(self, report: Any, exc: Exception) -> Any:
        """`report` as a failed poll without data, because turning its answer into rows raised `exc`."""
        error = clean(f"cannot show its answer: {type(exc).__name__}: {exc}")
        return replace(report, reachable=False, error=error, polled_at=None, **{f: () for f in self.DATA_FIELDS})

    # -- display -----------------------------------------------------------------------

    def paint_summary(self, summary: tuple[str, str]) -> None:
        """Show (text, tone) on the summary line, touching only what changed."""
        if summary == self._summary:
            return
        line = self.query_one(f"#{self.SUMMARY_ID}", Static)
        if self._summary is None or summary[1] != self._summary[1]:
            for tone in TONES:
                line.set_class(tone == summary[1], f"-{tone}")
        if self._summary is None or summary[0] != self._summary[0]:
            line.update(Content(summary[0]))
        self._summary = summary

    def post_badge(self, problems: int) -> None:
        """Tell the views how many problems this pane shows (its tab carries "!N")."""
        badge = f"!{problems}" if problems else ""
        if badge != self._badge and self.id:
            self._badge = badge
            self.post_message(ViewBadge(self.id, badge))
