"""The demo world: the real swarm collector, docker-py and the CLI against the simulated engines."""

from __future__ import annotations

import json
import os
import signal
import socket
import struct
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

from dtmon.collectors.swarm import RECENT_FAILURES, SwarmCollector
from dtmon.config import load
from dtmon.demo import Demo
from dtmon.demo.world import (
    DEGRADED,
    FLAPPING,
    MISSING,
    PENDING_ERROR,
    RESTART_DELAY,
    SITES,
    STOPPED,
    TASK_HISTORY,
    UNEXPECTED,
    UPDATING,
    World,
)


class ManualClock:
    """A clock the test sets; starts at the real time so the collector's "recent" window agrees."""

    def __init__(self) -> None:
        self.now = time.time()

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def clock() -> ManualClock:
    return ManualClock()


@pytest.fixture
def demo(clock: ManualClock):
    with Demo(seed=7, start=clock.now - 1000, clock=clock) as running:
        yield running


def collector(demo: Demo, site: str) -> SwarmCollector:
    return SwarmCollector(load(demo.config_path).site(site), timeout=5.0)


def find(status, name: str):
    matches = [s for s in status.services if s.name == name]
    assert len(matches) == 1, f"{name}: {[s.name for s in status.services]}"
    return matches[0]


def test_every_service_matches_the_simulated_world(demo: Demo, clock: ManualClock) -> None:
    for site in SITES:
        status = collector(demo, site).poll()
        assert status.reachable, status.error
        seen = {s.name: s for s in status.services}
        deployed = demo.world.services(site)
        assert {s.name for s in deployed} <= set(seen)
        for svc in deployed:
            row = seen[svc.name]
            assert (row.running, row.desired) == (demo.world.running(svc, clock.now), svc.replicas), svc.key
            assert row.image == svc.image
            assert row.id == demo.world.service_id(svc)
        assert {n.hostname for n in status.nodes} == {n.hostname for n in demo.world.nodes(site)}


def test_degraded_missing_stopped_and_unexpected(demo: Demo) -> None:
    statuses = {site: collector(demo, site).poll() for site in SITES}

    degraded = find(statuses[DEGRADED[0]], DEGRADED[1])
    assert (degraded.state, degraded.running, degraded.desired) == ("degraded", 1, 2)
    assert degraded.error == PENDING_ERROR

    missing = find(statuses[MISSING[0]], MISSING[1])
    assert missing.state == "missing" and missing.id is None and missing.desired == 1

    stopped = find(statuses[STOPPED[0]], STOPPED[1])
    assert (stopped.state, stopped.running, stopped.desired) == ("stopped", 0, 0)

    unexpected = find(statuses[UNEXPECTED[0]], UNEXPECTED[1])
    assert unexpected.expected is False and unexpected.state == "running"
    others = [s for st in statuses.values() for s in st.services if (s.site, s.name) != UNEXPECTED]
    assert others and all(s.expected for s in others)

    assert statuses["chime"].nodes and {n.hostname for n in statuses["chime"].nodes} == {"frb-vsop", "outrigger_buffer"}
    assert [n.leader for n in statuses["chime"].nodes].count(True) == 1


def _last_failure(world: World, svc, before: float) -> float:
    """The most recent failure of a flapping service at or before `before`."""
    _, started, fails = world.flap_cycle(svc, before)
    return fails if fails <= before else started - RESTART_DELAY


def test_flapping_service_just_after_a_failure(demo: Demo, clock: ManualClock) -> None:
    site, name = FLAPPING[0]
    svc = demo.world.service(site, name)
    failed_at = _last_failure(demo.world, svc, time.time() - 2)
    clock.now = failed_at + 1  # inside the restart delay: nothing runs
    row = find(collector(demo, site).poll(), name)
    assert (row.state, row.running, row.desired) == ("down", 0, 1)
    assert row.error is not None and row.error.startswith("task: non-zero exit (")
    assert abs(row.error_at.timestamp() - failed_at) < 0.01
    # Swarm keeps five tasks per slot: the one waiting to start and four that failed, all recent.
    assert row.failed_recent == TASK_HISTORY - 1


