"""The dashboard: wires collectors (polled in threads) to the header chips and the services table."""

from __future__ import annotations

import importlib.resources
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace
from datetime import datetime, timezone
from functools import partial
from pathlib import Path
from typing import Any

from textual.app import App, ComposeResult
from textual.binding import Binding
from textual.containers import Horizontal
from textual.content import Content
from textual.timer import Timer
from textual.message import Message
from textual.widgets import DataTable, Footer, Input, Static

from .config import Config
from .format import COMPACT_BELOW, View, build_rows, columns, site_rows, stack_key, summary
from .model import DEGRADED, DOWN, UPDATING, ServiceStatus, SiteStatus
from .redact import config_secrets, scrub
from .sanitize import clean
from .screens.detail import DetailScreen
from .screens.help import HelpScreen, class_bindings, help_rows, key_name
from .screens.nodes import NodesScreen
from .screens.spec import InspectScreen
from .widgets.header import SiteBar
from .widgets.line import Line
from .widgets.table import KeyedTable, ServicesTable
from .widgets.buckets import BucketsPane
from .widgets.progress import ProgressPane
from .widgets.views import Views


def stylesheet() -> Path:
    """The app's stylesheet: from the installed `dtmon.styles` package, else the checkout's `styles/`."""
    try:
        resource = importlib.resources.files("dtmon.styles") / "dtmon.tcss"
        if resource.is_file():
            return Path(str(resource))
    except ModuleNotFoundError:
        pass
    return Path(__file__).resolve().parent.parent / "styles" / "dtmon.tcss"


#: How long a notice given at start (`notice=`) stays on screen.
NOTICE_SECONDS = 30.0


#: While a site with an open event stream settles after a change, it is polled this often (seconds) ...
SETTLE_POLL = 1.0
#: ... for at most this long after its last event (a crash loop does not keep it polled every second for ever).
SETTLE_WINDOW = 30.0


def utc_now() -> datetime:
    return datetime.now(timezone.utc)


@dataclass
class SitePolled(Message):
    """A site's poll finished; `status` is None when the collector itself raised."""

    site: str
    status: SiteStatus | None
    error: str | None
    seconds: float


@dataclass
class SiteEvents(Message):
    """A site's event stream: something changed (`connected` None), or the stream opened or broke."""

    site: str
    connected: bool | None
    error: str | None = None


