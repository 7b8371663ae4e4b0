"""Guarded actions in the dashboard: the confirm dialog, the progress screen, and the keys that open them.

The keys exist only on `actions_app(DtmonApp)`, the subclass used when actions are allowed; the plain
app (read-only) never registers them.
"""

from __future__ import annotations

import importlib.resources
import threading
import time
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from rich.text import Text
from textual.app import App, ComposeResult
from textual.binding import Binding
from textual.containers import Horizontal, Vertical, VerticalScroll
from textual.content import Content
from textual.message import Message
from textual.screen import ModalScreen, Screen
from textual.widgets import Button, DataTable, Footer, Input, Static

from ..actions.plan import Plan, plan_redeploy, plan_restart, resume_plan
from ..config import Config
from ..model import ServiceStatus, Snapshot

MARK = {"pending": "·", "running": "▶", "done": "✓", "failed": "✗", "stopped": "■", "interrupted": "✗"}


def actions_stylesheet() -> Path:
    """actions.tcss from the installed `dtmon.styles` package, else the checkout's `styles/`."""
    try:
        resource = importlib.resources.files("dtmon.styles") / "actions.tcss"
        if resource.is_file():
            return Path(str(resource))
    except ModuleNotFoundError:
        pass
    return Path(__file__).resolve().parent.parent.parent / "styles" / "actions.tcss"


# ---------------------------------------------------------------------------
# Confirm dialog.
# ---------------------------------------------------------------------------


class ConfirmPlan(ModalScreen[bool]):
    """The whole plan, Cancel focused; a core redeploy needs its stack name typed before Run is enabled."""

    CSS_PATH = [actions_stylesheet()]
    BINDINGS = [Binding("escape", "cancel", "Cancel", tooltip="Close without running anything")]
    #: On a short terminal (80×24) the dialog drops its margins so the steps get the room.
    VERTICAL_BREAKPOINTS = [(0, "-short"), (36, "-tall")]

    def __init__(self, plan: Plan) -> None:
        super().__init__(id="confirm-plan")
        self.plan = plan

    def compose(self) -> ComposeResult:
        plan = self.plan
        with Vertical(id="confirm-dialog", classes="-refused" if not plan.ok else ("-core" if plan.core else "")):
            yield Static(Content.styled(plan.title, "bold"), id="confirm-title", markup=False)
            if plan.steps:
                more = " (scroll for the notes below them)" if plan.notes or plan.commits else ""
                yield Static(Content(f"{len(plan.steps)} steps, in order{more}:"), id="confirm-count", markup=False)
            with VerticalScroll(id="confirm-body"):
                yield Static(Content(plan.text(title=False, steps_first=True)), id="confirm-plan-text", markup=False)
            if plan.ok and plan.core:
                yield Static(Content(f"Every datatrail stack goes down. Type {plan.target} to enable Run:"), markup=False)
                yield Input(placeholder="stack name", id="typed")
            with Horizontal(id="confirm-buttons"):
                yield Button("Cancel" if plan.ok else "Close", id="cancel", variant="primary")
                if plan.ok:
                    yield Button(f"Run {len(plan.steps)} steps", id="run", variant="error", disabled=plan.core)

    def on_mount(self) -> None:
        self.query_one("#cancel", Button).focus()

    def on_input_changed(self, event: Input.Changed) -> None:
        if event.input.id == "typed":
            self.query_one("#run", Button).disabled = event.value.strip() != self.plan.target

    def on_input_submitted(self, event: Input.Submitted) -> None:
        event.stop()  # Enter in the box never runs the plan: Run must be pressed

    def on_button_pressed(self, event: Button.Pressed) -> None:
        event.stop()
        self.dismiss(event.button.id == "run" and self.plan.ok)

    def action_cancel(self) -> None:
        self.dismiss(False)


