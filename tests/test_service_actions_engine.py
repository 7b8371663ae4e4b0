"""`dtmon scale` and `dtmon rollback` against a real swarm, checked from the engine's own records.

One engine (site chime) and one stack deployed by this module: a replicated `replicator` (its compose file says
1 replica) and a global `agent`. Tests run in file order and each leaves the world running.
"""

from __future__ import annotations

import sys
from dataclasses import dataclass
from pathlib import Path

import pytest
import yaml

sys.path.insert(0, str(Path(__file__).parent))

from engines import DOCKER_CLI, IMAGE, Dockerd, require_engines, service_def, start_all, stop_all, write_config  # noqa: E402

from dtmon.actions.audit import read
from dtmon.cli import main

pytestmark = pytest.mark.engine

STACK = "datatrail-client"
REPLICATOR, AGENT = f"{STACK}_replicator", f"{STACK}_agent"
V2 = "dtmon-test/busybox:v2"
SECRET = "s3cr3t-value-never-shown"


@dataclass
class Ctx:
    dir: Path
    engine: Dockerd
    config: Path
    audit: Path

    def dtmon(self, *args: str) -> int:
        return main(["--config", str(self.config), *args])

    def service(self, name: str) -> dict:
        return next(s for s in self.engine.api("GET", "/services") if s["Spec"]["Name"] == name)

    def running(self, name: str) -> list[dict]:
        return [t for t in self.engine.tasks(name)
                if t["Status"]["State"] == "running" and t["DesiredState"] == "running"]


@pytest.fixture(scope="module")
def ctx(tmp_path_factory):
    require_engines()
    tmp = tmp_path_factory.mktemp("service-actions")
    file = tmp / "client.yaml"
    file.write_text(yaml.safe_dump({
        "version": "3.8",
        "services": {"replicator": service_def(), "agent": service_def(deploy={"mode": "global"})},
        "networks": {"hostnet": {"external": True, "name": "host"}},
    }, sort_keys=False))
    mp = pytest.MonkeyPatch()
    mp.setenv("DTMON_DOCKER", DOCKER_CLI)
    mp.setenv("DOCKER_CONFIG", str(tmp))
    engines = start_all(["chime"])
    try:
        engine = engines["chime"]
        engine.import_image(V2)
        engine.stack_deploy(file, STACK)
        engine.wait_converged({REPLICATOR: (1, 1), AGENT: (1, 1)})
        audit = tmp / "state" / "audit.jsonl"
        deploy = f'\n[deploy]\nallow = false\naudit = "{audit}"\nlock = "{tmp / "state" / "lock"}"\nmonitor = 2\n'
        config = write_config(tmp / "config.toml", [("chime", engine.url, {STACK: file})], extra=deploy)
        yield Ctx(tmp, engine, config, audit)
    finally:
        stop_all(engines.values())
        mp.undo()


def outcomes(ctx: Ctx) -> list[dict]:
    return [r for r in read(ctx.audit) if r.get("event") == "outcome"]


def test_scale_and_rollback_are_refused_in_read_only_mode_with_exit_2(ctx, capsys):
    version = ctx.service(REPLICATOR)["Version"]["Index"]
    assert ctx.dtmon("scale", "chime", REPLICATOR, "3", "--yes") == 2
    assert ctx.dtmon("rollback", "chime", REPLICATOR, "--yes") == 2
    assert "read-only" in capsys.readouterr().err
    assert ctx.service(REPLICATOR)["Version"]["Index"] == version  # nothing was sent


