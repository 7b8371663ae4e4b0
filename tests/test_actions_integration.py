"""Restarts and redeploys against real swarms, checked from the engines' own records.

This module starts its own two-site world (chime: datatrail, datatrail-daemons, datatrail-client;
kko: datatrail-client) because redeploys change it; the compose files live in real git clones with a
bare "upstream" repository beside them. Tests run in file order and each leaves the world running.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import threading
import time
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, HTTPServer
from pathlib import Path

import pytest
import yaml

sys.path.insert(0, str(Path(__file__).parent))

from engines import DOCKER_CLI, Dockerd, require_engines, service_def, start_all, stop_all, write_config  # noqa: E402
from gitworld import Repo  # noqa: E402

from dtmon.actions.audit import read
from dtmon.actions.lock import ActionLock, LockHeld, read_holder
from dtmon.cli import main

pytestmark = pytest.mark.engine

SERVER, DAEMONS, CLIENT = "stacks/server-compose.yaml", "stacks/daemon-compose.yaml", "stacks/chime-client.yaml"
KKO = "stacks/kko-client.yaml"


def quick_updates(extra: dict) -> dict:
    """A service whose rolling update watches each new task 1 s instead of swarm's default 5 s (restarts wait it out)."""
    deploy = dict(extra.get("deploy", {}))
    deploy.setdefault("update_config", {"monitor": "1s"})
    return {**extra, "deploy": deploy}


def compose(services: dict[str, dict]) -> str:
    return yaml.safe_dump(
        {
            "version": "3.8",
            "services": {name: service_def(**quick_updates(extra)) for name, extra in services.items()},
            "networks": {"hostnet": {"external": True, "name": "host"}},
        },
        sort_keys=False,
    )


@dataclass
class Ctx:
    dir: Path
    engines: dict[str, Dockerd]
    core: Repo  #: datatrail: server and daemon compose files
    admin: Repo  #: datatrail-admin: the client compose files
    config: Path  #: read-only config (allow = false); tests pass --allow-actions
    audit: Path
    lock: Path

    def dtmon(self, *args: str, config: Path | None = None) -> int:
        return main(["--config", str(config or self.config), *args])


def services(engine: Dockerd, stack: str | None = None) -> dict[str, dict]:
    """Swarm name -> service object, from the engine."""
    found = {s["Spec"]["Name"]: s for s in engine.api("GET", "/services")}
    return {k: v for k, v in found.items() if stack is None or k.startswith(stack + "_")}


def events(engine: Dockerd, since: float, until: float) -> list[tuple[int, str, str, str]]:
    """(timeNano, site, action, service name) of every service event in [since, until], from GET /events."""
    import docker

    client = docker.APIClient(base_url=engine.url, version="auto", timeout=10)
    try:
        found = client.events(since=int(since) - 1, until=int(until) + 1, filters={"type": "service"}, decode=True)
        return [
            (e["timeNano"], engine.name, e["Action"], e["Actor"]["Attributes"].get("name", ""))
            for e in found
            if since <= e["timeNano"] / 1e9 <= until  # same clock: the engines run on this machine
        ]
    finally:
        client.close()


def container_deaths(engine: Dockerd, since: float, until: float, stack: str) -> list[float]:
    """When each container of `stack` stopped in [since, until] (epoch seconds), from GET /events."""
    import docker

    client = docker.APIClient(base_url=engine.url, version="auto", timeout=10)
    try:
        found = client.events(since=int(since) - 1, until=int(until) + 1, decode=True,
                              filters={"type": "container", "event": "die", "label": f"com.docker.stack.namespace={stack}"})
        return [e["timeNano"] / 1e9 for e in found if since <= e["timeNano"] / 1e9 <= until]
    finally:
        client.close()