class ScaleDialog(ModalScreen["int | None"]):
    """How many replicas: the number typed (checked as `dtmon scale` checks it), or None when cancelled."""

    CSS_PATH = [actions_stylesheet()]
    BINDINGS = [Binding("escape", "cancel", "Cancel", tooltip="Close without scaling")]

    def __init__(self, service: ServiceStatus) -> None:
        super().__init__(id="scale-dialog")
        self.service = service

    def compose(self) -> ComposeResult:
        service = self.service
        with Vertical(id="scale-box"):
            yield Static(Content.styled(f"scale {service.name} at {service.site}", "bold"), markup=False)
            yield Static(Content(f"now {service.running}/{service.desired} running; replicas wanted "
                                 "(enter shows the plan):"), markup=False)
            yield Input(str(service.desired), id="replicas", restrict=r"[0-9]*", max_length=9)
            yield Static(id="scale-error", markup=False)

    def on_input_submitted(self, event: Input.Submitted) -> None:
        event.stop()
        from ..actions.cli import _replicas

        try:
            self.dismiss(_replicas(event.value.strip()))
        except Exception as exc:  # argparse.ArgumentTypeError: said in the dialog, which stays
            self.query_one("#scale-error", Static).update(Content(str(exc)))

    def action_cancel(self) -> None:
        self.dismiss(None)


# ---------------------------------------------------------------------------
# Progress screen.
# ---------------------------------------------------------------------------


@dataclass
class StepChanged(Message):
    """A step's state changed (posted from the executor's thread)."""

    index: int
    status: str
    started: float | None
    ended: float | None
    note: str
    error: str | None


@dataclass
class RunFinished(Message):
    """The run ended: `result` is a RunResult, or `error` says why it never started (e.g. the lock)."""

    result: Any | None
    error: str | None


@dataclass
class ResumeReady(Message):
    """A fresh plan to resume from the failed step has been made."""

    plan: Plan