def test_scale_changes_the_replicas_waits_for_them_and_warns_of_the_compose_file(ctx, capsys):
    code = ctx.dtmon("--allow-actions", "scale", "chime", "replicator", "3", "--yes", "--wait-timeout", "60")
    out = capsys.readouterr().out
    assert code == 0, out
    assert ctx.service(REPLICATOR)["Spec"]["Mode"] == {"Replicated": {"Replicas": 3}}
    assert len(ctx.running(REPLICATOR)) == 3  # waited for: all three run when the command returns
    assert "compose file of datatrail-client says 1 replicas: the next redeploy puts it back to 1" in out
    assert "replicas 1 -> 3" in out
    assert "done" in out.splitlines()[-1]
    last = outcomes(ctx)[-1]
    assert (last["action"], last["target"], last["outcome"]) == ("scale", REPLICATOR, "done")


def test_scale_down_converges_too(ctx, capsys):
    assert ctx.dtmon("--allow-actions", "scale", "chime", REPLICATOR, "2", "--yes", "--wait-timeout", "60") == 0
    capsys.readouterr()
    assert ctx.service(REPLICATOR)["Spec"]["Mode"] == {"Replicated": {"Replicas": 2}}
    ctx.engine.wait_until(lambda: len(ctx.running(REPLICATOR)) == 2, 30, "2 replicas")


def test_scale_of_a_global_service_is_refused_and_audited(ctx, capsys):
    version = ctx.service(AGENT)["Version"]["Index"]
    assert ctx.dtmon("--allow-actions", "scale", "chime", AGENT, "2", "--yes") == 1
    out = capsys.readouterr().out
    assert "REFUSED: datatrail-client_agent is a global service: only a replicated service can be scaled" in out
    assert ctx.service(AGENT)["Version"]["Index"] == version
    last = outcomes(ctx)[-1]
    assert (last["action"], last["target"], last["outcome"]) == ("scale", AGENT, "refused")


def test_scale_replicas_are_bounded(ctx, capsys):
    with pytest.raises(SystemExit) as exit:
        ctx.dtmon("--allow-actions", "scale", "chime", REPLICATOR, "1000001", "--yes")
    assert exit.value.code == 2
    assert "expected a whole number of replicas from 0 to 1000000, got '1000001'" in capsys.readouterr().err


def test_rollback_without_a_previous_spec_is_refused_with_a_clear_line(ctx, capsys):
    assert "PreviousSpec" not in ctx.service(AGENT)
    assert ctx.dtmon("--allow-actions", "rollback", "chime", AGENT, "--yes") == 1
    out = capsys.readouterr().out
    assert "REFUSED: datatrail-client_agent at chime has no previous spec to roll back to" in out
    assert outcomes(ctx)[-1]["outcome"] == "refused"


def test_rollback_brings_back_the_previous_image_and_env_and_shows_what_changes_but_no_value(ctx, capsys):
    ctx.engine.docker("service", "update", "--detach", "--image", V2, "--env-add", f"TOKEN={SECRET}",
                      "--replicas", "1", REPLICATOR)
    ctx.engine.wait_until(
        lambda: ctx.service(REPLICATOR).get("UpdateStatus", {}).get("State") == "completed"
        and len(ctx.running(REPLICATOR)) == 1, 60, "the update to v2")
    before = ctx.service(REPLICATOR)
    assert before["Spec"]["TaskTemplate"]["ContainerSpec"]["Image"].startswith(V2)

    code = ctx.dtmon("--allow-actions", "rollback", "chime", REPLICATOR, "--yes", "--wait-timeout", "60")
    out = capsys.readouterr().out
    assert code == 0, out
    assert f"image: {V2} -> {IMAGE}" in out
    assert "replicas: 1 -> 2" in out
    assert "env removed: TOKEN" in out
    assert SECRET not in out
    after = ctx.service(REPLICATOR)
    spec = after["Spec"]["TaskTemplate"]["ContainerSpec"]
    assert spec["Image"].startswith(IMAGE) and not any(e.startswith("TOKEN=") for e in spec.get("Env") or [])
    assert after["Spec"]["Mode"] == {"Replicated": {"Replicas": 2}}
    assert after["UpdateStatus"]["State"] == "rollback_completed"
    running = ctx.running(REPLICATOR)
    assert len(running) == 2 and all(t["Spec"]["ContainerSpec"]["Image"].startswith(IMAGE) for t in running)
    last = outcomes(ctx)[-1]
    assert (last["action"], last["target"], last["outcome"]) == ("rollback", REPLICATOR, "done")
    assert SECRET not in ctx.audit.read_text()