@pytest.fixture(scope="module")
def ctx(tmp_path_factory, monkeypatch_module):
    require_engines()
    tmp = tmp_path_factory.mktemp("actions")
    core = Repo(tmp / "git", "datatrail", {SERVER: compose({"server": {}}), DAEMONS: compose({"state_updater": {}})})
    admin = Repo(
        tmp / "git",
        "datatrail-admin",
        {CLIENT: compose({"replicator": {}}), KKO: compose({"replicator": {"deploy": {"replicas": 2}}})},
    )
    docker_config = tmp / "docker-cli"
    docker_config.mkdir()
    monkeypatch_module.setenv("DTMON_DOCKER", DOCKER_CLI)
    monkeypatch_module.setenv("DOCKER_CONFIG", str(docker_config))
    engines = start_all(["chime", "kko"])
    try:
        chime, kko = engines["chime"], engines["kko"]
        chime.stack_deploy(core.clone / SERVER, "datatrail")
        chime.stack_deploy(core.clone / DAEMONS, "datatrail-daemons")
        chime.stack_deploy(admin.clone / CLIENT, "datatrail-client")
        kko.stack_deploy(admin.clone / KKO, "datatrail-client")
        chime.wait_converged({"datatrail_server": (1, 1), "datatrail-daemons_state_updater": (1, 1),
                              "datatrail-client_replicator": (1, 1)})
        kko.wait_converged({"datatrail-client_replicator": (2, 2)})
        audit, lock = tmp / "state" / "audit.jsonl", tmp / "state" / "actions.lock"
        # A short stability period keeps this module quick; the crash-loop test uses the default.
        deploy = f'\n[deploy]\nallow = false\naudit = "{audit}"\nlock = "{lock}"\nmonitor = 3\n'
        config = write_config(
            tmp / "config.toml",
            [
                ("chime", chime.url, {"datatrail": core.clone / SERVER, "datatrail-daemons": core.clone / DAEMONS,
                                      "datatrail-client": admin.clone / CLIENT}),
                ("kko", kko.url, {"datatrail-client": admin.clone / KKO}),
            ],
            extra=deploy,
        )
        yield Ctx(tmp, engines, core, admin, config, audit, lock)
    finally:
        stop_all(engines.values())


@pytest.fixture(scope="module")
def monkeypatch_module():
    mp = pytest.MonkeyPatch()
    yield mp
    mp.undo()


def outcomes(ctx: Ctx) -> list[dict]:
    return [r for r in read(ctx.audit) if r.get("event") == "outcome"]


def test_read_only_cli_refuses_with_exit_2(ctx, capsys):
    before = {k: v["ID"] for k, v in services(ctx.engines["kko"]).items()}
    assert ctx.dtmon("redeploy", "kko", "datatrail-client", "--yes") == 2
    assert ctx.dtmon("restart", "kko", "datatrail-client_replicator", "--yes") == 2
    assert "read-only" in capsys.readouterr().err
    assert {k: v["ID"] for k, v in services(ctx.engines["kko"]).items()} == before
    # Looking at a plan is not acting: allowed read-only.
    assert ctx.dtmon("plan", "kko", "datatrail-client") == 0
    assert "stack rm datatrail-client" in capsys.readouterr().out


@pytest.mark.slow
def test_restart_replaces_every_task(ctx, capsys):
    kko = ctx.engines["kko"]
    service = services(kko)["datatrail-client_replicator"]
    force_before = service["Spec"]["TaskTemplate"].get("ForceUpdate", 0)
    old_tasks = {t["ID"] for t in kko.tasks("datatrail-client_replicator") if t["Status"]["State"] == "running"}
    assert len(old_tasks) == 2

    code = ctx.dtmon("--allow-actions", "restart", "kko", "datatrail-client_replicator", "--yes", "--wait-timeout", "60")
    out = capsys.readouterr().out
    assert code == 0, out

    after = services(kko)["datatrail-client_replicator"]
    assert after["ID"] == service["ID"]  # the same service, updated in place
    assert after["Spec"]["TaskTemplate"]["ForceUpdate"] == force_before + 1
    # Nothing else of the spec changed: networks, labels, mode, update and endpoint settings all kept.
    expected = json.loads(json.dumps(service["Spec"]))
    expected["TaskTemplate"]["ForceUpdate"] = force_before + 1
    assert after["Spec"] == expected
    assert after["Spec"]["TaskTemplate"]["Networks"]
    assert after["UpdateStatus"]["State"] == "completed"
    running = {t["ID"] for t in kko.tasks("datatrail-client_replicator") if t["Status"]["State"] == "running"}
    assert len(running) == 2 and not running & old_tasks
    assert outcomes(ctx)[-1]["outcome"] == "done" and outcomes(ctx)[-1]["target"] == "datatrail-client_replicator"