class Progress(Screen):
    """Each step pending / running / done / failed with its time; the outcome; resume on failure."""

    CSS_PATH = [actions_stylesheet()]
    BINDINGS = [Binding("escape", "close", "Close", tooltip="Back to the dashboard (once the run has ended)")]

    def __init__(self, config: Config, plan: Plan, wait_timeout: float = 300.0, start: bool = True) -> None:
        super().__init__(id="progress")
        self.config = config
        self.plan = plan
        self.wait_timeout = wait_timeout
        self.autostart = start
        self.running = False
        self.result: Any | None = None
        self.states: dict[int, StepChanged] = {}
        self.stop = threading.Event()

    def compose(self) -> ComposeResult:
        yield Static(Content.styled(self.plan.title, "bold"), id="progress-title", markup=False)
        yield DataTable(id="steps", cursor_type="row", zebra_stripes=False)
        yield Static(id="progress-note", markup=False)
        yield Static(id="progress-outcome", markup=False)
        with Horizontal(id="progress-buttons"):
            yield Button("Stop", id="stop", variant="error",
                         tooltip="Stop now when a wait step is running, else at the end of the current step")
            yield Button("Resume", id="resume", variant="warning", classes="-hidden")
            yield Button("Close", id="close", disabled=True)
        yield Footer()

    def on_mount(self) -> None:
        table = self.query_one("#steps", DataTable)
        table.add_column("#", key="n")
        table.add_column("state", key="state", width=9)
        table.add_column("time", key="time", width=7)
        table.add_column("step", key="step")
        for index, step in enumerate(self.plan.steps):
            # A str cell is read as markup: the command holds names from servers, so it is Text, always.
            table.add_row(str(index + 1), f"{MARK['pending']} pending", "", Text(step.command), key=str(index))
        if self.autostart:
            self.start()

    def start(self) -> None:
        self.running = True
        self.query_one("#progress-outcome", Static).update("running…")
        self.set_interval(1.0, self._tick, name="progress tick")
        self.run_worker(self._run_in_thread, thread=True, exit_on_error=False, name="run plan", group="action")

    def _run_in_thread(self) -> None:
        from ..actions.execute import run_plan
        from ..actions.lock import LockHeld

        def update(run: Any) -> None:
            self.post_message(StepChanged(run.index, run.status, run.started, run.ended, run.note, run.error))

        try:
            result = run_plan(self.config, self.plan, on_update=update, wait_timeout=self.wait_timeout, stop=self.stop)
        except LockHeld as exc:
            from ..actions.execute import audit_refusal

            try:  # refused by the lock: audited, as on the command line
                audit_refusal(self.config, self.plan, str(exc))
            except OSError:
                pass
            self.post_message(RunFinished(None, str(exc)))
            return
        except Exception as exc:  # never leave the screen spinning
            self.post_message(RunFinished(None, f"{type(exc).__name__}: {exc}"))
            return
        self.post_message(RunFinished(result, None))

    def _elapsed(self, change: StepChanged) -> str:
        if change.started is None:
            return ""
        return f"{(change.ended or time.time()) - change.started:.1f}s"

    def on_step_changed(self, message: StepChanged) -> None:
        self.states[message.index] = message
        table = self.query_one("#steps", DataTable)
        key = str(message.index)
        table.update_cell(key, "state", f"{MARK.get(message.status, '?')} {message.status}")
        table.update_cell(key, "time", self._elapsed(message))
        if message.status == "running":
            table.move_cursor(row=message.index)
        text = message.error or message.note
        self.query_one("#progress-note", Static).update(f"{message.index + 1}: {text}" if text else "")

    def _tick(self) -> None:
        if not self.running:
            return
        table = self.query_one("#steps", DataTable)
        for change in self.states.values():
            if change.status == "running":
                table.update_cell(str(change.index), "time", self._elapsed(change))

    def on_run_finished(self, message: RunFinished) -> None:
        self.running = False
        self.result = message.result
        self.query_one("#stop", Button).add_class("-hidden")
        self.query_one("#close", Button).disabled = False
        outcome = self.query_one("#progress-outcome", Static)
        if message.error:
            outcome.update(f"not started: {message.error}")
            self.query_one("#close", Button).focus()
            return
        result = message.result
        lines = [f"outcome: {result.outcome}"]
        if result.outcome == "stopped":
            cut = next((r for r in result.runs if r.status == "stopped"), None)
            where = next((r for r in result.runs if r.status == "pending"), None)
            if cut is not None:
                lines[0] += f" during step {cut.index + 1} ({cut.step.title})"
            elif where is not None:
                lines[0] += f" before step {where.index + 1} ({where.step.title})"
        if result.outcome != "done":
            lines += [f"  {where}: {state}" for where, state in result.states.items()]
            if result.resume_index is not None and self.plan.action == "redeploy":
                resume = self.query_one("#resume", Button)
                resume.label = f"Resume from step {result.resume_index + 1}"
                resume.remove_class("-hidden")
        outcome.update("\n".join(lines))
        outcome.set_class(result.outcome != "done", "-failed")
        self.query_one("#close", Button).focus()
        refresh = getattr(self.app, "action_refresh", None)
        if refresh is not None:
            refresh()

    def on_button_pressed(self, event: Button.Pressed) -> None:
        event.stop()
        if event.button.id == "close":
            self.action_close()
        elif event.button.id == "stop":
            self.stop.set()
            event.button.disabled = True
            running = next((c for c in self.states.values() if c.status == "running"), None)
            waiting = running is not None and self.plan.steps[running.index].kind.startswith("wait")
            self.query_one("#progress-outcome", Static).update(
                "stopping the wait now…" if waiting else "stopping at the end of the current step…")
        elif event.button.id == "resume" and self.result is not None:
            event.button.disabled = True
            self.query_one("#progress-outcome", Static).update("making a fresh plan to resume…")
            self.run_worker(self._replan_in_thread, thread=True, exit_on_error=False, name="replan", group="action")

    def _replan_in_thread(self) -> None:
        from ..collectors.poll import snapshot

        step = self.plan.steps[self.result.resume_index]
        fresh = gather_redeploy_plan(self.config, snapshot(self.config), self.plan.site, self.plan.target)
        self.post_message(ResumeReady(resume_plan(fresh, step.key)))

    def on_resume_ready(self, message: ResumeReady) -> None:
        def confirmed(ok: bool | None) -> None:
            if ok:
                self.app.switch_screen(Progress(self.config, message.plan, self.wait_timeout))
            else:
                self.query_one("#resume", Button).disabled = False
                self.query_one("#progress-outcome", Static).update("resume cancelled")

        self.app.push_screen(ConfirmPlan(message.plan), confirmed)

    def action_close(self) -> None:
        if not self.running:
            self.app.pop_screen()


# ---------------------------------------------------------------------------
# The keys, on the app class used when actions are allowed.
# ---------------------------------------------------------------------------


def gather_redeploy_plan(config: Config, snap: Snapshot, site: str, stack: str) -> Plan:
    """Fetch the compose repos (blocking: call from a thread), then plan on `snap`; never raises."""
    from ..actions import gitrepo
    from ..actions.lock import who
    from ..actions.plan import compose_files

    try:
        repos = gitrepo.gather(compose_files(config, site, stack))
    except Exception as exc:  # e.g. git missing: a refusal the operator can read, not a silent worker error
        return Plan("redeploy", site, stack, refusal=f"cannot read the compose repositories: {exc}")
    user, host = who()
    return plan_redeploy(config, snap, site, stack, repos, who=f"{user}@{host}")


