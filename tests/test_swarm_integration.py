"""dtmon against real engines: `dtmon status` and the swarm collector compared with what docker reports."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest
from budget import beyond_startup

from dtmon.collectors.swarm import SwarmCollector
from dtmon.config import load

pytestmark = pytest.mark.engine

REPO = Path(__file__).resolve().parent.parent


def dtmon(*args: str, config: Path, timeout: float = 60) -> tuple[subprocess.CompletedProcess[str], float]:
    """Run `python -m dtmon --config CONFIG ARGS` as a user would; returns the process and its wall time."""
    env = {k: v for k, v in os.environ.items() if k not in ("DTMON_CONFIG", "DOCKER_HOST")}
    started = time.monotonic()
    proc = subprocess.run(
        [sys.executable, "-m", "dtmon", "--config", str(config), *args],
        capture_output=True, text=True, env=env, cwd=REPO, timeout=timeout,
    )
    return proc, time.monotonic() - started


def status_json(config: Path) -> tuple[dict, subprocess.CompletedProcess[str], float]:
    proc, elapsed = dtmon("status", "--json", config=config)
    assert proc.stderr == "" or "Traceback" not in proc.stderr, proc.stderr
    return json.loads(proc.stdout), proc, elapsed


def services(site: dict) -> dict[str, dict]:
    return {s["name"]: s for stack in site["stacks"] for s in stack["services"]}


def deployed_replicas(site: dict) -> dict[str, tuple[int, int]]:
    """(running, desired) of every deployed service dtmon reported for a site."""
    return {name: (s["running"], s["desired"]) for name, s in services(site).items() if s["state"] != "missing"}


def site_of(report: dict, name: str) -> dict:
    (site,) = [s for s in report["sites"] if s["name"] == name]
    return site


def observe(world, config: Path, site_names: list[str], *args: str,
            settled=lambda readings: True) -> tuple[subprocess.CompletedProcess[str], dict]:
    """dtmon's output, taken between two identical `docker service ls` readings of every named site.

    The failing service flickers through `running` for a few milliseconds per restart, so dtmon's
    answer is only comparable when the engine said the same thing before and after dtmon looked
    (and, with `settled`, said what the test is about). Returns dtmon's process and that reading.
    """
    for _ in range(20):
        before = {n: world.engines[n].service_ls() for n in site_names}
        proc, _ = dtmon(*args, config=config)
        after = {n: world.engines[n].service_ls() for n in site_names}
        if before == after and settled(before):
            return proc, before
    pytest.fail("docker service ls never gave the same answer twice around a dtmon poll")


def stable_compare(world, config: Path, site_names: list[str], settled=lambda readings: True) -> dict:
    """dtmon's JSON report, checked to give every deployed service's replicas exactly as the engines do."""
    proc, readings = observe(world, config, site_names, "status", "--json", settled=settled)
    report = json.loads(proc.stdout)
    for name in site_names:
        assert deployed_replicas(site_of(report, name)) == readings[name], name
    return report


def failing_is_down(world):
    """`settled` for readings taken while the failing service is between two of its short-lived tasks."""
    site, service = world.failing

    def failures() -> int:
        # A crash loop is 3 failed tasks ([health] crashloop_failures); on a fresh world under load the engine
        # may not have failed 3 yet, and then dtmon rightly says down, not crashloop: wait for the engine's 3.
        states = world.engines[site].docker("service", "ps", service, "--format", "{{.CurrentState}}").stdout.split("\n")
        return sum(1 for state in states if state.startswith(("Failed", "Rejected")))

    return lambda readings: readings[site].get(service) == (0, 1) and failures() >= 3


def test_status_json_reports_replicas_exactly_as_docker_service_ls(world):
    report = stable_compare(world, world.config, ["chime", "kko"])
    assert [s["name"] for s in report["sites"]] == ["chime", "kko"]
    for site in report["sites"]:
        assert site["reachable"] is True and site["error"] is None
        assert site["latency_ms"] > 0
        assert [st["name"] for st in site["stacks"]] == list(world.compose[site["name"]])


def test_every_compose_service_is_reported_with_image_and_mode(world):
    report, _, _ = status_json(world.config)
    for site in report["sites"]:
        reported = services(site)
        for stack, compose in world.compose[site["name"]].items():
            from dtmon.config import parse_compose

            for short in parse_compose(compose):
                row = reported[f"{stack}_{short}"]
                assert (row["stack"], row["service"]) == (stack, short)
                if row["state"] != "missing":
                    assert row["image"] == "dtmon-test/busybox:latest"
                    assert row["mode"] == "replicated"


def test_failing_degraded_and_missing_services_are_problems(world):
    proc, _ = observe(world, world.config, ["chime", "kko"], "status", "--json", settled=failing_is_down(world))
    report = json.loads(proc.stdout)
    assert proc.returncode == 1
    chime = services(site_of(report, "chime"))

    failing = chime[world.failing[1]]
    assert failing["state"] == "crashloop"  # between two of its tasks: not merely down
    assert (failing["running"], failing["desired"]) == (0, 1)
    assert failing["error"] == "task: non-zero exit (1)"
    assert failing["error_at"] is not None
    assert failing["failed_recent"] >= 3 and failing["looping_since"] is not None

    degraded = chime[world.degraded[1]]
    assert degraded["state"] == "degraded"
    assert (degraded["running"], degraded["desired"]) == (1, 2)

    missing = chime[world.missing[1]]
    assert missing["state"] == "missing"
    assert (missing["running"], missing["desired"]) == (0, 1)
    assert missing["image"] is None

    problems = report["problems"]
    assert any(p.startswith(f"chime {world.failing[1]}: crashloop 0/1: ") and p.endswith(": task: non-zero exit (1)")
               for p in problems), problems
    assert any(p.startswith(f"chime {world.degraded[1]}: degraded 1/2") for p in problems), problems
    assert any(p.startswith(f"chime {world.missing[1]}: missing") for p in problems), problems
    # Exactly those three are problems, beside the slow loop (a problem once it has failed 3 times; see
    # test_crash_loops_and_a_stopped_consumer_are_problems_at_every_poll): everything else runs.
    slow = [p for p in problems if p.startswith(f"chime {world.slow_loop[1]}:")]
    assert len(problems) - len(slow) == 3, problems
    built = (world.failing[1], world.degraded[1], world.missing[1], world.slow_loop[1])
    others = [s for name, s in chime.items() if name not in built]
    assert others and all(s["state"] == "running" for s in others)
    kko = services(site_of(report, "kko"))
    assert kko.pop(world.stopped[1])["state"] == "stopped"  # scaled to 0: not a problem by itself
    assert all(s["state"] == "running" for s in kko.values())


def test_unexpected_service_is_marked(world):
    report, _, _ = status_json(world.config)
    chime = services(site_of(report, "chime"))
    assert chime[world.unexpected[1]]["expected"] is False
    assert chime[world.unexpected[1]]["state"] == "running"
    assert sum(1 for s in chime.values() if not s["expected"]) == 1
    text, _ = dtmon("status", config=world.config)
    assert "debug_shell" in text.stdout and "running*" in text.stdout
    assert "not in the stack's compose file" in text.stdout


def test_healthy_only_config_exits_zero(world):
    config = world.write_config(sites={"chime": ["datatrail"], "kko": ["datatrail-client"]})
    report, proc, _ = status_json(config)
    assert proc.returncode == 0, report["problems"]
    assert report["problems"] == []
    assert deployed_replicas(site_of(report, "chime")) == {
        "datatrail_server": (1, 1), "datatrail_postgres_exporter": (1, 1), "datatrail_autossh_kko": (1, 1)
    }
    proc, _ = dtmon("status", config=config)
    assert proc.returncode == 0
    assert proc.stdout.rstrip().endswith("all healthy")


def test_human_output_has_a_table_per_site(world):
    proc, _ = observe(world, world.config, ["chime"], "status", settled=failing_is_down(world))
    assert proc.returncode == 1
    out = proc.stdout
    lines = out.splitlines()
    assert any(line.startswith("chime: ok,") for line in lines)
    assert any(line.startswith("kko: ok,") for line in lines)
    assert sum(1 for line in lines if line.split()[:4] == ["STACK", "SERVICE", "STATE", "REPLICAS"]) == 2
    rows = {tuple(line.split()[:4]) for line in lines if line.startswith("  ")}
    assert ("datatrail-daemons", "inventory", "crashloop", "0/1") in rows
    assert ("datatrail-daemons", "replication_stager_kko", "degraded", "1/2") in rows
    assert ("datatrail-client", "update_canfar_certificates", "missing", "0/1") in rows
    assert ("datatrail", "server", "running", "1/1") in rows
    assert "3 problems:" in out or "4 problems:" in out  # 4 once the slow loop has failed 3 times


def test_hung_manager_costs_no_more_than_the_timeout(world):
    timeout = 2.0
    config = world.write_config(timeout=timeout)
    chime, kko = world.engines["chime"], world.engines["kko"]
    chime.pause()
    try:
        for _ in range(5):
            before = kko.service_ls()
            report, proc, elapsed = status_json(config)
            if kko.service_ls() == before:
                break
        assert beyond_startup(elapsed) < timeout + 1.0, f"status took {elapsed:.2f}s with a {timeout:g}s timeout"
        assert proc.returncode == 1
        hung = site_of(report, "chime")
        assert hung["reachable"] is False
        assert hung["error"] in ("timed out", f"timed out after {timeout:g}s"), hung["error"]
        assert any(p.startswith("chime: unreachable") for p in report["problems"])
        other = site_of(report, "kko")
        assert other["reachable"] is True and other["error"] is None
        assert deployed_replicas(other) == before
    finally:
        chime.resume()
        chime.wait_manager()


@pytest.mark.slow
def test_dead_manager_is_reported_and_others_complete(world):
    timeout = 2.0
    config = world.write_config(timeout=timeout)
    chime, kko = world.engines["chime"], world.engines["kko"]
    kko.kill()
    try:
        report = None
        for _ in range(10):
            before = chime.service_ls()
            report, proc, elapsed = status_json(config)
            if chime.service_ls() == before:
                break
        assert beyond_startup(elapsed) < timeout + 1.0, elapsed
        assert proc.returncode == 1
        dead = site_of(report, "kko")
        assert dead["reachable"] is False
        assert dead["error"].startswith("connection failed"), dead["error"]
        assert any(p.startswith("kko: unreachable: connection failed") for p in report["problems"])
        alive = site_of(report, "chime")
        assert alive["reachable"] is True
        assert deployed_replicas(alive) == before
    finally:
        kko.restart()
        kko.wait_converged({f"datatrail-client_{s}": (1, 1) for s in ("replicator", "update_canfar_certificates")})
    # And it comes back: the same config reports kko complete again.
    report, _, _ = status_json(config)
    assert site_of(report, "kko")["reachable"] is True


@pytest.mark.slow
def test_removed_stack_is_reported_missing_and_comes_back(world):
    kko = world.engines["kko"]
    compose = world.compose["kko"]["datatrail-client"]
    config = world.write_config(sites={"kko": ["datatrail-client"]})
    kko.stack_rm("datatrail-client")
    try:
        assert kko.service_ls() == {}
        report, proc, _ = status_json(config)
        assert proc.returncode == 1
        (stack,) = site_of(report, "kko")["stacks"]
        assert {s["service"]: s["state"] for s in stack["services"]} == {
            short: "missing" for short in ("replicator", "deletion_healer", "replication_healer",
                                           "event_registration", "reattempt_unregistered",
                                           "update_canfar_certificates")
        }
        assert stack["state"] == "missing"
        assert len(report["problems"]) == 6
    finally:
        kko.stack_deploy(compose, "datatrail-client")
        expect = {f"datatrail-client_{s}": (1, 1) for s in ("replicator", "replication_healer",
                                                               "event_registration", "reattempt_unregistered",
                                                               "update_canfar_certificates")}
        expect["datatrail-client_deletion_healer"] = (0, 0)  # scaled to 0 in the world's compose file
        kko.wait_converged(expect)
    report, proc, _ = status_json(config)
    assert proc.returncode == 0, report["problems"]
    assert deployed_replicas(site_of(report, "kko")) == expect


@pytest.mark.slow
def test_service_in_a_rolling_update_is_updating(world, tmp_path):
    import yaml
    from engines import service_def, write_config

    kko = world.engines["kko"]
    compose = tmp_path / "scratch.yaml"
    compose.write_text(yaml.safe_dump({
        "version": "3.8",
        "services": {"replicator": service_def(deploy={
            "replicas": 2, "update_config": {"parallelism": 1, "delay": "60s"},
        })},
        "networks": {"hostnet": {"external": True, "name": "host"}},
    }))
    config = write_config(tmp_path / "scratch.toml", [("kko", kko.url, {"dtmon-scratch": compose})])
    kko.stack_deploy(compose, "dtmon-scratch")
    try:
        kko.wait_converged({"dtmon-scratch_replicator": (2, 2)})
        kko.docker("service", "update", "--detach", "--env-add", "DTMON_TEST=1", "dtmon-scratch_replicator")

        def update_state() -> str | None:
            inspect = kko.api("GET", "/services/dtmon-scratch_replicator")
            return (inspect.get("UpdateStatus") or {}).get("State")

        kko.wait_until(lambda: update_state() == "updating", 30, "the rolling update to start")
        report, proc, _ = status_json(config)
        assert update_state() == "updating"  # still in its 60 s pause between the two tasks
        (row,) = services(site_of(report, "kko")).values()
        assert row["state"] == "updating"
        assert proc.returncode == 1
        assert any(p.startswith("kko dtmon-scratch_replicator: updating") and "update updating" in p
                   for p in report["problems"]), report["problems"]
    finally:
        kko.stack_rm("dtmon-scratch")


def test_collector_detail_has_task_history_errors_and_logs(world):
    config = load(world.config)
    collector = SwarmCollector(config.site("chime"), timeout=5.0)
    try:
        status = collector.poll()
        assert status.reachable, status.error
        (node,) = status.nodes
        assert (node.role, node.state, node.availability, node.leader) == ("manager", "ready", "active", True)
        assert node.hostname == world.engines["chime"].api("GET", "/info")["Name"]
        (inventory,) = [s for s in status.services if s.name == world.failing[1]]

        def enough_history() -> bool:
            return sum(1 for t in world.engines["chime"].tasks(inventory.name) if t["Status"].get("Err")) >= 2

        world.engines["chime"].wait_until(enough_history, 30, "two failed inventory tasks")
        before = world.engines["chime"].tasks(inventory.name)
        detail = collector.detail(inventory)
        after = world.engines["chime"].tasks(inventory.name)
        # The engine prunes old tasks as new ones fail: every task dtmon saw existed just before or after.
        assert {t.id for t in detail.tasks} <= {t["ID"] for t in before + after}
        assert len(detail.tasks) >= min(len(before), len(after))
        failed = [t for t in detail.tasks if t.state == "failed"]
        assert len(failed) >= 2
        assert all(t.error == "task: non-zero exit (1)" and t.exit_code == 1 for t in failed)
        assert all(t.slot == 1 and t.node for t in detail.tasks)
        assert detail.logs_error is None
        assert any("inventory: cannot reach the datatrail database" in line.text for line in detail.logs), detail.logs
        (missing,) = [s for s in status.services if s.name == world.missing[1]]
        assert collector.detail(missing).logs_error == "service is not deployed"
    finally:
        collector.close()


def test_engine_cleanup_after_a_crash_leaves_nothing_behind():
    """The fixture machinery itself: a killed engine's containerd, shims, containers and mounts all go."""
    from engines import Dockerd, require_engines, service_def

    require_engines()
    import yaml

    engine = Dockerd("crash").boot()
    try:
        compose = engine.dir / "c.yaml"
        compose.write_text(yaml.safe_dump({
            "version": "3.8",
            "services": {"replicator": service_def()},
            "networks": {"hostnet": {"external": True, "name": "host"}},
        }))
        engine.stack_deploy(compose, "datatrail-client")
        engine.wait_converged({"datatrail-client_replicator": (1, 1)})
        # No overlay plumbing the tests never use: this engine has no ingress or docker_gwbridge network
        # (the host's docker_gwbridge device, if any, is shared by every swarm engine on the machine: not ours).
        networks = {n["Name"] for n in engine.api("GET", "/networks")}
        assert not networks & {"ingress", "docker_gwbridge"}, networks
        netns = engine.netns()
        assert netns, "the engine made no network namespace of its own"
        running = engine.leftovers()
        assert any("containerd-shim" in item for item in running), running
        assert any(item.startswith("mount ") for item in running), running  # netns/default nsfs
        # This engine's processes: containerd, its shims, and the containers' own processes.
        ours = {int(item.split()[1].rstrip(":")) for item in running if item.startswith("process ")}
        ours |= {engine.api("GET", f"/containers/{c['Id']}/json")["State"]["Pid"]
                 for c in engine.api("GET", "/containers/json")}
        assert len(ours) >= 3, ours
        engine.kill()
        assert engine.pidfile.exists()  # a crash leaves the pid file
    finally:
        engine.stop()
    assert engine.leftovers() == []
    assert not engine.dir.exists()
    assert [path for path in netns if path.exists()] == []  # its network namespaces went with it
    from engines import proc_stat

    # Only this engine's: the session's world engines keep restarting a failing task meanwhile, and
    # their exiting shims are reaped by their own engine's cleanup, not by this one.
    zombies = [pid for pid in ours if (proc_stat(pid) or ("", 0))[0] == "Z" and proc_stat(pid)[1] == os.getpid()]
    assert zombies == []