def test_flapping_service_running_again_keeps_its_error(demo: Demo, clock: ManualClock) -> None:
    site, name = FLAPPING[0]
    svc = demo.world.service(site, name)
    failed_at = _last_failure(demo.world, svc, time.time() - 2 * RESTART_DELAY)
    clock.now = failed_at + RESTART_DELAY + 1
    row = find(collector(demo, site).poll(), name)
    assert (row.state, row.running) == ("running", 1)
    assert row.error and abs(row.error_at.timestamp() - failed_at) < 0.01
    cutoff = time.time() - RECENT_FAILURES.total_seconds()
    expected = sum(1 for t in demo.world.tasks(svc, clock.now) if t.state == "failed" and t.since >= cutoff)
    assert row.failed_recent == expected > 0


def test_the_picture_changes_over_time(demo: Demo, clock: ManualClock) -> None:
    site, name = FLAPPING[0]
    coll = collector(demo, site)
    start = clock.now - 600
    states, task_ids, errors_at = set(), set(), set()
    for step in range(0, 600, 4):  # finer than the 5 s restart delay, so no down spell is missed
        clock.now = start + step
        row = find(coll.poll(), name)
        states.add(row.state)
        errors_at.add(row.error_at)
        task_ids.update(t.id for t in demo.world.tasks(demo.world.service(site, name), clock.now))
    assert {"running", "down"} <= states
    assert len(errors_at) >= 4  # a new failure every restart cycle
    assert len(task_ids) > TASK_HISTORY  # history moves on: old tasks drop out, new ones appear


def test_updating_now_and_then(demo: Demo, clock: ManualClock) -> None:
    site, name = UPDATING
    svc = demo.world.service(site, name)
    coll = collector(demo, site)
    seen = {}
    for t in range(int(demo.world.start), int(time.time()), 5):
        seen.setdefault(demo.world.times(svc, t).update_state, t)
    assert {"updating", "completed"} <= set(seen)
    clock.now = seen["updating"]
    row = find(coll.poll(), name)
    assert row.state == "updating" and "update updating" in (row.update_message or "")
    clock.now = seen["completed"]
    row = find(coll.poll(), name)
    assert row.state == "running" and row.update_message is None
    assert abs(row.updated_at.timestamp() - demo.world.times(svc, clock.now).updated) < 0.01


def test_same_seed_same_world_other_seed_other_ids(clock: ManualClock) -> None:
    a = World(seed=3, start=clock.now - 500, clock=clock)
    b = World(seed=3, start=clock.now - 500, clock=clock)
    c = World(seed=4, start=clock.now - 500, clock=clock)
    svc = a.service(*FLAPPING[0])
    assert a.tasks(svc, clock.now) == b.tasks(svc, clock.now)
    assert a.logs(svc, clock.now, 20) == b.logs(svc, clock.now, 20)
    assert {t.id for t in a.tasks(svc, clock.now)}.isdisjoint(t.id for t in c.tasks(svc, clock.now))


def test_detail_returns_tasks_and_logs(demo: Demo, clock: ManualClock) -> None:
    site, name = FLAPPING[0]
    coll = collector(demo, site)
    row = find(coll.poll(), name)
    detail = coll.detail(row, log_lines=30)
    svc = demo.world.service(site, name)
    world_tasks = demo.world.tasks(svc, clock.now)
    assert {t.id for t in detail.tasks} == {t.id for t in world_tasks}
    assert len(detail.tasks) == TASK_HISTORY
    assert {t.node for t in detail.tasks} == {"frb-vsop"}
    failed = [t for t in detail.tasks if t.state == "failed"]
    assert failed and all(t.error.startswith("task: non-zero exit") and t.exit_code for t in failed)
    assert detail.logs_error is None
    assert list(detail.logs) == [line.text for line in demo.world.logs(svc, clock.now, 30)]
    assert any("datatrail.inventory" in line for line in detail.logs)
    assert any(line.text.startswith("Traceback") and line.stream == 2 for line in demo.world.logs(svc, clock.now, None))


def _raw_get(path: str, sock_path: str) -> tuple[str, bytes]:
    with socket.socket(socket.AF_UNIX) as s:
        s.settimeout(5)
        s.connect(sock_path)
        s.sendall(f"GET {path} HTTP/1.1\r\nHost: docker\r\nConnection: close\r\n\r\n".encode())
        data = b""
        while chunk := s.recv(65536):
            data += chunk
    head, _, body = data.partition(b"\r\n\r\n")
    return head.decode(), body


