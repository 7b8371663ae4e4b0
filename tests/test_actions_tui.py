"""The action keys in the dashboard: absent read-only, a safe confirm dialog, a progress screen that really runs."""

from __future__ import annotations

from dataclasses import replace
from datetime import datetime, timezone
from pathlib import Path

from textual.widgets import Button, DataTable, Input, Static

from dtmon.actions import gitrepo
from dtmon.actions.plan import PULL, Plan, Step
from dtmon.app import DtmonApp
from dtmon.config import Config, DeployConfig, SiteConfig
from dtmon.model import RUNNING, ServiceStatus, SiteStatus, StackStatus
from dtmon.screens.actions import ConfirmPlan, Progress, actions_app, app_class
from dtmon.widgets.table import ServicesTable
from gitworld import Repo

NOW = datetime(2026, 11, 25, 22, 0, tzinfo=timezone.utc)


class FakeCollector:
    """A site that always answers with the same services (no engine: this is about the UI)."""

    def __init__(self, site: SiteConfig) -> None:
        self.site = site
        self.last = SiteStatus(site.name, reachable=False)

    def poll(self) -> SiteStatus:
        stacks = []
        for stack in self.site.stacks:
            svc = ServiceStatus(
                site=self.site.name, stack=stack, service="worker", name=f"{stack}_worker", mode="replicated",
                running=1, desired=1, state=RUNNING, image="img:1", updated_at=None, error=None, error_at=None,
                failed_recent=0, id=f"id-{self.site.name}-{stack}",
            )
            stacks.append(StackStatus(stack, (svc,)))
        self.last = SiteStatus(self.site.name, reachable=True, polled_at=NOW, latency_ms=1.0, stacks=tuple(stacks))
        return self.last

    def close(self) -> None:
        pass


def make_config(tmp_path: Path, allow: bool) -> Config:
    site = SiteConfig("kko", "unix:///nonexistent/kko.sock", {"datatrail-client": tmp_path / "kko-client.yaml"})
    deploy = DeployConfig(allow=allow, audit=tmp_path / "audit.jsonl", lock=tmp_path / "actions.lock")
    return Config(None, refresh=60, sites=(site,), deploy=deploy)


def make_app(config: Config):
    cls = app_class(DtmonApp, config)
    return cls(config, collectors=[FakeCollector(s) for s in config.sites], tick=60)


async def wait_polled(app, pilot) -> None:
    for _ in range(100):
        if app.polls >= len(app.order):
            break
        await pilot.pause(0.02)
    await pilot.pause()


def select(app, key: str) -> None:
    table = app.query_one(ServicesTable)
    table.move_cursor(row=table.get_row_index(key))


async def test_read_only_offers_no_action(tmp_path):
    config = make_config(tmp_path, allow=False)
    app = make_app(config)
    assert type(app) is DtmonApp
    async with app.run_test(size=(120, 30)) as pilot:
        await wait_polled(app, pilot)
        actions = {b.binding.action for b in app.active_bindings.values()}
        assert "restart_service" not in actions and "redeploy_stack" not in actions
        assert "read-only" in str(app.query_one("#mode", Static).render())
        select(app, "kko/datatrail-client_worker")
        await pilot.press("R", "D")
        await pilot.pause()
        assert not isinstance(app.screen, (ConfirmPlan, Progress))
        assert all("Restart" not in row[2] for row in app.help_rows())


async def test_restart_key_shows_the_plan_with_cancel_focused(tmp_path):
    config = make_config(tmp_path, allow=True)
    app = make_app(config)
    assert type(app) is actions_app(DtmonApp)
    async with app.run_test(size=(120, 30)) as pilot:
        await wait_polled(app, pilot)
        assert "ACTIONS ENABLED" in str(app.query_one("#mode", Static).render())
        assert any(row[2].startswith("Restart the selected service") for row in app.help_rows())
        select(app, "kko/datatrail-client_worker")
        await pilot.pause()
        await pilot.press("R")
        await pilot.pause()
        assert isinstance(app.screen, ConfirmPlan)
        dialog = app.screen
        assert dialog.plan.action == "restart" and dialog.plan.target == "datatrail-client_worker"
        assert dialog.plan.steps[0].service_id == "id-kko-datatrail-client"  # the service the operator saw
        assert app.focused is dialog.query_one("#cancel", Button)
        text = str(dialog.query_one("#confirm-plan-text", Static).render())
        assert "service update --force datatrail-client_worker" in text
        await pilot.press("enter")  # Enter on the focused Cancel: nothing runs
        await pilot.pause()
        assert not isinstance(app.screen, (ConfirmPlan, Progress))
    assert not (tmp_path / "audit.jsonl").exists()


async def test_core_redeploy_needs_the_stack_name_typed(tmp_path):
    plan = Plan("redeploy", "chime", "datatrail", core=True,
                steps=(Step("remove", "remove datatrail at chime", "docker --host x stack rm datatrail"),))
    config = make_config(tmp_path, allow=True)
    app = make_app(config)
    results = []
    async with app.run_test(size=(120, 30)) as pilot:
        app.push_screen(ConfirmPlan(plan), results.append)
        await pilot.pause()
        run = app.screen.query_one("#run", Button)
        assert run.disabled
        app.screen.query_one("#typed", Input).value = "datatrai"
        await pilot.pause()
        assert run.disabled
        app.screen.query_one("#typed", Input).value = "datatrail"
        await pilot.pause()
        assert not run.disabled
        run.press()
        await pilot.pause()
    assert results == [True]