@pytest.mark.slow
def test_client_redeploy_behind_upstream_pulls_and_leaves_chime_untouched(ctx, capsys):
    chime, kko = ctx.engines["chime"], ctx.engines["kko"]
    pushed = ctx.admin.push_change(KKO, compose({"replicator": {}, "deletion_healer": {}}), "kko: add deletion_healer")
    chime_before = {k: (v["ID"], v["CreatedAt"], v["UpdatedAt"], v["Version"]["Index"]) for k, v in services(chime).items()}
    kko_before = {k: v["ID"] for k, v in services(kko).items()}

    assert ctx.dtmon("plan", "kko", "datatrail-client") == 0
    plan_text = capsys.readouterr().out
    assert f"merge --ff-only {pushed}" in plan_text and "fast-forward pull" in plan_text
    assert f"datatrail-client at kko: {pushed[:12]}" in plan_text

    code = ctx.dtmon("--allow-actions", "redeploy", "kko", "datatrail-client", "--yes", "--wait-timeout", "60")
    out = capsys.readouterr().out
    assert code == 0, out
    assert ctx.admin.head() == pushed
    kko_after = services(kko)
    assert set(kko_after) == {"datatrail-client_replicator", "datatrail-client_deletion_healer"}
    assert kko_after["datatrail-client_replicator"]["ID"] != kko_before["datatrail-client_replicator"]  # removed, recreated
    assert kko.service_ls()["datatrail-client_deletion_healer"] == (1, 1)
    chime_after = {k: (v["ID"], v["CreatedAt"], v["UpdatedAt"], v["Version"]["Index"]) for k, v in services(chime).items()}
    assert chime_after == chime_before
    last = outcomes(ctx)[-1]
    assert last["outcome"] == "done"
    start = [r for r in read(ctx.audit) if r.get("event") == "start"][-1]
    assert start["commits"] == {"datatrail-client@kko": pushed}
    assert start["plan"][0].startswith(f"git -C {ctx.admin.clone} merge --ff-only {pushed}")


def test_dirty_or_diverged_repo_refuses(ctx, capsys):
    kko = ctx.engines["kko"]
    before = {k: v["ID"] for k, v in services(kko).items()}
    original = (ctx.admin.clone / KKO).read_text()
    (ctx.admin.clone / KKO).write_text(original + "# local edit\n")
    try:
        assert ctx.dtmon("--allow-actions", "redeploy", "kko", "datatrail-client", "--yes") == 1
        assert "uncommitted changes" in capsys.readouterr().out
    finally:
        (ctx.admin.clone / KKO).write_text(original)

    ctx.admin.push_change(CLIENT, compose({"replicator": {}, "extra": {}}), "upstream change")
    ctx.admin.local_commit(KKO, original + "# local commit\n")
    try:
        assert ctx.dtmon("plan", "kko", "datatrail-client") == 1
        assert "diverged" in capsys.readouterr().out
        assert ctx.dtmon("--allow-actions", "redeploy", "kko", "datatrail-client", "--yes") == 1
    finally:
        ctx.admin.reset_to_upstream()
    assert {k: v["ID"] for k, v in services(kko).items()} == before
    assert outcomes(ctx)[-1]["outcome"] == "refused" and "diverged" in outcomes(ctx)[-1]["reason"]
    ctx.admin.push_change(CLIENT, compose({"replicator": {}}), "back to one service")
    ctx.admin.reset_to_upstream()


