"""The action screens' guards: one dialog at a time, only what is visibly selected, steps first at 80×24,
no quitting or suspending mid-run, Stop that ends a wait, refusals audited, names never read as markup."""

from __future__ import annotations

import threading
import time
from pathlib import Path

import pytest
from buckets_peers import buckets_server  # noqa: F401 - fixture
from textual.widgets import Button, DataTable, Static
from tui_fakes import chime, kko, svc, world

from dtmon.actions.audit import read
from dtmon.actions.plan import WAIT_RUNNING, Plan, Step, plan_redeploy
from dtmon.app import DtmonApp
from dtmon.config import BucketsConfig, Config, DeployConfig, SiteConfig, load
from dtmon.model import SiteStatus, StackStatus
from dtmon.screens import actions as action_screens
from dtmon.screens.actions import ConfirmPlan, Progress, app_class
from dtmon.widgets.buckets import BucketsPane
from dtmon.widgets.table import ServicesTable
from dtmon.widgets.views import Views

KKO_BUCKET = "datatrail-replicator-kko-minoc"


def make_config(tmp_path: Path, buckets_url: str | None = None, stacks: tuple[str, ...] = ("datatrail-client",)) -> Config:
    sites = tuple(
        SiteConfig(name, f"unix:///nonexistent/{name}.sock", {s: tmp_path / f"{name}-{s}.yaml" for s in stacks})
        for name in ("chime", "kko")
    )
    deploy = DeployConfig(allow=True, audit=tmp_path / "audit.jsonl", lock=tmp_path / "actions.lock")
    buckets = BucketsConfig(buckets_url, ("datatrail-*",), {}) if buckets_url else None
    return Config(None, refresh=3600, timeout=2.0, sites=sites, deploy=deploy, buckets=buckets)


def make_app(config: Config, sites: tuple[SiteStatus, ...] | None = None):
    return app_class(DtmonApp, config)(config, collectors=world(*(sites or (chime(), kko()))), tick=60)


