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
from textual.widgets import Footer, Input, RichLog, Static

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


def entry_text(entry: Any, timestamps: bool, query: str = "", service: str = "") -> Text:
    """One log entry for the pane: [time] source │ text, the search `query` highlighted (case-insensitive).

    The pane is one service's: its name (in the title) is left out of the source, and the time is short
    (month-day and time of day, UTC), so the text still shows at 80 columns.
    """
    text = log_text(entry.line)
    prefix = ""
    if timestamps:
        when = getattr(entry, "time", None)
        prefix += (when.strftime("%m-%d %H:%M:%S") if when is not None else entry.time_text or "-") + " "
    source = entry.source
    if service and source.startswith(service + "."):
        source = source[len(service) + 1:]
    if source:
        prefix += source + " │ "
    if prefix:
        text = Text(prefix, style="dim", no_wrap=True, end="") + text
    if query:
        text.highlight_words([query], style="reverse", case_sensitive=False)
    return text


def search(lines: list[str], query: str, start: int, step: int) -> int | None:
    """Index of the next line (from `start`, going `step` = 1 or -1, wrapping) holding `query`, any case."""
    if not query or not lines:
        return None
    wanted = query.casefold()
    for offset in range(1, len(lines) + 1):
        index = (start + step * offset) % len(lines)
        if wanted in lines[index].casefold():
            return index
    return None


@dataclass(frozen=True)
class _Entry:
    """A log line known without its time or source (a collector that gives only lines)."""

    line: LogLine | str
    time: datetime | None = None
    time_text: str = ""
    source: str = ""

    @property
    def text(self) -> str:
        return str(self.line)


