"""A service's detail: its tasks (with history) and the tail of its logs, refreshed while open."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from functools import partial
from typing import Any

from textual.app import ComposeResult
from textual.binding import Binding
from textual.content import Content
from textual.message import Message
from textual.screen import Screen
from textual.timer import Timer
from rich.text import Text
from textual.widgets import Footer, RichLog, Static

from ..format import STATE_TONE, TASK_COLUMNS, log_update, since, task_rows
from ..model import ServiceStatus
from ..redact import scrub
from ..sanitize import LogLine, clean
from ..widgets.table import KeyedTable


@dataclass
class DetailFetched(Message):
    """A detail fetch finished (with the detail, or the reason it failed)."""

    key: str
    detail: Any | None
    error: str | None


def log_text(line: LogLine | str) -> Text:
    """One log line for the screen: its clean text, coloured from the SGR parameters parsed out of it.

    `LogLine.ansi()` holds nothing but the clean text and rebuilt SGR sequences, so Rich's ANSI decoder only
    ever sees colours; a plain string (no colours known) is shown as it is, never as markup.
    """
    if isinstance(line, str):
        return Text(clean(line), no_wrap=True, end="")
    if not line.sgr:
        return Text(line.text, no_wrap=True, end="")
    text = Text.from_ansi(line.ansi(), no_wrap=True, end="")
    return text if text.plain == line.text else Text(line.text, no_wrap=True, end="")


class DetailScreen(Screen):
    """Tasks and logs of one service."""

    BINDINGS = [
        Binding("escape", "app.pop_screen", "Back", tooltip="Back to the services"),
        Binding("r", "refresh", "Refresh", tooltip="Fetch tasks and logs now"),
        Binding("l", "focus_logs", "Logs", tooltip="Move the focus to the logs (scroll them with the arrows)"),
        Binding("t", "focus_tasks", "Tasks", tooltip="Move the focus to the tasks"),
    ]

    def __init__(self, service: ServiceStatus, collector: Any, refresh: float, clock: Callable[[], datetime]) -> None:
        super().__init__(id="detail")
        self.service = service
        self.collector = collector
        self.refresh_every = refresh
        self.clock = clock
        self.detail: Any | None = None
        self.error: str | None = None
        self.fetches = 0
        self._log_lines: list[LogLine] = []
        self._in_flight = False
        self._timer: Timer | None = None
        self._summary: str | None = None
        self._label = "logs"

    def compose(self) -> ComposeResult:
        yield Static(id="detail-title", markup=False)
        yield Static(id="detail-summary", markup=False)
        yield Static(Content("tasks"), classes="section", markup=False)
        yield KeyedTable(id="tasks")
        yield Static(Content("logs"), classes="section", id="logs-label", markup=False)
        yield RichLog(id="logs", max_lines=1000, auto_scroll=True, markup=False, highlight=False)
        yield Footer()

    def on_mount(self) -> None:
        s = self.service
        self.query_one("#detail-title", Static).update(Content(f"{s.site} ▸ {s.stack} ▸ {s.service}   ({s.name})"))
        self.query_one("#tasks", KeyedTable).set_columns(TASK_COLUMNS)
        self._show_summary()
        self.fetch()

    def on_unmount(self) -> None:
        if self._timer is not None:
            self._timer.stop()

    # -- data ----------------------------------------------------------------

    def update_service(self, service: ServiceStatus) -> None:
        """The app's latest word on this service (from its site's poll)."""
        self.service = service
        self._show_summary()

    def _show_summary(self) -> None:
        s = self.service
        now = self.clock()
        parts = [s.state, f"{s.replicas} running" if s.desired or s.running else "no replicas", s.mode or "not deployed"]
        if s.image:
            parts.append(s.image)
        if s.updated_at:
            parts.append(f"updated {since(s.updated_at, now)} ago")
        if s.looping_since is not None:
            parts.append(f"crash-looping for {'≥' if s.failed_capped else ''}{since(s.looping_since, now)}")
        if s.failed_recent:
            parts.append(f"{s.failed_text} failed recently")
        if not s.expected:
            parts.append("not in the compose file")
        text = " · ".join(parts)
        if self._summary == text:
            return
        self._summary = text
        summary = self.query_one("#detail-summary", Static)
        summary.update(Content(text))
        for tone in ("error", "warning", "success"):
            summary.set_class(STATE_TONE.get(s.state) == tone, f"-{tone}")

    def fetch(self) -> None:
        """Start a fetch unless one is running (fetches never pile up)."""
        if self._in_flight:
            return
        if self._timer is not None:
            self._timer.stop()
            self._timer = None
        if getattr(self.app, "suspended", False):  # look again later; nobody sees the screen now
            self._timer = self.set_timer(self.refresh_every, self.fetch)
            return
        self._in_flight = True
        self.run_worker(
            partial(self._fetch_in_thread, self.service),
            thread=True,
            group="detail",
            exit_on_error=False,
            name=f"detail {self.service.key}",
        )

    def _fetch_in_thread(self, service: ServiceStatus) -> None:
        try:
            detail = self.collector.detail(service)
        except Exception as exc:  # shown on the screen, never a crash
            error = scrub(clean(f"{type(exc).__name__}: {exc}"), getattr(self.app, "secrets", ()))
            self.post_message(DetailFetched(service.key, None, error))
        else:
            self.post_message(DetailFetched(service.key, detail, None))

    def on_detail_fetched(self, message: DetailFetched) -> None:
        self._in_flight = False
        self.fetches += 1
        self.error = message.error
        previous = self.detail
        if message.detail is not None:
            self.detail = message.detail
        try:
            self._show_detail()
        except Exception as exc:  # noqa: BLE001 - an answer that cannot be shown is this screen's error, not a crash
            self.detail = previous
            self.error = clean(f"cannot show the answer: {type(exc).__name__}: {exc}")
            self._show_detail()
        if self.is_attached:
            self._timer = self.set_timer(self.refresh_every, self.fetch)

    def _show_detail(self) -> None:
        now = self.clock()
        table = self.query_one("#tasks", KeyedTable)
        label = self.query_one("#logs-label", Static)
        if self.detail is not None:
            table.apply(task_rows(self.detail.tasks, now))
            how, lines = log_update(self._log_lines, self.detail.logs)
            log = self.query_one("#logs", RichLog)
            if how == "replace":
                log.clear()
                self._log_lines = []
            if how != "same" and lines:
                for line in lines:
                    log.write(log_text(line))
                self._log_lines.extend(lines)
        problem = self.error or (self.detail.logs_error if self.detail is not None else None)
        text = "logs" if not problem else f"logs — {problem}"
        if not problem and self.detail is not None and not self._log_lines:
            text = "logs — no log lines"  # said, so an empty pane is not mistaken for one still loading
        if self.error and self.detail is not None:
            text = f"logs — fetch failed, showing the last good fetch: {self.error}"
        if text != self._label:
            self._label = text
            label.update(Content(text))
            label.set_class(bool(problem), "-error")

    # -- actions ---------------------------------------------------------------

    def action_refresh(self) -> None:
        self.fetch()

    def action_focus_logs(self) -> None:
        self.query_one("#logs", RichLog).focus()

    def action_focus_tasks(self) -> None:
        self.query_one("#tasks", KeyedTable).focus()