@dataclass
class PlanReady(Message):
    """A plan was made in a worker and waits for the operator's confirmation."""

    plan: Plan


ACTION_BINDINGS = [
    Binding("R", "restart_service", "Restart",
            tooltip="Restart the selected service, or the consumer of the selected bucket (rolling, like `service update --force`)"),
    Binding("D", "redeploy_stack", "Redeploy", tooltip="Redeploy the selected stack (or the selected service's stack)"),
    Binding("S", "scale_service", "Scale",
            tooltip="Scale the selected service: type the replicas, then the plan (like `docker service scale`)"),
    Binding("U", "rollback_service", "Roll back",
            tooltip="Roll the selected service back to its previous spec (like `docker service rollback`)"),
]


@dataclass(frozen=True)
class Selection:
    """What the operator visibly has selected: the view in front, and its row."""

    view: str  #: "services", "detail", "buckets", "progress" or another pane's title
    site: str | None = None
    service: ServiceStatus | None = None
    stack: str | None = None
    bucket: Any = None  #: the BucketStatus under the cursor (buckets view)


class ActionsMixin:
    """Restart, redeploy, scale and rollback keys for the dashboard app; mixed in only when actions are allowed."""

    #: seconds each wait step may take
    action_wait_timeout: float = 300.0
    #: what is being planned in a worker ("redeploy of X at Y"), None when nothing is
    planning: str | None = None

    def seen_snapshot(self: Any) -> Snapshot:
        """The snapshot the operator is looking at (what the plan must act on)."""
        sites = tuple(self.site_list())
        times = [s.polled_at for s in sites if s.polled_at is not None]
        return Snapshot(generated_at=min(times) if times else datetime.now(timezone.utc), sites=sites)

    def _front_view(self: Any) -> Any:
        """The view the operator looks at: the one holding the focus, else the active tab, else the services."""
        from ..widgets.views import Views

        views = self.query_one(Views)
        focused = self.focused
        for view in views.views:
            if focused is not None and (focused is view or view in focused.ancestors):
                return view
        if views.tabbed:
            shown = views.views
            return shown[views.active] if 0 <= views.active < len(shown) else None
        return views.views[0] if views.views else None

    def selection(self: Any) -> Selection:
        """What R and D act on: only what is visibly selected (never a hidden view's cursor)."""
        from ..screens.detail import DetailScreen
        from ..widgets.buckets import BucketsPane
        from ..widgets.table import ServicesTable
        from ..widgets.views import Views

        if isinstance(self.screen, DetailScreen):
            service = self.screen.service
            return Selection("detail", service.site, service, service.stack)
        view = self._front_view()
        if isinstance(view, BucketsPane):
            key = view.table.cursor_key
            report = view.report
            bucket = next((b for b in report.buckets if b.name == key), None) if report and key else None
            return Selection("buckets", bucket=bucket)
        if not isinstance(view, ServicesTable):
            return Selection(Views.title(view) if view is not None else "none")
        key = view.cursor_key
        row = view.row_for(key) if key else None
        if row is not None and row.kind == "service" and row.service is not None:
            service = self.service(row.key) or row.service
            return Selection("services", service.site, service, service.stack)
        if row is not None and row.kind == "stack" and key and key.startswith("stack:"):
            site, _, stack = key[len("stack:"):].partition("/")
            return Selection("services", site, None, stack)
        return Selection("services")

    def selected(self: Any) -> tuple[str | None, ServiceStatus | None, str | None]:
        """(site, service, stack) visibly selected (the detail screen's service when it is open)."""
        chosen = self.selection()
        return chosen.site, chosen.service, chosen.stack

    def running_action(self: Any) -> "Progress | None":
        """The progress screen of a run still in progress, anywhere in the screen stack."""
        return next((s for s in self.screen_stack if isinstance(s, Progress) and s.running), None)

    def busy(self: Any) -> str | None:
        """Why no new action may start now, or None."""
        if self.planning:
            return f"a plan is being made ({self.planning}): wait for its dialog"
        if any(isinstance(s, ConfirmPlan) for s in self.screen_stack):
            return "a plan is already waiting for confirmation"
        if any(isinstance(s, ScaleDialog) for s in self.screen_stack):
            return "the scale dialog is open"
        if (running := self.running_action()) is not None:
            return f"{running.plan.title} is running"
        return None

    def check_action(self: Any, action: str, parameters: tuple[object, ...]) -> bool | None:
        if action in ("restart_service", "redeploy_stack", "scale_service", "rollback_service"):
            if isinstance(self.screen, (ModalScreen, Progress)):
                return False
            return True  # the action says why when there is nothing to act on
        if isinstance(self.screen, Progress) and action in ("filter", "toggle_problems", "clear_filter"):
            return False  # dashboard keys do nothing here
        return super().check_action(action, parameters)  # type: ignore[misc]

    def _refuse_while_running(self: Any, what: str) -> bool:
        """True (and a notice saying why) when a run is in progress: never walk away from a half-done redeploy."""
        running = self.running_action()
        if running is None:
            return False
        self.notify(f"{what} refused: {running.plan.title} is running. Stop it (or let it end) first.",
                    severity="warning", markup=False)
        return True

    async def action_quit(self: Any) -> None:
        if not self._refuse_while_running("quit"):
            await super().action_quit()  # type: ignore[misc]

    def action_suspend_process(self: Any) -> None:
        if not self._refuse_while_running("suspend (ctrl+z)"):
            super().action_suspend_process()  # type: ignore[misc]

    def action_restart_service(self: Any) -> None:
        if why := self.busy():
            self.notify(f"R ignored: {why}", severity="warning", markup=False)
            return
        chosen = self.selection()
        service = chosen.service
        if chosen.view == "buckets":
            service = self._bucket_consumer(chosen.bucket)
            if service is None:
                return
        elif chosen.view not in ("services", "detail"):
            self.notify(f"R restarts a service: nothing to restart in the {chosen.view} view "
                        "(select a service in the services view, key 1)", severity="warning", markup=False)
            return
        if service is None:
            self.notify("select a service to restart", severity="warning", markup=False)
            return
        plan = plan_restart(self.config, self.seen_snapshot(), service.site, service.name)
        self._confirm_and_run(plan)

    def _bucket_consumer(self: Any, bucket: Any) -> ServiceStatus | None:
        """The consumer R restarts for a bucket row (with a notice saying which), or None with a notice why not."""
        if bucket is None:
            self.notify("select a bucket whose consumer to restart", severity="warning", markup=False)
            return None
        found = []
        for key, state in bucket.consumers:
            service = self.service(key)
            if service is not None:
                found.append((service, state))
        if not found:
            self.notify(f"bucket {bucket.name}: no consumer watched here to restart", severity="warning", markup=False)
            return None
        not_running = [service for service, state in found if state != "running"]
        if len(found) > 1 and len(not_running) != 1:
            names = ", ".join(service.key for service, _ in found)
            self.notify(f"bucket {bucket.name} has {len(found)} consumers ({names}): "
                        "restart one from the services view (key 1)", severity="warning", markup=False)
            return None
        service = not_running[0] if not_running else found[0][0]
        self.notify(f"bucket {bucket.name}: restart its consumer {service.key}", markup=False)
        return service

    def action_redeploy_stack(self: Any) -> None:
        if why := self.busy():
            self.notify(f"D ignored: {why}", severity="warning", markup=False)
            return
        chosen = self.selection()
        if chosen.view not in ("services", "detail"):
            self.notify(f"D redeploys a stack: nothing to redeploy in the {chosen.view} view "
                        "(select a stack or service in the services view, key 1)", severity="warning", markup=False)
            return
        site, stack = chosen.site, chosen.stack
        if site is None or stack is None:
            self.notify("select a stack to redeploy", severity="warning", markup=False)
            return
        snap = self.seen_snapshot()
        self.planning = f"redeploy of {stack} at {site}"
        self.notify(f"planning redeploy of {stack} at {site}: fetching compose repos…", markup=False)

        def gather() -> None:
            try:
                plan = gather_redeploy_plan(self.config, snap, site, stack)
            except Exception as exc:  # never leave `planning` set: every later key would be refused
                plan = Plan("redeploy", site, stack, refusal=f"the plan could not be made: {exc}")
            self.post_message(PlanReady(plan))

        self.run_worker(
            gather,
            thread=True,
            exit_on_error=False,
            name="plan redeploy",
            group="action",
        )

    def _one_service(self: Any, key: str, does: str, do: str) -> ServiceStatus | None:
        """The service S or U acts on (the visible selection), or None with a notice why there is none."""
        if why := self.busy():
            self.notify(f"{key} ignored: {why}", severity="warning", markup=False)
            return None
        chosen = self.selection()
        if chosen.view not in ("services", "detail"):
            self.notify(f"{key} {does} a service: nothing to {do} in the {chosen.view} view "
                        "(select a service in the services view, key 1)", severity="warning", markup=False)
            return None
        if chosen.service is None:
            self.notify(f"select a service to {do}", severity="warning", markup=False)
            return None
        return chosen.service

    def _plan_in_worker(self: Any, what: str, make: Any, fallback: Plan) -> None:
        """Make a plan in a thread (it reads a file or asks an engine), then the confirm dialog."""
        self.planning = what

        def gather() -> None:
            try:
                plan = make()
            except Exception as exc:  # never leave `planning` set: every later key would be refused
                from dataclasses import replace

                plan = replace(fallback, refusal=f"the plan could not be made: {exc}")
            self.post_message(PlanReady(plan))

        self.run_worker(gather, thread=True, exit_on_error=False, name=f"plan {fallback.action}", group="action")

    def action_scale_service(self: Any) -> None:
        service = self._one_service("S", "scales", "scale")
        if service is None:
            return
        snap = self.seen_snapshot()

        def chosen(replicas: int | None) -> None:
            if replicas is None:
                return
            from ..actions.service_plan import gather_scale

            self._plan_in_worker(f"scale of {service.name} at {service.site}",
                                 lambda: gather_scale(self.config, snap, service.site, service.name, replicas),
                                 Plan("scale", service.site, service.name, replicas=replicas))

        self.push_screen(ScaleDialog(service), chosen)

    def action_rollback_service(self: Any) -> None:
        service = self._one_service("U", "rolls back", "roll back")
        if service is None:
            return
        from ..actions.service_plan import gather_rollback

        snap = self.seen_snapshot()
        self.notify(f"planning rollback of {service.name} at {service.site}: reading its previous spec…", markup=False)
        self._plan_in_worker(f"rollback of {service.name} at {service.site}",
                             lambda: gather_rollback(self.config, snap, service.site, service.name),
                             Plan("rollback", service.site, service.name))

    def on_plan_ready(self: Any, message: PlanReady) -> None:
        self.planning = None
        self._confirm_and_run(message.plan)

    def _confirm_and_run(self: Any, plan: Plan) -> None:
        if any(isinstance(s, ConfirmPlan) for s in self.screen_stack):
            return  # one dialog at a time (cannot happen through the keys, which refuse while one is open)
        if not plan.ok:
            self._audit_refusal(plan)

        def confirmed(ok: bool | None) -> None:
            if ok:
                self.last_plan = plan  # what C copies: the docker commands of the last action run here
                self.push_screen(Progress(self.config, plan, self.action_wait_timeout))

        self.push_screen(ConfirmPlan(plan), confirmed)

    def _audit_refusal(self: Any, plan: Plan) -> None:
        """A refused plan is audited, as on the command line; a log that cannot be written is said, not raised."""
        from ..actions.execute import audit_refusal

        try:
            audit_refusal(self.config, plan, plan.refusal or "refused")
        except OSError as exc:
            self.notify(f"the refusal could not be audited: {exc}", severity="error", markup=False)

    def help_rows(self: Any) -> list[tuple[str, str, str]]:
        from .help import help_rows

        return super().help_rows() + help_rows([("Actions", ACTION_BINDINGS)])  # type: ignore[misc]


_CLASSES: dict[type, type] = {}


def actions_app(base: type[App]) -> type[App]:
    """`base` with the restart and redeploy keys: the app class to run when actions are allowed."""
    if base not in _CLASSES:
        # BINDINGS on the class itself: Textual merges bindings of DOMNode classes only, not of mixins.
        _CLASSES[base] = type(f"Actions{base.__name__}", (ActionsMixin, base), {"BINDINGS": ACTION_BINDINGS})
    return _CLASSES[base]


def app_class(base: type[App], config: Config) -> type[App]:
    """The app class for this config: read-only never has the action keys."""
    return actions_app(base) if config.deploy.allow else base