def test_core_plan_notes_match_docker_stack_ls_at_every_site(world):
    """chime's datatrail-client runs without one compose service: `docker stack ls` lists it, so the core plan
    must not call it "not deployed now". The plan is made from a real snapshot (git state stubbed clean:
    the compose files' repository is not the point here)."""
    from dtmon.actions.plan import RepoState, plan_redeploy
    from dtmon.collectors.poll import snapshot

    config = load(world.config)
    snap = snapshot(config)
    assert all(site.reachable for site in snap.sites), [site.error for site in snap.sites]
    repos = {file: RepoState(file=file, root=file.parent, branch="main", upstream="origin/main",
                             head="a" * 40, upstream_head="a" * 40)
             for site in config.sites for file in site.stacks.values()}
    plan = plan_redeploy(config, snap, "chime", "datatrail", repos)
    assert plan.ok, plan.refusal
    listed = {name: set(engine.docker("stack", "ls", "--format", "{{.Name}}").stdout.split())
              for name, engine in world.engines.items()}
    assert "datatrail-client" in listed["chime"]  # partly deployed, and listed
    for site in config.sites:
        for stack in site.stacks:
            note = f"{stack} at {site.name} is not deployed now: removing it changes nothing"
            assert (note in plan.notes) == (stack not in listed[site.name]), (site.name, stack, plan.notes)


def test_the_task_history_limit_is_read_from_the_swarm(world):
    """GET /swarm gives TaskHistoryRetentionLimit: what caps the failure counts is the engine's setting, not a guess."""
    kko = world.engines["kko"]
    config = load(world.write_config(sites={"kko": ["datatrail-client"]}))
    kko.docker("swarm", "update", "--task-history-limit", "7")
    collector = SwarmCollector(config.site("kko"), timeout=5.0)
    try:
        assert collector._task_history(collector.engine(), 5.0) == 7
        kko.docker("swarm", "update", "--task-history-limit", "5")
        assert collector._task_history(collector.engine(), 5.0) == 7  # read again only after a while
        collector.reset()  # a new connection reads it afresh
        assert collector._task_history(collector.engine(), 5.0) == 5
    finally:
        kko.docker("swarm", "update", "--task-history-limit", "5")
        collector.close()