class DtmonApp(App):
    """Every site's Datatrail stacks, live."""

    CSS_PATH = [stylesheet()]
    TITLE = "dtmon"
    #: Every key is in BINDINGS and on the help screen; the palette would add keys and commands outside both.
    ENABLE_COMMAND_PALETTE = False

    BINDINGS = [
        Binding("slash", "filter", "Filter", tooltip="Filter by site, stack, service or state"),
        Binding("p", "toggle_problems", "Problems", tooltip="Show only services that need attention (toggle)"),
        Binding("r", "refresh", "Refresh", tooltip="Poll every site now"),
        Binding("i", "inspect", "Inspect", tooltip="The selected service's spec as the engine has it, and its drift "
                "from the compose file (image, replicas, missing/extra services)"),
        Binding("c", "copy_name", "Copy", show=False,
                tooltip="Copy the selected service's name to the clipboard (through the terminal: OSC 52)"),
        Binding("C", "copy_command", "Copy command", show=False,
                tooltip="Copy the docker commands of the last action run here, else the docker command for what is "
                "shown (service ps, logs, inspect, node ls)"),
        Binding("n", "nodes", "Nodes", tooltip="The nodes of every site (role, leader, state, availability, engine)"),
        Binding("escape", "clear_filter", "Clear filter", tooltip="Clear the filter"),
        Binding("question_mark", "help", "Help", tooltip="This help"),
        Binding("q", "quit", "Quit", tooltip="Quit dtmon"),
        Binding("ctrl+q", "quit", "Quit", show=False, priority=True, tooltip="Quit dtmon"),
        Binding("ctrl+c", "help_quit", show=False, system=True, tooltip="Say how to quit"),
        Binding("ctrl+z", "suspend_process", "Suspend", show=False,
                tooltip="Suspend to the shell (fg resumes); polls pause meanwhile"),
    ]

    def __init__(
        self,
        config: Config,
        *,
        title_suffix: str | None = None,
        collectors: Sequence[Any] | None = None,
        clock: Callable[[], datetime] | None = None,
        tick: float = 1.0,
        notice: str | None = None,
    ) -> None:
        super().__init__()
        self.config = config
        self.notice = notice  #: said in a notification once the app is up (e.g. why this is the demo world)
        self.clock = clock or utc_now
        self.tick_seconds = tick
        if collectors is None:
            from .collectors.swarm import SwarmCollector

            collectors = [SwarmCollector(site, config.timeout, config.health, max_bytes=config.max_bytes)
                          for site in config.sites]
        self.collectors = {c.site.name: c for c in collectors}
        self.order = [c.site.name for c in collectors]
        self.sites: dict[str, SiteStatus] = {
            name: SiteStatus(name=name, reachable=False, error=None) for name in self.order
        }
        self.view = View(error_max_age=config.health.error_max_age)
        self.polls = 0  #: completed polls, all sites together
        self.title = "dtmon" + (f" · {title_suffix}" if title_suffix else "")
        self._in_flight: set[str] = set()
        self._poll_timers: dict[str, Timer] = {}
        self._suspended = False
        self._deferred: set[str] = set()
        self.secrets = config_secrets(config)  #: scrubbed from anything shown, crash reports included
        self.streams: dict[str, Any] = {}  #: site -> its EventStream (sites whose collector can give one)
        self.live: set[str] = set()  #: sites whose event stream is open
        self._again: set[str] = set()  #: sites with an event during their poll: polled again right after
        self._last_event: dict[str, float] = {}  #: when each site's stream last hinted (monotonic seconds)

    # -- layout ------------------------------------------------------------------

    def compose(self) -> ComposeResult:
        yield SiteBar(self.order, "ACTIONS ENABLED" if self.config.deploy.allow else "read-only",
                      late_after=self.config.refresh + self.config.timeout,
                      live_late_after=self.live_refresh + self.config.timeout,
                      slow_after_ms=self.config.slow_poll_ms)
        with Views():
            yield ServicesTable(compact_below=COMPACT_BELOW, id="services")
            if self.config.buckets is not None:
                from .collectors.buckets import BucketsCollector

                collector = BucketsCollector(self.config.buckets, self.config.timeout, max_bytes=self.config.max_bytes)
                yield BucketsPane(collector, refresh=self.config.refresh, clock=self.clock)
            if self.config.prometheus is not None:
                from .collectors.prometheus import PrometheusCollector

                prometheus = PrometheusCollector(self.config.prometheus, self.config.timeout, site_order=self.order,
                                                 max_bytes=self.config.max_bytes)
                yield ProgressPane(prometheus, refresh=self.config.refresh, clock=self.clock)
        with Horizontal(id="statusbar"):
            yield Static(Content(self.title), id="title", markup=False)
            yield Line(id="status")
        yield Input(placeholder="filter: site, stack, service or state — enter keeps it, escape clears it",
                    id="filter", classes="-hidden", select_on_focus=False)
        yield Footer()

    def on_mount(self) -> None:
        # The filter's cursor doesn't blink: every blink is a repaint sent over the SSH link.
        self.query_one("#filter", Input).cursor_blink = False
        table = self.query_one(ServicesTable)
        table.focus()
        self.render_view()
        for name in self.order:
            self.start_poll(name)
        self._start_streams()
        self.set_interval(self.tick_seconds, self.render_view, name="age tick")
        self.app_suspend_signal.subscribe(self, self._on_suspend)
        self.app_resume_signal.subscribe(self, self._on_resume)
        self.theme_changed_signal.subscribe(self, lambda _theme: self._restyle())
        if self.notice:
            self.notify(self.notice, timeout=NOTICE_SECONDS, markup=False)

    def _restyle(self) -> None:
        self.query_one(ServicesTable).restyle()
        self.render_view()

    # -- polling -------------------------------------------------------------------

    def start_poll(self, name: str) -> None:
        """Poll one site now in its own thread, unless a poll of it is already running."""
        if name in self._in_flight:
            return
        if self._suspended:
            self._deferred.add(name)
            return
        timer = self._poll_timers.pop(name, None)
        if timer is not None:
            timer.stop()
        self._in_flight.add(name)
        self.run_worker(
            partial(self._poll_in_thread, name, self.collectors[name]),
            thread=True,
            group=f"poll-{name}",
            name=f"poll {name}",
            exit_on_error=False,
        )

    def _poll_in_thread(self, name: str, collector: Any) -> None:
        started = time.perf_counter()
        try:
            status, error = collector.poll(), None
        except Exception as exc:  # collectors should never raise; if one does, it is data, not a crash
            status, error = None, scrub(clean(f"{type(exc).__name__}: {exc}"), self.secrets)
        self.post_message(SitePolled(name, status, error, time.perf_counter() - started))

    def on_site_polled(self, message: SitePolled) -> None:
        name = message.site
        self._in_flight.discard(name)
        status = message.status
        if status is None:
            previous = self.sites[name]
            since = previous.error_since if not previous.reachable and previous.error_since else self.clock()
            status = replace(previous, reachable=False, error=message.error, error_since=since)
        elif status.reachable and status.latency_ms is None:
            status = replace(status, latency_ms=round(message.seconds * 1000, 1))
        if status.error:  # an engine may echo any secret of the config back: none is shown
            status = replace(status, error=scrub(status.error, self.secrets))
        try:  # data that cannot be shown is this site's error, with its last good data kept, never the app's end
            site_rows(status, self.clock(), self.view)
        except Exception as exc:  # noqa: BLE001
            previous = self.sites[name]
            since = previous.error_since if not previous.reachable and previous.error_since else self.clock()
            error = scrub(clean(f"cannot show its answer: {type(exc).__name__}: {exc}"), self.secrets)
            status = replace(previous, reachable=False, error=error, error_since=since)
        manager_before = self.sites[name].manager
        self.sites[name] = status
        self.polls += 1
        if status.reachable and manager_before is not None and status.manager != manager_before and name in self.streams:
            self.streams[name].reopen()  # the events of the manager that answers now
        self.render_view()
        if self.is_running:
            delay = 0.01 if name in self._again else self.poll_period(name)  # (a timer of 0 s divides by zero)
            self._again.discard(name)
            self._poll_timers[name] = self.set_timer(delay, partial(self.start_poll, name), name=f"next poll {name}")

    # -- live events -----------------------------------------------------------------

    @property
    def live_refresh(self) -> float:
        """Seconds between polls of a site whose event stream is open."""
        return max(self.config.refresh, self.config.events.refresh)

    def poll_period(self, name: str) -> float:
        """Seconds until a site's next poll: longer while its event stream says when something changes.

        Events do not say when a started task is finally running (the engine sends none for tasks), so a
        site that something changed at shortly before, and that is still on its way (a service degraded, down
        or updating), is polled every SETTLE_POLL seconds for up to SETTLE_WINDOW seconds after its last event.
        """
        if name not in self.live:
            return self.config.refresh
        since_event = time.monotonic() - self._last_event.get(name, float("-inf"))
        moving = any(s.state in (DEGRADED, DOWN, UPDATING) for s in self.sites[name].services)
        if moving and since_event < SETTLE_WINDOW:
            return min(SETTLE_POLL, self.live_refresh)
        return self.live_refresh

    def _start_streams(self) -> None:
        """An event stream per site whose collector can say where its engine is (not the test fakes)."""
        if not self.config.events.enabled:
            return
        from .collectors.events import EventStream

        for name in self.order:
            collector = self.collectors[name]
            if not callable(getattr(collector, "endpoint", None)):
                continue
            site = collector.site
            self.streams[name] = EventStream(
                name, collector.endpoint, site.stacks,
                on_hint=lambda name=name: self.post_message(SiteEvents(name, None)),
                on_state=lambda connected, error, name=name: self.post_message(SiteEvents(name, connected, error)),
                timeout=self.config.timeout, debounce=self.config.events.debounce,
            ).start()

    def on_site_events(self, message: SiteEvents) -> None:
        name = message.site
        if message.connected is None:  # something changed at the site: poll it now
            self._last_event[name] = time.monotonic()
            if name in self._in_flight:
                self._again.add(name)  # the poll under way may have read the engine before the change
            else:
                self.start_poll(name)
            return
        if message.connected == (name in self.live):
            return
        if message.connected:
            self.live.add(name)
        else:
            self.live.discard(name)
            self.start_poll(name)  # back to the short period; an engine that went away shows now
        self.render_view()

    @property
    def suspended(self) -> bool:
        """True while the app is suspended (ctrl+z): nothing is polled or fetched meanwhile."""
        return self._suspended

    def _on_suspend(self, _app: App) -> None:
        self._suspended = True

    def _on_resume(self, _app: App) -> None:
        self._suspended = False
        deferred, self._deferred = self._deferred, set()
        for name in deferred:
            self.start_poll(name)

    def _fatal_error(self) -> None:
        """An unhandled exception ends the app (exit code 1, as Textual sets it) with a report that holds no
        local variables (Textual's default shows them: URLs with passwords, server data) and no secret."""
        import sys

        from rich.text import Text

        from .crash import crash_report

        self.bell()
        self._exit_renderables.append(Text(crash_report(sys.exc_info()[1], self.secrets)))
        self._close_messages_no_wait()

    def on_unmount(self) -> None:
        for stream in self.streams.values():
            stream.close(wait=0)  # all told to stop at once, then each waited for
        for stream in self.streams.values():
            stream.join()
        for collector in self.collectors.values():
            try:
                collector.close()
            except Exception:
                pass

    # -- rendering -------------------------------------------------------------------

    def site_list(self) -> list[SiteStatus]:
        return [self.sites[name] for name in self.order]

    def render_view(self) -> None:
        """Bring header, table and status line up to date, touching only what changed."""
        now = self.clock()
        sites = self.site_list()
        table = next(iter(self.query(ServicesTable)), None)
        bar = next(iter(self.query(SiteBar)), None)
        if table is None or bar is None:  # a tick or a poll arriving while the app is being torn down
            return
        with self.batch_update():
            bar.show(sites, now, self.live)
            for pane in self.query(BucketsPane):
                pane.link(sites, now)
            rows = build_rows(sites, now, self.view)
            if table.compact is None or table.compact == self.view.compact:
                table.set_columns(columns(self.view.compact), rows)
            self._show_status(summary(sites, self.view, sum(1 for r in rows if r.kind == "service")))
            if isinstance(self.screen, DetailScreen):
                current = self.service(self.screen.service.key)
                if current is not None:
                    self.screen.update_service(current)
            elif isinstance(self.screen, NodesScreen):
                self.screen.show(sites)

    def _show_status(self, text: str) -> None:
        self.query_one("#status", Line).set(text)

    def on_services_table_compact_changed(self, message: ServicesTable.CompactChanged) -> None:
        self.view = replace(self.view, compact=message.compact)
        self.render_view()

    def service(self, key: str) -> ServiceStatus | None:
        """The latest status of the service with this key."""
        for site in self.sites.values():
            for service in site.services:
                if service.key == key:
                    return service
        return None

    # -- keys -----------------------------------------------------------------------

    def check_action(self, action: str, parameters: tuple[object, ...]) -> bool | None:
        on_dashboard = not isinstance(self.screen, (DetailScreen, HelpScreen, NodesScreen, InspectScreen))
        if action == "inspect":
            return on_dashboard or isinstance(self.screen, DetailScreen)
        if action in ("copy_name", "copy_command"):
            return not isinstance(self.screen, HelpScreen)
        if action in ("filter", "toggle_problems", "nodes"):
            return on_dashboard
        if action == "clear_filter":
            return on_dashboard and (bool(self.view.filter) or not self.query_one("#filter").has_class("-hidden"))
        return True

    def action_filter(self) -> None:
        self.query_one(Views).show_view(0)  # the filter applies to the services: show them
        box = self.query_one("#filter", Input)
        box.remove_class("-hidden")
        box.focus()

    def action_clear_filter(self) -> None:
        box = self.query_one("#filter", Input)
        box.value = ""
        box.add_class("-hidden")
        self._set_filter("")
        self.query_one(ServicesTable).focus()

    def on_input_changed(self, event: Input.Changed) -> None:
        if event.input.id == "filter":
            self._set_filter(event.value.strip())

    def on_input_submitted(self, event: Input.Submitted) -> None:
        if event.input.id == "filter":
            if not event.value.strip():
                event.input.add_class("-hidden")
            self.query_one(ServicesTable).focus()

    def _set_filter(self, text: str) -> None:
        if text != self.view.filter:
            self.view = replace(self.view, filter=text)
            self.render_view()
            self.refresh_bindings()

    def action_toggle_problems(self) -> None:
        self.view = replace(self.view, problems_only=not self.view.problems_only)
        self.render_view()

    def action_refresh(self) -> None:
        for name in self.order:
            self.start_poll(name)
        for pane in self.query(BucketsPane):
            pane.poll_now()
        for pane in self.query(ProgressPane):
            pane.poll_now()
        if isinstance(self.screen, DetailScreen):
            self.screen.fetch()

    def selected_service(self) -> ServiceStatus | None:
        """The service on the detail screen, else the one under the services table's cursor (None on another row)."""
        if isinstance(self.screen, DetailScreen):
            return self.service(self.screen.service.key) or self.screen.service
        table = next(iter(self.query(ServicesTable)), None)
        key = table.cursor_key if table is not None else None
        row = table.row_for(key) if key else None
        if row is None or row.kind != "service" or row.service is None:
            return None
        return self.service(row.key) or row.service

    def action_inspect(self) -> None:
        service = self.selected_service()
        if service is None:
            self.notify("select a service to inspect", severity="warning", markup=False)
            return
        site = self.sites.get(service.site)
        rows = [s for s in (site.services if site else ()) if s.stack == service.stack]
        config_site = next((s for s in self.config.sites if s.name == service.site), None)
        compose = config_site.stacks.get(service.stack) if config_site is not None else None
        self.push_screen(InspectScreen(service, self.collectors[service.site], compose, rows))

    def _copy(self, text: str, what: str) -> None:
        """Put `text` on the clipboard through the terminal (OSC 52), cleaned, and say what was copied."""
        from .clipboard import safe

        text = safe(scrub(text, self.secrets))
        self.copy_to_clipboard(text)
        shown = text if len(text) <= 80 and "\n" not in text else f"{text.count(chr(10)) + 1} lines, {len(text)} characters"
        self.notify(f"copied {what}: {shown}", title="Clipboard (OSC 52)", markup=False)

    def action_copy_name(self) -> None:
        if isinstance(self.screen, NodesScreen):
            table = self.screen.query_one("#nodes", KeyedTable)
            row = table.row_for(table.cursor_key or "")
            if row is not None:
                self._copy(row.cells[1].text, "the node's hostname")
            return
        service = self.screen.service if isinstance(self.screen, InspectScreen) else self.selected_service()
        if service is None:
            self.notify("select a service to copy its name", severity="warning", markup=False)
            return
        self._copy(service.name, "the service's name")

    def action_copy_command(self) -> None:
        from .clipboard import host_flags, plan_commands, view_command

        plan = getattr(self, "last_plan", None)
        if plan is not None and plan_commands(plan):
            self._copy(plan_commands(plan), f"the docker commands of the last action ({plan.action} {plan.target})")
            return
        if isinstance(self.screen, NodesScreen):
            view, service = "nodes", None
        elif isinstance(self.screen, InspectScreen):
            view, service = "inspect", self.screen.service
        elif isinstance(self.screen, DetailScreen):
            view, service = "detail", self.screen.service
        else:
            view, service = "services", self.selected_service()
        site = next((s for s in self.config.sites if service is not None and s.name == service.site), None)
        if site is None and self.config.sites and view == "nodes":
            site = self.config.sites[0]
        host = host_flags(site.endpoints[0] if site is not None and site.endpoints else None)
        command = view_command(view, service.name if service else None, host)
        if command is None:
            self.notify("select a service (or run an action) to copy a docker command", severity="warning", markup=False)
            return
        self._copy(command, "the docker command for this view")

    def action_nodes(self) -> None:
        self.push_screen(NodesScreen(self.site_list()))

    def action_help(self) -> None:
        if isinstance(self.screen, HelpScreen):
            return
        self.push_screen(HelpScreen(self.help_rows()))

    def help_rows(self) -> list[tuple[str, str, str]]:
        """Every key of the dashboard, its views and tables, and the detail screen."""
        views = next(iter(self.query(Views)), None)
        return help_rows(
            [
                ("Everywhere", class_bindings(DtmonApp)),
                ("Views", views.help_bindings() if views is not None else class_bindings(Views)),
                ("Tables", [b for b in class_bindings(KeyedTable) if b.action != "select_cursor"]),
                ("Services table", ServicesTable.BINDINGS),
                ("Service detail", class_bindings(DetailScreen)),
                ("Nodes", class_bindings(NodesScreen)),
                ("Inspect", class_bindings(InspectScreen)),
                ("Filter box", [Binding("enter", "submit", "Keep the filter and go back to the table")]),
            ]
        )

    def action_help_quit(self) -> None:
        """ctrl+c: say which keys quit, the same the help screen lists (Textual's own words name only one)."""
        keys = sorted({key_name(b) for b in class_bindings(type(self)) if b.action == "quit"}, key=len)
        self.notify(f"Press {' or '.join(keys)} to quit dtmon", title="Do you want to quit?", markup=False)

    def toggle_fold(self, key: str) -> None:
        """Fold or unfold a stack (`stack:site/name`), or every stack of a site (`site:name`)."""
        if key.startswith("site:"):
            site = self.sites.get(key[len("site:"):])
            stacks = {stack_key(site.name, stack.name) for stack in site.stacks} if site else set()
            folded = self.view.folded - stacks if stacks <= self.view.folded else self.view.folded | stacks
        else:
            folded = self.view.folded ^ {key}
        self.view = replace(self.view, folded=frozenset(folded))
        self.render_view()

    def on_data_table_row_selected(self, event: DataTable.RowSelected) -> None:
        if not isinstance(event.data_table, ServicesTable):
            return
        row = event.data_table.row_for(event.row_key.value)
        if row is not None and row.kind in ("site", "stack"):
            self.toggle_fold(row.key)
            return
        if row is None or row.service is None:
            return
        service = self.service(row.key) or row.service
        self.push_screen(DetailScreen(service, self.collectors[service.site], self.config.refresh, self.clock))