def test_logs_are_multiplexed_like_a_non_tty_engine(demo: Demo, clock: ManualClock) -> None:
    site, name = FLAPPING[0]
    svc = demo.world.service(site, name)
    sid = demo.world.service_id(svc)
    head, body = _raw_get(f"/v1.41/services/{sid}/logs?stdout=1&stderr=1&tail=all&timestamps=1",
                          demo.engines[site].path)
    assert head.startswith("HTTP/1.1 200") and "Api-Version: 1.41" in head
    streams = []
    while body:
        stream, length = struct.unpack(">BxxxL", body[:8])
        payload, body = body[8 : 8 + length], body[8 + length :]
        assert payload.endswith(b"\n") and payload[:4].isdigit()  # an RFC 3339 timestamp first
        streams.append(stream)
    assert set(streams) == {1, 2}  # tracebacks go to stderr


def test_engine_answers_like_docker(demo: Demo) -> None:
    path = demo.engines["chime"].path
    head, body = _raw_get("/_ping", path)
    assert head.startswith("HTTP/1.1 200") and body == b"OK"
    head, body = _raw_get("/version", path)
    assert json.loads(body)["ApiVersion"] == "1.41"
    head, body = _raw_get("/v1.41/services/nosuch", path)
    assert head.startswith("HTTP/1.1 404") and json.loads(body) == {"message": "service nosuch not found"}
    flt = '{"label":["com.docker.stack.namespace=datatrail"]}'
    head, body = _raw_get("/v1.41/services?filters=" + flt.replace('"', "%22"), path)
    names = {s["Spec"]["Name"] for s in json.loads(body)}
    assert names and all(n.startswith("datatrail_") for n in names)
    info = json.loads(_raw_get("/v1.41/info", path)[1])
    assert info["Swarm"]["Nodes"] == 2 and info["Name"] == "frb-vsop"


def test_docker_cli_lists_the_simulated_services(demo: Demo, clock: ManualClock) -> None:
    cli = "/usr/bin/docker"
    if not os.path.exists(cli):
        pytest.skip("the Debian docker CLI is not installed")
    out = subprocess.run(
        [cli, "-H", demo.engines["gbo"].url, "service", "ls", "--format", "{{.Name}} {{.Replicas}}"],
        capture_output=True, text=True, timeout=30, check=True, env={**os.environ, "DOCKER_CONFIG": str(demo.base)},
    ).stdout
    listed = dict(line.split() for line in out.splitlines())
    assert listed[DEGRADED[1]] == "1/2"
    assert len(listed) == len(demo.world.services("gbo"))


def test_stop_leaves_nothing_behind(clock: ManualClock) -> None:
    demo = Demo(clock=clock)
    config = demo.start()
    base = demo.base
    sockets = [Path(e.path) for e in demo.engines.values()]
    assert all(p.is_socket() for p in sockets) and config.is_file()
    # An open keep-alive connection must not keep the server alive.
    coll = collector(demo, "kko")
    assert coll.poll().reachable
    demo.stop()
    assert not any(p.exists() for p in sockets)
    assert base is not None and not base.exists() and not config.exists()
    assert not [t for t in threading.enumerate() if t.name.startswith("demo-engine-")]
    assert not coll.poll().reachable
    coll.close()


def test_serve_and_status_json_in_subprocesses(tmp_path: Path) -> None:
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    proc = subprocess.Popen(
        [sys.executable, "-m", "dtmon", "demo", "--serve", str(tmp_path)],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env,
    )
    try:
        first = proc.stdout.readline()
        config = tmp_path / "config.toml"
        assert str(config) in first and config.is_file(), first + proc.stderr.read() if proc.poll() is not None else first
        sockets = [Path(line.split('"')[1][len("unix://"):]) for line in config.read_text().splitlines()
                   if line.startswith("docker = ")]
        assert len(sockets) == len(SITES) and all(p.is_socket() for p in sockets)
        result = subprocess.run(
            [sys.executable, "-m", "dtmon", "--config", str(config), "status", "--json"],
            capture_output=True, text=True, timeout=60, env=env,
        )
        assert result.returncode == 1, result.stderr
        report = json.loads(result.stdout)
        assert [s["name"] for s in report["sites"]] == list(SITES)
        assert all(s["reachable"] for s in report["sites"])
        problems = report["problems"]
        assert any(p.startswith(f"{DEGRADED[0]} {DEGRADED[1]}: degraded 1/2") for p in problems), problems
        assert f"{MISSING[0]} {MISSING[1]}: missing (in the compose file, not deployed)" in problems
    finally:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
            raise
    assert proc.returncode == 0, proc.stderr.read()
    assert not any(p.exists() for p in sockets)
    assert not sockets[0].parent.exists()
    assert not (tmp_path / "config.toml").exists()