class DetailScreen(Screen):
    """Tasks and logs of one service."""

    BINDINGS = [
        Binding("escape", "back", "Back", tooltip="Back to the services (in the log search box: clear the search)"),
        Binding("r", "refresh", "Refresh", tooltip="Fetch tasks and logs now"),
        Binding("l", "focus_logs", "Logs", tooltip="Move the focus to the logs (scroll them with the arrows)"),
        Binding("t", "focus_tasks", "Tasks", tooltip="Move the focus to the tasks"),
        Binding("f", "toggle_follow", "Follow", tooltip="Logs: follow new lines (toggle; off holds the pane still)"),
        Binding("T", "toggle_timestamps", "Time", tooltip="Logs: show each line's time (toggle)"),
        Binding("slash", "search", "Find", tooltip="Logs: search (enter keeps it, esc in the box clears it)"),
        Binding("i", "app.inspect", "Inspect", show=False, tooltip="This service's spec and its drift from the compose file"),
        Binding("n", "search_next", "Next", show=False, tooltip="Logs: next line that matches the search"),
        Binding("N", "search_previous", "Previous", show=False, tooltip="Logs: previous line that matches the search"),
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
        self._entries: list[Any] = []  #: what the pane shows (collectors.logs.LogEntry)
        self.follow = True
        self.timestamps = False
        self.query_text = ""
        self.match: int | None = None  #: index of the line the search is on

    def compose(self) -> ComposeResult:
        yield Static(id="detail-title", markup=False)
        yield Static(id="detail-summary", markup=False)
        yield Static(Content("tasks"), classes="section", markup=False)
        yield KeyedTable(id="tasks")
        yield Static(Content("logs"), classes="section", id="logs-label", markup=False)
        yield RichLog(id="logs", max_lines=1000, auto_scroll=True, markup=False, highlight=False)
        yield Input(placeholder="search the logs — enter keeps it, esc clears it", id="log-search",
                    classes="-hidden", select_on_focus=False)
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
        if self.detail is not None:
            table.apply(task_rows(self.detail.tasks, now))
            entries = list(self.detail.entries) or [_Entry(line) for line in self.detail.logs]
            if self.follow:
                how, lines = log_update(self._entries, entries)
                if how == "replace":
                    self._entries = list(lines)[-1000:]
                    self._log_lines = [e.line for e in self._entries]
                    self._render_logs()
                elif how == "append" and lines:
                    self._entries = (self._entries + list(lines))[-1000:]
                    self._log_lines = [e.line for e in self._entries]
                    log = self.query_one("#logs", RichLog)
                    for entry in lines:
                        log.write(entry_text(entry, self.timestamps, self.query_text, self.service.name))
        self._show_detail_label_only()

    def _log_state(self) -> str:
        """The pane's modes for its label: held still, times shown, the search and where it is."""
        parts = []
        if not self.follow:
            parts.append("held (f follows)")
        if self.timestamps:
            parts.append("times")
        if self.query_text:
            where = "no match" if self.match is None else f"line {self.match + 1} of {len(self._entries)}"
            parts.append(f"/{self.query_text}: {where}")
        return "".join(f" · {part}" for part in parts)

    def _render_logs(self) -> None:
        """Write every entry again (after a mode or the search changed)."""
        log = self.query_one("#logs", RichLog)
        log.clear()
        for entry in self._entries:
            log.write(entry_text(entry, self.timestamps, self.query_text, self.service.name))
        if self.match is not None:
            log.scroll_to(y=max(0, self.match - 1), animate=False)

    def _relabel(self) -> None:
        self._show_detail_label_only()

    def _show_detail_label_only(self) -> None:
        label = self.query_one("#logs-label", Static)
        base = self._label_base()
        text = base + self._log_state()
        if text != self._label:
            self._label = text
            label.update(Content(text))
            problem = self.error or (self.detail.logs_error if self.detail is not None else None)
            label.set_class(bool(problem), "-error")

    def _label_base(self) -> str:
        problem = self.error or (self.detail.logs_error if self.detail is not None else None)
        text = "logs" if not problem else f"logs — {problem}"
        if not problem and self.detail is not None and not self._log_lines:
            text = "logs — no log lines"  # said, so an empty pane is not mistaken for one still loading
        if self.error and self.detail is not None:
            text = f"logs — fetch failed, showing the last good fetch: {self.error}"
        return text

    # -- actions ---------------------------------------------------------------

    def action_toggle_follow(self) -> None:
        self.follow = not self.follow
        log = self.query_one("#logs", RichLog)
        log.auto_scroll = self.follow
        if self.follow:
            self._show_detail()
            log.scroll_end(animate=False)
        self._relabel()

    def action_toggle_timestamps(self) -> None:
        self.timestamps = not self.timestamps
        self._render_logs()
        self._relabel()

    def action_search(self) -> None:
        box = self.query_one("#log-search", Input)
        box.remove_class("-hidden")
        box.focus()

    def on_input_submitted(self, event: Input.Submitted) -> None:
        if event.input.id != "log-search":
            return
        event.stop()
        self._set_search(clean(event.value.strip(), 200))
        event.input.add_class("-hidden")
        self.query_one("#logs", RichLog).focus()

    def action_back(self) -> None:
        """esc: in the search box, clear the search; else back to the services."""
        box = self.query_one("#log-search", Input)
        if self.focused is box:
            box.value = ""
            box.add_class("-hidden")
            self._set_search("")
            self.query_one("#logs", RichLog).focus()
            return
        self.app.pop_screen()

    def _set_search(self, query: str) -> None:
        self.query_text = query
        self.match = None
        if query:
            self.follow = False  # the match stays where it is while new lines arrive
            self.query_one("#logs", RichLog).auto_scroll = False
            self.match = search([e.text for e in self._entries], query, len(self._entries), -1)
        self._render_logs()
        self._relabel()

    def _step(self, step: int) -> None:
        if not self.query_text:
            self.notify("No search: press / to search the logs", markup=False)
            return
        start = self.match if self.match is not None else (len(self._entries) if step < 0 else -1)
        self.match = search([e.text for e in self._entries], self.query_text, start, step)
        if self.match is not None:
            self.query_one("#logs", RichLog).scroll_to(y=max(0, self.match - 1), animate=False)
        self._relabel()

    def action_search_next(self) -> None:
        self._step(1)

    def action_search_previous(self) -> None:
        self._step(-1)

    def action_refresh(self) -> None:
        self.fetch()

    def action_focus_logs(self) -> None:
        self.query_one("#logs", RichLog).focus()

    def action_focus_tasks(self) -> None:
        self.query_one("#tasks", KeyedTable).focus()