@pytest.mark.slow
def test_failed_step_stops_the_plan_and_resume_finishes_it(ctx, capsys):
    kko = ctx.engines["kko"]
    # The engine (not the CLI) rejects a placement constraint without an operator.
    bad = ctx.admin.push_change(
        KKO, compose({"replicator": {"deploy": {"placement": {"constraints": ["bogus"]}}}}), "broken constraint"
    )
    code = ctx.dtmon("--allow-actions", "redeploy", "kko", "datatrail-client", "--yes", "--wait-timeout", "60")
    out = capsys.readouterr().out
    assert code == 1, out
    assert ctx.admin.head() == bad
    assert "FAILED" in out and "resume with: dtmon redeploy kko datatrail-client --resume" in out
    assert "datatrail-client@kko: removed; then deploy datatrail-client at kko failed" in out
    assert services(kko, "datatrail-client") == {}  # stopped after the failed step: nothing deployed
    failed = outcomes(ctx)[-1]
    assert failed["outcome"] == "failed" and failed["resume_key"][:3] == ["deploy", "kko", "datatrail-client"]
    steps = [r for r in read(ctx.audit) if r.get("event") == "step" and r["id"] == failed["id"]]
    assert [s["status"] for s in steps] == ["done", "done", "done", "failed"]  # pull, rm, wait-gone, deploy

    fixed = ctx.admin.push_change(KKO, compose({"replicator": {"deploy": {"replicas": 2}}}), "fix constraint")
    code = ctx.dtmon("--allow-actions", "redeploy", "kko", "datatrail-client", "--resume", "--yes",
                     "--wait-timeout", "60")
    out = capsys.readouterr().out
    assert code == 0, out
    assert ctx.admin.head() == fixed
    assert kko.service_ls() == {"datatrail-client_replicator": (2, 2)}
    start = [r for r in read(ctx.audit) if r.get("event") == "start"][-1]
    assert start["resumed_from"] is not None
    assert not any("stack rm" in command for command in start["plan"])  # resumed: no second removal
    assert [c.split()[0] for c in start["plan"]] == ["git", "docker", "wait"]
    assert outcomes(ctx)[-1]["outcome"] == "done"

    # Fail again, fix, and run the same redeploy from the start (no --resume): it converges, even though
    # its first step removes a stack that is no longer there.
    ctx.admin.push_change(KKO, compose({"replicator": {"deploy": {"placement": {"constraints": ["bogus"]}}}}), "again")
    assert ctx.dtmon("--allow-actions", "redeploy", "kko", "datatrail-client", "--yes", "--wait-timeout", "60") == 1
    assert services(kko, "datatrail-client") == {}
    ctx.admin.push_change(KKO, compose({"replicator": {"deploy": {"replicas": 2}}}), "fix again")
    code = ctx.dtmon("--allow-actions", "redeploy", "kko", "datatrail-client", "--yes", "--wait-timeout", "60")
    out = capsys.readouterr().out
    assert code == 0, out
    assert kko.service_ls() == {"datatrail-client_replicator": (2, 2)}