async def test_refused_plan_has_no_run_button(tmp_path):
    plan = Plan("redeploy", "kko", "datatrail-client", refusal="site kko is unreachable")
    app = make_app(make_config(tmp_path, allow=True))
    async with app.run_test(size=(120, 30)) as pilot:
        app.push_screen(ConfirmPlan(plan))
        await pilot.pause()
        assert not app.screen.query("#run")
        assert "REFUSED: site kko is unreachable" in str(app.screen.query_one("#confirm-plan-text", Static).render())


async def wait_finished(screen: Progress, pilot) -> None:
    for _ in range(300):
        if screen.result is not None or not screen.running:
            break
        await pilot.pause(0.02)
    await pilot.pause()


async def test_progress_runs_steps_and_offers_resume_after_a_failure(tmp_path):
    repo = Repo(tmp_path / "git", "datatrail-admin", {"stacks/kko-client.yaml": "services: {a: {image: x}}\n"})
    pushed = repo.push_change("stacks/kko-client.yaml", "services: {b: {image: x}}\n")
    gitrepo.fetch(repo.clone)  # as planning does
    pull = Step(PULL, "fast-forward", f"git -C {repo.clone} merge --ff-only {pushed}",
                argv=("git", "-C", str(repo.clone), "merge", "--ff-only", pushed), repo=str(repo.clone), commit=pushed)
    bad = replace(pull, title="fast-forward to a commit that does not exist", commit="0" * 40)
    config = make_config(tmp_path, allow=True)
    app = make_app(config)
    async with app.run_test(size=(120, 30)) as pilot:
        # The second step fails (no such commit): the plan stops there, the rest stays pending.
        plan = Plan("redeploy", "kko", "datatrail-client", steps=(pull, bad, pull))
        screen = Progress(config, plan, wait_timeout=5)
        app.push_screen(screen)
        await pilot.pause()
        await wait_finished(screen, pilot)
        assert repo.head() == pushed  # the first step really ran
        table = screen.query_one("#steps", DataTable)
        states = [str(table.get_cell(str(i), "state")) for i in range(3)]
        assert states == ["✓ done", "✗ failed", "· pending"]
        assert screen.result.outcome == "failed" and screen.result.failed_index == 1
        resume = screen.query_one("#resume", Button)
        assert not resume.has_class("-hidden") and "step 2" in str(resume.label)
        assert not screen.query_one("#close", Button).disabled
        await pilot.press("escape")
        await pilot.pause()
        assert not isinstance(app.screen, Progress)


async def test_stop_ends_the_run_after_the_current_step_and_offers_resume(tmp_path):
    import threading
    import time
    from http.server import BaseHTTPRequestHandler, HTTPServer

    from dtmon.actions.plan import ANNOUNCE

    class SlowHook(BaseHTTPRequestHandler):
        def do_POST(self) -> None:  # noqa: N802
            self.rfile.read(int(self.headers["Content-Length"]))
            time.sleep(1.0)
            self.send_response(204)
            self.end_headers()

        def log_message(self, *args) -> None:
            pass

    server = HTTPServer(("127.0.0.1", 0), SlowHook)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    url = f"http://127.0.0.1:{server.server_port}/hook"
    announce = Step(ANNOUNCE, "announce", f"POST {url}", "chime", "datatrail", payload="{}", url=url)
    config = make_config(tmp_path, allow=True)
    app = make_app(config)
    try:
        async with app.run_test(size=(120, 30)) as pilot:
            screen = Progress(config, Plan("redeploy", "chime", "datatrail", steps=(announce, announce)))
            app.push_screen(screen)
            for _ in range(250):  # until the first step has started (the hook then takes a second)
                if 0 in screen.states and screen.states[0].status == "running":
                    break
                await pilot.pause(0.02)
            assert screen.running and screen.states[0].status == "running"
            screen.query_one("#stop", Button).press()
            await wait_finished(screen, pilot)
            assert screen.result.outcome == "stopped"
            assert [r.status for r in screen.result.runs] == ["done", "pending"]
            assert "step 2" in str(screen.query_one("#resume", Button).label)
    finally:
        server.shutdown()


async def test_quit_is_refused_from_a_screen_above_a_running_progress(tmp_path):
    from dtmon.screens.help import HelpScreen

    config = make_config(tmp_path, allow=True)
    app = make_app(config)
    async with app.run_test(size=(120, 30)) as pilot:
        screen = Progress(config, Plan("redeploy", "kko", "datatrail-client", steps=()), start=False)
        app.push_screen(screen)
        await pilot.pause()
        screen.running = True
        await pilot.press("question_mark")
        await pilot.pause()
        assert isinstance(app.screen, HelpScreen)
        await pilot.press("ctrl+q", "q")
        await pilot.pause()
        assert app.return_code is None and app.is_running  # still there: the run goes on behind the help
        assert screen in app.screen_stack
        screen.running = False
        await pilot.press("ctrl+q")
        await pilot.pause()
        assert app.return_code == 0  # once the run has ended, quitting works again