async def test_S_scales_and_U_rolls_back_the_selected_service_in_the_dashboard(ctx):
    import time
    from dataclasses import replace

    from textual.widgets import Button, Input, Static

    from dtmon.app import DtmonApp
    from dtmon.config import load
    from dtmon.screens.actions import ConfirmPlan, Progress, ScaleDialog, app_class
    from dtmon.widgets.table import ServicesTable

    config = load(ctx.config)
    config = replace(config, deploy=replace(config.deploy, allow=True))
    app = app_class(DtmonApp, config)(config)
    key = f"chime/{REPLICATOR}"

    async def until(condition, what: str, timeout: float = 90.0) -> None:
        deadline = time.monotonic() + timeout
        while not condition():
            assert time.monotonic() < deadline, f"gave up waiting for {what}"
            await pilot.pause(0.1)

    async def confirm_and_run() -> Progress:
        await until(lambda: isinstance(app.screen, ConfirmPlan), "the confirm dialog")
        assert app.focused is app.screen.query_one("#cancel", Button)
        assert app.screen.plan.ok, app.screen.plan.refusal
        text = str(app.screen.query_one("#confirm-plan-text", Static).render())
        app.screen.query_one("#run", Button).press()
        await until(lambda: isinstance(app.screen, Progress), "the progress screen")
        progress = app.screen
        await until(lambda: progress.result is not None, "the run to end", timeout=120)
        progress.plan_text = text
        return progress

    async with app.run_test(size=(140, 40)) as pilot:
        table = app.query_one(ServicesTable)
        await until(lambda: table.row_for(key) is not None, "the replicator's row")
        table.move_cursor(row=table.get_row_index(key))
        await pilot.pause()
        await pilot.press("S")
        await until(lambda: isinstance(app.screen, ScaleDialog), "the scale dialog")
        box = app.screen.query_one("#replicas", Input)
        assert box.value == "2"  # what it asks for now
        box.value = ""
        await pilot.press("3", "enter")
        scaled = await confirm_and_run()
        assert scaled.result.outcome == "done", scaled.result.summary()
        assert "the next redeploy puts it back to 1" in scaled.plan_text
        assert ctx.service(REPLICATOR)["Spec"]["Mode"] == {"Replicated": {"Replicas": 3}}
        assert len(ctx.running(REPLICATOR)) == 3
        await pilot.press("escape")
        await until(lambda: not isinstance(app.screen, Progress), "the dashboard")
        await pilot.press("U")  # rolls the scale back: the previous spec had 2 replicas
        rolled = await confirm_and_run()
        assert rolled.result.outcome == "done", rolled.result.summary()
        assert "changes replicas: 3 -> 2" in rolled.plan_text
    assert ctx.service(REPLICATOR)["Spec"]["Mode"] == {"Replicated": {"Replicas": 2}}
    ctx.engine.wait_until(lambda: len(ctx.running(REPLICATOR)) == 2, 30, "2 replicas")
    assert [(o["action"], o["outcome"]) for o in outcomes(ctx)[-2:]] == [("scale", "done"), ("rollback", "done")]


def test_audit_command_shows_the_scales_and_rollbacks(ctx, capsys):
    assert ctx.dtmon("audit") == 0
    out = capsys.readouterr().out
    assert f"scale {REPLICATOR} at chime to 3" in out
    assert f"roll back {REPLICATOR} at chime" in out
    assert f"scale {AGENT} at chime to 2  -> REFUSED" in out
    assert f"roll back {AGENT} at chime  -> REFUSED" in out