def test_lock_held_by_another_process_refuses_and_names_it(ctx, capsys):
    code = (
        "import sys, time\nfrom dtmon.actions.lock import ActionLock\n"
        "ActionLock(sys.argv[1]).acquire('redeploy datatrail at chime')\nprint('held', flush=True)\ntime.sleep(60)\n"
    )
    holder = subprocess.Popen([sys.executable, "-c", code, str(ctx.lock)], stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout.readline().strip() == "held"
        before = {k: v["ID"] for k, v in services(ctx.engines["kko"]).items()}
        assert ctx.dtmon("--allow-actions", "restart", "kko", "datatrail-client_replicator", "--yes") == 1
        err = capsys.readouterr().err
        assert f"pid {holder.pid}" in err and "redeploy datatrail at chime" in err and "since" in err
        assert {k: v["ID"] for k, v in services(ctx.engines["kko"]).items()} == before
        assert outcomes(ctx)[-1]["outcome"] == "refused"
    finally:
        holder.kill()
        holder.wait()


def test_core_redeploy_refused_when_a_dependent_site_is_unreachable(ctx, capsys):
    text = ctx.config.read_text().replace(ctx.engines["kko"].url, f"unix://{ctx.dir}/nobody.sock")
    dead = ctx.dir / "dead-kko.toml"
    dead.write_text(text)
    assert ctx.dtmon("--allow-actions", "redeploy", "chime", "datatrail", "--yes", config=dead) == 1
    out = capsys.readouterr().out
    assert "REFUSED" in out and "kko is unreachable" in out and "datatrail-client" in out


class _Hook(BaseHTTPRequestHandler):
    received: list[tuple[float, dict]] = []

    def do_POST(self) -> None:  # noqa: N802
        body = self.rfile.read(int(self.headers["Content-Length"]))
        _Hook.received.append((time.time(), json.loads(body)))
        self.send_response(204)
        self.end_headers()

    def log_message(self, *args) -> None:
        pass


@pytest.mark.slow
def test_core_redeploy_keeps_the_order_of_the_operations_page(ctx, capsys):
    chime, kko = ctx.engines["chime"], ctx.engines["kko"]
    server = HTTPServer(("127.0.0.1", 0), _Hook)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    hooked = ctx.dir / "announce.toml"
    hooked.write_text(
        ctx.config.read_text().replace("allow = false", f'allow = true\nannounce = "http://127.0.0.1:{server.server_port}/hook"')
    )
    env = dict(os.environ)
    since = time.time()
    proc = subprocess.Popen(
        [sys.executable, "-m", "dtmon", "--config", str(hooked), "redeploy", "chime", "datatrail", "--yes",
         "--wait-timeout", "60"],
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=env,
    )
    try:
        # While it runs, the lock names it to any other process. Poll the holder record (written once the
        # child holds the flock) rather than the lock itself: taking it, even briefly, could refuse the child.
        deadline = time.monotonic() + 30
        held = None
        while time.monotonic() < deadline and proc.poll() is None:
            held = read_holder(ctx.lock)
            if held is not None and held.pid == proc.pid:
                break
            time.sleep(0.05)
        assert held is not None and held.pid == proc.pid and "redeploy datatrail at chime" in held.what
        with pytest.raises(LockHeld) as refused:
            ActionLock(ctx.lock).acquire("probe")
        assert refused.value.holder == held
        out, _ = proc.communicate(timeout=240)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        server.shutdown()
    until = time.time()
    assert proc.returncode == 0, out

    records = sorted(events(chime, since, until) + events(kko, since, until))
    removes = [(t, site, name) for t, site, action, name in records if action == "remove"]
    creates = [(t, site, name) for t, site, action, name in records if action == "create"]
    removed = {(site, name) for _, site, name in removes}
    assert removed == {("chime", "datatrail_server"), ("chime", "datatrail-daemons_state_updater"),
                       ("chime", "datatrail-client_replicator"), ("kko", "datatrail-client_replicator")}
    core_removed = next(t for t, _, name in removes if name == "datatrail_server")
    assert all(t < core_removed for t, _, name in removes if name != "datatrail_server")
    daemons_removed = next(t for t, _, name in removes if name.startswith("datatrail-daemons_"))
    assert all(t < daemons_removed for t, _, name in removes if name.startswith("datatrail-client_"))  # reverse order
    # One stack at a time: the client's containers had stopped at every site before the daemons were removed.
    client_deaths = container_deaths(chime, since, until, "datatrail-client") + container_deaths(kko, since, until,
                                                                                                  "datatrail-client")
    assert len(client_deaths) >= 3  # chime's replica and kko's two
    assert max(client_deaths) < daemons_removed / 1e9
    assert all(core_removed < t for t, _, _ in creates)
    created = [(site, name) for _, site, name in creates]
    assert created == [("chime", "datatrail_server"), ("chime", "datatrail-daemons_state_updater"),
                       ("chime", "datatrail-client_replicator"), ("kko", "datatrail-client_replicator")]

    # Each deploy waited until the previous stack ran: the core task was running before daemons were created.
    def running_since(engine: Dockerd, service: str) -> float:
        task = next(t for t in engine.tasks(service) if t["Status"]["State"] == "running")
        from dtmon.collectors.swarm import parse_time

        return parse_time(task["Status"]["Timestamp"]).timestamp()

    daemons_created = next(t for t, _, name in creates if name.startswith("datatrail-daemons_")) / 1e9
    clients_created = min(t for t, _, name in creates if name.startswith("datatrail-client_")) / 1e9
    assert running_since(chime, "datatrail_server") < daemons_created
    assert running_since(chime, "datatrail-daemons_state_updater") < clients_created

    # The announcement went out first, naming who and every stack going down.
    assert len(_Hook.received) == 1
    posted_at, payload = _Hook.received[0]
    assert posted_at < min(t for t, _, _ in removes) / 1e9
    assert payload["site"] == "chime" and "@" in payload["who"]
    assert {"site": "kko", "stack": "datatrail-client"} in payload["stacks"]

    assert kko.service_ls() == {"datatrail-client_replicator": (2, 2)}
    assert chime.service_ls() == {"datatrail_server": (1, 1), "datatrail-daemons_state_updater": (1, 1),
                                  "datatrail-client_replicator": (1, 1)}
    assert outcomes(ctx)[-1]["outcome"] == "done"


def test_audit_command_shows_every_action_with_its_outcome(ctx, capsys):
    assert ctx.dtmon("audit") == 0
    text = capsys.readouterr().out
    assert "restart datatrail-client_replicator at kko  -> DONE" in text
    assert "redeploy datatrail-client at kko  -> FAILED" in text
    assert "redeploy datatrail-client at kko (resumed)  -> DONE" in text
    assert "redeploy datatrail at chime (core: every datatrail stack goes down)  -> DONE" in text
    assert "-> REFUSED" in text


@pytest.mark.slow
async def test_one_key_restarts_a_service_and_one_key_redeploys_a_stack_in_the_dashboard(ctx):
    from dataclasses import replace as dc_replace

    from textual.widgets import Button

    from dtmon.app import DtmonApp
    from dtmon.config import load
    from dtmon.screens.actions import ConfirmPlan, Progress, app_class
    from dtmon.widgets.table import ServicesTable

    chime, kko = ctx.engines["chime"], ctx.engines["kko"]
    config = load(ctx.config)
    config = dc_replace(config, deploy=dc_replace(config.deploy, allow=True))
    app = app_class(DtmonApp, config)(config)
    force_before = services(kko)["datatrail-client_replicator"]["Spec"]["TaskTemplate"].get("ForceUpdate", 0)
    chime_before = {k: (v["ID"], v["Version"]["Index"]) for k, v in services(chime).items()}

    async def until(condition, what: str, timeout: float = 90.0) -> None:
        deadline = time.monotonic() + timeout
        while not condition():
            assert time.monotonic() < deadline, f"gave up waiting for {what}"
            await pilot.pause(0.1)

    async def run_selected(key: str, press: str) -> Progress:
        table = app.query_one(ServicesTable)
        await until(lambda: table.row_for(key) is not None, f"row {key}")
        table.move_cursor(row=table.get_row_index(key))
        await pilot.pause()
        await pilot.press(press)
        await until(lambda: isinstance(app.screen, ConfirmPlan), "the confirm dialog")
        # Focus lands once the dialog is mounted: wait for it (a loaded machine takes a moment), never elsewhere.
        await until(lambda: app.focused is not None, "the dialog to take the focus")
        assert app.focused is app.screen.query_one("#cancel", Button)
        assert app.screen.plan.ok, app.screen.plan.refusal
        app.screen.query_one("#run", Button).press()
        await until(lambda: isinstance(app.screen, Progress), "the progress screen")
        progress = app.screen
        await until(lambda: progress.result is not None, "the run to end", timeout=120)
        return progress

    async with app.run_test(size=(140, 40)) as pilot:
        old_tasks = {t["ID"] for t in kko.tasks("datatrail-client_replicator") if t["Status"]["State"] == "running"}
        restart = await run_selected("kko/datatrail-client_replicator", "R")
        assert restart.result.outcome == "done", restart.result.summary()
        restarted = services(kko)["datatrail-client_replicator"]
        assert restarted["Spec"]["TaskTemplate"]["ForceUpdate"] == force_before + 1
        new_tasks = {t["ID"] for t in kko.tasks("datatrail-client_replicator") if t["Status"]["State"] == "running"}
        assert len(new_tasks) == 2 and not new_tasks & old_tasks
        await pilot.press("escape")
        redeploy = await run_selected("stack:kko/datatrail-client", "D")
        assert redeploy.result.outcome == "done", redeploy.result.summary()
        assert [r.status for r in redeploy.result.runs] == ["done"] * 4

    assert services(kko)["datatrail-client_replicator"]["ID"] != restarted["ID"]  # removed and deployed anew
    assert kko.service_ls() == {"datatrail-client_replicator": (2, 2)}
    assert {k: (v["ID"], v["Version"]["Index"]) for k, v in services(chime).items()} == chime_before
    titles = [o.get("target") for o in outcomes(ctx)[-2:]]
    assert titles == ["datatrail-client_replicator", "datatrail-client"]


def test_restart_is_refused_while_the_service_is_updating(ctx):
    import docker

    from dtmon.actions import restart

    kko = ctx.engines["kko"]
    client = docker.APIClient(base_url=kko.url, version="auto", timeout=30)
    # Not in a watched stack: a slow-rolling service of its own (one task at a time, 30 s apart).
    spec = docker.types.TaskTemplate(
        container_spec=docker.types.ContainerSpec("dtmon-test/busybox:latest", ["sleep", "86400"],
                                                  stop_grace_period=1_000_000_000),
        networks=[{"Target": "host"}],
    )
    created = client.create_service(
        spec, name="slow-rolling", mode=docker.types.ServiceMode("replicated", replicas=2),
        update_config=docker.types.UpdateConfig(parallelism=1, delay=30_000_000_000),
    )
    try:
        kko.wait_converged({"slow-rolling": (2, 2)})
        first = restart.force_update(client, created["ID"], "slow-rolling")
        assert first == 1

        def updating() -> bool:
            return (client.inspect_service(created["ID"]).get("UpdateStatus") or {}).get("State") == "updating"

        kko.wait_until(updating, 20, "the update to start")
        with pytest.raises(restart.RestartError, match="already updating"):
            restart.force_update(client, created["ID"], "slow-rolling")
        spec_now = client.inspect_service(created["ID"])["Spec"]["TaskTemplate"]
        assert spec_now["ForceUpdate"] == 1  # the refused restart changed nothing
        with pytest.raises(restart.RestartError, match="now named"):
            restart.force_update(client, created["ID"], "another-name")
    finally:
        client.remove_service(created["ID"])
        client.close()


def test_restart_keeps_networks_given_in_the_deprecated_top_level_field(ctx):
    import docker

    from dtmon.actions import restart

    kko = ctx.engines["kko"]
    created = kko.api("POST", "/services/create", {
        "Name": "legacy-networks",
        "TaskTemplate": {"ContainerSpec": {"Image": "dtmon-test/busybox:latest", "Command": ["sleep", "86400"],
                                           "StopGracePeriod": 1_000_000_000}},
        "Mode": {"Replicated": {"Replicas": 1}},
        "Networks": [{"Target": "host"}],  # where clients before API 1.25 put them
    })
    client = docker.APIClient(base_url=kko.url, version="auto", timeout=30)
    try:
        kko.wait_converged({"legacy-networks": (1, 1)})
        before = client.inspect_service(created["ID"])["Spec"]
        assert before.get("Networks") and not before["TaskTemplate"].get("Networks")
        assert restart.force_update(client, created["ID"], "legacy-networks") == 1
        after = client.inspect_service(created["ID"])["Spec"]
        kept = after["TaskTemplate"].get("Networks") or after.get("Networks")
        assert kept == before["Networks"]
        assert after["TaskTemplate"]["ForceUpdate"] == 1
    finally:
        client.remove_service(created["ID"])
        client.close()


def test_a_redeploy_whose_service_keeps_crashing_fails_within_a_minute_and_a_healthy_one_stays_up(ctx, capsys):
    kko = ctx.engines["kko"]
    default = ctx.dir / "default-monitor.toml"  # [deploy] monitor left at its default (15 s)
    default.write_text(ctx.config.read_text().replace("monitor = 3\n", ""))
    crashing = {"replicator": {"command": ["sh", "-c", "sleep 3; exit 1"], "deploy": {"replicas": 2}}}
    ctx.admin.push_change(KKO, compose(crashing), "a replicator that exits every 3 s")
    started = time.monotonic()
    code = ctx.dtmon("--allow-actions", "redeploy", "kko", "datatrail-client", "--yes", "--wait-timeout", "300",
                     config=default)
    took = time.monotonic() - started
    out = capsys.readouterr().out
    assert code == 1, out
    assert took < 75, f"took {took:.0f}s: the wait should end at the third failure, not at the timeout"
    # Progress named the service's running/desired while it waited, then the failure named service, error, count.
    assert "replicator 0/2" in out or "replicator 1/2" in out, out
    failures = re.search(r"datatrail-client_replicator keeps failing: (\d+) tasks of the new spec failed", out)
    assert failures and int(failures.group(1)) >= 3, out  # both replicas may fail in one sample: 3 or 4
    assert "last error: task: non-zero exit (1)" in out
    assert "redeploy datatrail-client at kko: failed" in out and "resume with" in out
    failed = outcomes(ctx)[-1]
    assert failed["outcome"] == "failed" and "datatrail-client_replicator keeps failing" in failed["reason"]
    assert failed["states"]["datatrail-client@kko"].endswith("then wait until datatrail-client runs at kko failed")
    steps = [r for r in read(ctx.audit) if r.get("event") == "step" and r["id"] == failed["id"]]
    assert [s["status"] for s in steps][-1] == "failed" and "non-zero exit (1)" in steps[-1]["error"]
    assert ctx.dtmon("audit", "--last", "1") == 0
    assert "redeploy datatrail-client at kko  -> FAILED" in capsys.readouterr().out

    # Healthy again: the same redeploy converges, and only after every replica ran 15 s with no failure.
    ctx.admin.push_change(KKO, compose({"replicator": {"deploy": {"replicas": 2}}}), "a replicator that stays up")
    code = ctx.dtmon("--allow-actions", "redeploy", "kko", "datatrail-client", "--yes", "--wait-timeout", "120",
                     config=default)
    out = capsys.readouterr().out
    assert code == 0, out
    assert "watching 15s for failures: replicator 2/2" in out
    done = outcomes(ctx)[-1]
    assert done["outcome"] == "done"
    waited = [r for r in read(ctx.audit) if r.get("event") == "step" and r["id"] == done["id"]][-1]
    assert waited["kind"] == "wait-running" and waited["duration_s"] >= 15
    assert kko.service_ls() == {"datatrail-client_replicator": (2, 2)}


def test_a_restart_of_a_service_that_keeps_crashing_fails_early_and_says_why(ctx):
    import docker

    from dtmon.actions.execute import Executor
    from dtmon.actions.plan import RESTART, WAIT_CONVERGED, Plan, Step
    from dtmon.config import load

    kko = ctx.engines["kko"]
    client = docker.APIClient(base_url=kko.url, version="auto", timeout=30)
    spec = docker.types.TaskTemplate(
        container_spec=docker.types.ContainerSpec("dtmon-test/busybox:latest", ["sh", "-c", "sleep 3; exit 1"],
                                                  stop_grace_period=1_000_000_000),
        networks=[{"Target": "host"}],
    )
    created = client.create_service(spec, name="crashing", mode=docker.types.ServiceMode("replicated", replicas=1))
    try:
        config = load(ctx.config)
        steps = (Step(RESTART, "restart crashing at kko", "restart", "kko", None, service="crashing",
                      service_id=created["ID"]),
                 Step(WAIT_CONVERGED, "wait until crashing has converged at kko", "wait", "kko", None,
                      service="crashing", service_id=created["ID"]))
        started = time.monotonic()
        result = Executor(config, Plan("restart", "kko", "crashing", steps=steps), wait_timeout=300).run()
        took = time.monotonic() - started
        assert result.outcome == "failed" and result.failed_index == 1, result.summary()
        error = result.runs[1].error
        # Either rule ends it, whichever comes first: the engine pauses the update, or 3 new tasks failed.
        assert ("crashing keeps failing" in error and "non-zero exit (1)" in error) or "crashing: update paused" in error
        assert took < 60, f"{took:.0f}s: {error}"
    finally:
        client.remove_service(created["ID"])
        client.close()