async def until(pilot, condition, what: str, timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, f"gave up waiting for {what}"
        await pilot.pause(0.02)


def notices(app) -> list[str]:
    return [n.message for n in app._notifications]


async def select(app, pilot, key: str) -> None:
    table = app.query_one(ServicesTable)
    await until(pilot, lambda: table.row_for(key) is not None, f"the row {key}")
    table.move_cursor(row=table.get_row_index(key))
    await pilot.pause()


@pytest.fixture
def slow_planning(monkeypatch):
    """Planning a redeploy (git fetch of the compose repos) held until the test releases it."""
    release = threading.Event()
    real = action_screens.gather_redeploy_plan

    def held(*args):
        release.wait(30)
        return real(*args)

    monkeypatch.setattr(action_screens, "gather_redeploy_plan", held)
    yield release
    release.set()


@pytest.mark.parametrize("second", ["D", "R"])
async def test_a_key_pressed_while_a_plan_is_gathered_is_ignored_with_a_notice(tmp_path, slow_planning, second):
    app = make_app(make_config(tmp_path))
    async with app.run_test(size=(120, 30)) as pilot:
        await until(pilot, lambda: app.polls >= 2, "the sites")
        await select(app, pilot, "kko/datatrail-client_replicator")
        await pilot.press("D", second)
        await pilot.pause()
        assert app.planning == "redeploy of datatrail-client at kko"
        assert any(f"{second} ignored: a plan is being made (redeploy of datatrail-client at kko)" in n
                   for n in notices(app))
        assert not isinstance(app.screen, ConfirmPlan)
        slow_planning.set()
        await until(pilot, lambda: isinstance(app.screen, ConfirmPlan), "the dialog")
        await pilot.press("D", "R")  # the dialog has the keys now: nothing opens over it
        await pilot.pause(0.3)
        assert sum(isinstance(s, ConfirmPlan) for s in app.screen_stack) == 1
        assert app.screen.plan.action == "redeploy" and app.planning is None


@pytest.mark.parametrize("size", [(80, 24), (160, 48)], ids=["tabs", "stacked"])
async def test_keys_act_only_on_what_is_visibly_selected_and_r_on_a_bucket_offers_its_consumer(
        tmp_path, buckets_server, size):  # noqa: F811
    buckets_server.store.add(KKO_BUCKET, 4)
    config = make_config(tmp_path, buckets_server.url)
    app = make_app(config)
    async with app.run_test(size=size) as pilot:
        pane = app.query_one(BucketsPane)
        await until(pilot, lambda: app.polls >= 2 and pane.polls >= 1 and pane.report and pane.report.buckets,
                    "sites and buckets")
        await select(app, pilot, "chime/datatrail-client_replicator")  # the services cursor, soon hidden
        await pilot.press("2")  # tabs: only the buckets show; stacked: both show and the buckets have the focus
        assert app.query_one(Views).active == 1 and app.focused is pane.table
        assert app.query_one(ServicesTable).display is (size != (80, 24))
        await pilot.press("D")
        await pilot.pause()
        assert not isinstance(app.screen, ConfirmPlan)
        assert any("D redeploys a stack: nothing to redeploy in the buckets view" in n for n in notices(app))
        # R on the bucket row: its consumer at kko, not the hidden chime service, and the notice says which.
        pane.table.move_cursor(row=pane.table.get_row_index(KKO_BUCKET))
        await pilot.press("R")
        await until(pilot, lambda: isinstance(app.screen, ConfirmPlan), "the dialog")
        plan = app.screen.plan
        assert (plan.action, plan.site, plan.target) == ("restart", "kko", "datatrail-client_replicator")
        assert any(f"bucket {KKO_BUCKET}: restart its consumer kko/datatrail-client_replicator" in n
                   for n in notices(app))
        await pilot.press("escape")
        await pilot.pause()
        if app.query("#progress-pane"):
            await pilot.press("3")
            await pilot.press("R", "D")
            await pilot.pause()
            assert not isinstance(app.screen, ConfirmPlan)


async def test_r_and_d_on_the_progress_view_act_on_nothing(tmp_path):
    from dtmon.config import PrometheusConfig

    config = make_config(tmp_path)
    config = Config(None, refresh=3600, timeout=0.5, sites=config.sites, deploy=config.deploy,
                    prometheus=PrometheusConfig("http://127.0.0.1:9"))
    app = make_app(config)
    async with app.run_test(size=(80, 24)) as pilot:
        await until(pilot, lambda: app.polls >= 2, "the sites")
        await select(app, pilot, "chime/datatrail-client_replicator")
        await pilot.press("2")  # the progress view (no buckets configured)
        assert not app.query_one(ServicesTable).display
        await pilot.press("R", "D")
        await pilot.pause()
        assert not isinstance(app.screen, ConfirmPlan)
        assert any("R restarts a service: nothing to restart in the progress view" in n for n in notices(app))
        assert any("D redeploys a stack: nothing to redeploy in the progress view" in n for n in notices(app))


async def test_the_core_confirm_dialog_at_80x24_shows_the_steps_first_and_counts_them(tmp_path):
    from test_plan import clean_repos, make_config as plan_config, make_snapshot

    plan = plan_redeploy(plan_config(announce="http://hooks.example/dt"), make_snapshot(), "chime", "datatrail",
                         clean_repos(admin={"behind": 1, "upstream_head": "a" * 40}), who="alice@ops")
    assert len(plan.steps) >= 15 and plan.notes
    app = make_app(make_config(tmp_path))
    async with app.run_test(size=(80, 24)) as pilot:
        app.push_screen(ConfirmPlan(plan))
        await pilot.pause()
        dialog = app.screen
        count = str(dialog.query_one("#confirm-count", Static).render())
        assert count.startswith(f"{len(plan.steps)} steps, in order") and "notes below" in count
        text = str(dialog.query_one("#confirm-plan-text", Static).render())
        assert text.splitlines()[0].startswith("     1. git -C") and text.index(" 1. git") < text.index("note:")
        # The first steps are on screen, inside the scroll area's visible region.
        body = dialog.query_one("#confirm-body")
        assert body.region.height >= 3 and body.scroll_y == 0


async def test_quit_and_suspend_are_refused_with_a_notice_while_a_run_is_in_progress(tmp_path, monkeypatch):
    suspended = []
    monkeypatch.setattr(DtmonApp, "action_suspend_process", lambda self: suspended.append(True))
    config = make_config(tmp_path)
    app = make_app(config)
    async with app.run_test(size=(120, 30)) as pilot:
        screen = Progress(config, Plan("redeploy", "kko", "datatrail-client", steps=()), start=False)
        app.push_screen(screen)
        await pilot.pause()
        screen.running = True
        await pilot.press("q", "ctrl+z")
        await pilot.pause()
        assert app.is_running and app.return_code is None and suspended == []
        assert any("quit refused: redeploy datatrail-client at kko is running" in n for n in notices(app))
        assert any("suspend (ctrl+z) refused: redeploy datatrail-client at kko is running" in n for n in notices(app))
        assert app.check_action("filter", ()) is False
        screen.running = False
        await pilot.press("ctrl+z")
        await pilot.pause()
        assert suspended == [True]  # once the run has ended, suspending works again
        await pilot.press("q")
        await pilot.pause()
    assert app.return_code == 0


async def test_a_refused_plan_in_the_dashboard_is_audited(tmp_path):
    sites = (chime(), SiteStatus("kko", False, error="connection refused"))
    config = make_config(tmp_path)
    app = make_app(config, sites)
    async with app.run_test(size=(120, 30)) as pilot:
        await until(pilot, lambda: app.polls >= 2, "the sites")
        await select(app, pilot, "chime/datatrail-client_replicator")
        app.sites["chime"] = SiteStatus("chime", False, error="connection refused")  # gone since it was drawn
        await pilot.press("R")
        await until(pilot, lambda: isinstance(app.screen, ConfirmPlan), "the dialog")
        assert not app.screen.plan.ok
    records = read(tmp_path / "audit.jsonl")
    assert [(r["event"], r["outcome"], r["action"], r["target"]) for r in records] == [
        ("outcome", "refused", "restart", "datatrail-client_replicator")]
    assert "chime is unreachable" in records[0]["reason"]


async def test_names_that_look_like_markup_are_shown_as_they_are(tmp_path):
    stack = "[/]"
    odd = SiteStatus("kko", True, polled_at=kko().polled_at, latency_ms=1.0,
                     stacks=(StackStatus(stack, (svc("kko", stack, "[b]worker"),)),))
    config = make_config(tmp_path, stacks=(stack,))
    app = make_app(config, (chime(), odd))
    async with app.run_test(size=(120, 30)) as pilot:
        await until(pilot, lambda: app.polls >= 2, "the sites")
        await select(app, pilot, f"stack:kko/{stack}")
        await pilot.press("D")
        await until(pilot, lambda: isinstance(app.screen, ConfirmPlan), "the dialog")
        assert any(f"planning redeploy of {stack} at kko" in n for n in notices(app))
        assert f"redeploy {stack} at kko" in str(app.screen.query_one("#confirm-title", Static).render())
        await pilot.press("escape")
        await pilot.pause()
        await select(app, pilot, f"kko/{stack}_[b]worker")
        await pilot.press("R")
        await until(pilot, lambda: isinstance(app.screen, ConfirmPlan), "the restart dialog")
        assert f"restart {stack}_[b]worker at kko" in str(app.screen.query_one("#confirm-title", Static).render())
        plan = app.screen.plan
        await pilot.press("escape")
        await pilot.pause()
        progress = Progress(config, plan, start=False)
        app.push_screen(progress)
        await pilot.pause()
        cell = str(progress.query_one("#steps", DataTable).get_cell("0", "step"))
        assert f"service update --force '{stack}_[b]worker'" in cell


async def test_stop_ends_a_wait_step_at_once_and_the_audit_says_where_and_what_is_left(tmp_path):
    from dtmon.demo import Demo

    with Demo(seed=7) as demo:
        config = load(demo.config_path)
        config = Config(config.path, config.refresh, config.timeout, config.sites, deploy=DeployConfig(
            allow=True, audit=tmp_path / "audit.jsonl", lock=tmp_path / "actions.lock"))
        # kko's replicator runs; a service the compose file names was never created: this wait never ends.
        compose = tmp_path / "kko-client.yaml"
        compose.write_text("services:\n  replicator: {image: x}\n  ghost: {image: x}\n")
        wait = Step(WAIT_RUNNING, "wait until datatrail-client runs at kko", "wait until ...", "kko",
                    "datatrail-client", file=str(compose))
        plan = Plan("redeploy", "kko", "datatrail-client", steps=(wait, wait))
        app = make_app(make_config(tmp_path))
        async with app.run_test(size=(120, 30)) as pilot:
            screen = Progress(config, plan, wait_timeout=300)
            app.push_screen(screen)
            await until(pilot, lambda: 0 in screen.states and "0/2 services steady: ghost not created yet, replicator 1/1" in
                        screen.states[0].note, "the wait's progress")
            pressed = time.monotonic()
            screen.query_one("#stop", Button).press()
            await until(pilot, lambda: screen.result is not None, "the run to end", timeout=10)
            assert time.monotonic() - pressed < 3  # at once, not at the 300 s timeout
            result = screen.result
            assert result.outcome == "stopped" and [r.status for r in result.runs] == ["stopped", "pending"]
            outcome = str(screen.query_one("#progress-outcome", Static).render())
            assert "outcome: stopped during step 1 (wait until datatrail-client runs at kko)" in outcome
            assert "Resume from step 1" in str(screen.query_one("#resume", Button).label)
    records = read(tmp_path / "audit.jsonl")
    assert [(r["event"], r.get("status") or r.get("outcome")) for r in records] == [
        ("start", None), ("step", "stopped"), ("outcome", "stopped")]
    last = records[-1]
    assert last["stopped_step"] == 1 and "stopped while waiting for datatrail-client to run" in last["reason"]
    assert last["states"] == {"datatrail-client@kko": "untouched (as it was); then wait until datatrail-client runs at kko was stopped"}


async def test_a_run_refused_by_the_lock_in_the_dashboard_is_audited(tmp_path):
    from dtmon.actions.lock import ActionLock

    config = make_config(tmp_path)
    plan = Plan("redeploy", "kko", "datatrail-client", steps=(Step(WAIT_RUNNING, "wait", "wait", "kko",
                                                                   "datatrail-client", file="x"),))
    holder = ActionLock(tmp_path / "actions.lock").acquire("redeploy datatrail at chime")
    try:
        app = make_app(config)
        async with app.run_test(size=(120, 30)) as pilot:
            screen = Progress(config, plan)
            app.push_screen(screen)
            await until(pilot, lambda: not screen.running and screen.is_mounted, "the refusal")
            await pilot.pause()
            assert "not started:" in str(screen.query_one("#progress-outcome", Static).render())
    finally:
        holder.release()
    (record,) = read(tmp_path / "audit.jsonl")
    assert (record["outcome"], record["action"], record["target"]) == ("refused", "redeploy", "datatrail-client")
    assert "redeploy datatrail at chime" in record["reason"]
