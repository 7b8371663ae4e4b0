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
from datetime import datetime, timezone
from pathlib import Path

import pytest
from buckets_peers import workflow  # noqa: F401 - the official Buckets client, as a fixture

from dtmon.collectors.swarm import SwarmCollector
from dtmon.config import load
from dtmon.demo import Demo
from dtmon.demo.flow import FILES_PER_WORK, OTHER_BUCKET, replicator_bucket
from dtmon.demo.prometheus import PromQLError, instant
from dtmon.demo.world import (
    DEGRADED,
    FLAPPING,
    MISSING,
    OUTAGE_EVERY,
    OUTAGE_FIRST,
    OUTAGE_LENGTH,
    OUTAGE_SITE,
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
    """A collector whose "now" is the simulated world's, so its crash-loop window follows the test's clock."""
    clock = demo.world.clock
    return SwarmCollector(load(demo.config_path).site(site), timeout=5.0,
                          clock=lambda: datetime.fromtimestamp(clock(), timezone.utc))


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
    assert (row.state, row.running, row.desired) == ("crashloop", 0, 1)
    assert row.error is not None and row.error.startswith("task: non-zero exit (")
    assert abs(row.error_at.timestamp() - failed_at) < 0.01
    # Swarm keeps five tasks per slot: the one waiting to start and four that failed, all recent, so
    # more failed than it shows: the count is a lower bound.
    assert row.failed_recent == TASK_HISTORY - 1
    assert row.failed_capped and row.failed_text == f"≥{TASK_HISTORY - 1}"
    oldest = min(t.since for t in demo.world.tasks(svc, clock.now) if t.state == "failed")
    assert abs(row.looping_since.timestamp() - oldest) < 0.01


def test_flapping_service_running_again_keeps_its_error(demo: Demo, clock: ManualClock) -> None:
    site, name = FLAPPING[0]
    svc = demo.world.service(site, name)
    failed_at = _last_failure(demo.world, svc, time.time() - 2 * RESTART_DELAY)
    clock.now = failed_at + RESTART_DELAY + 1
    row = find(collector(demo, site).poll(), name)
    # Its one replica happens to run, yet it is a crash loop, as it was a moment ago and will be next.
    assert (row.state, row.running) == ("crashloop", 1)
    assert row.error and abs(row.error_at.timestamp() - failed_at) < 0.01
    cutoff = clock.now - 600  # the default crash-loop window
    expected = sum(1 for t in demo.world.tasks(svc, clock.now) if t.state == "failed" and t.since >= cutoff)
    assert row.failed_recent == expected >= 3


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
    assert states == {"crashloop"}  # never running nor merely down between two failures: no flicker
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


def test_a_manager_stops_answering_now_and_then(demo: Demo, clock: ManualClock) -> None:
    from dataclasses import replace

    from dtmon.collectors.poll import poll_sites

    config = replace(load(demo.config_path), timeout=1.0)
    collectors = [SwarmCollector(site, config.timeout) for site in config.sites]
    cycles = (clock.now - demo.world.start - OUTAGE_FIRST) // OUTAGE_EVERY
    outage = demo.world.start + OUTAGE_FIRST + cycles * OUTAGE_EVERY
    assert outage <= clock.now

    clock.now = outage - 5
    before = {s.name: s for s in poll_sites(config, collectors)}
    assert all(s.reachable for s in before.values())

    clock.now = outage + 1
    started = time.monotonic()
    during = {s.name: s for s in poll_sites(config, collectors)}
    assert time.monotonic() - started < config.timeout + 1.0
    dead = during[OUTAGE_SITE]
    assert not dead.reachable and "timed out" in dead.error
    assert dead.stale and dead.stacks == before[OUTAGE_SITE].stacks  # the last good data stays
    assert all(s.reachable for name, s in during.items() if name != OUTAGE_SITE)

    clock.now = outage + OUTAGE_LENGTH + 1
    after = {s.name: s for s in poll_sites(config, collectors)}
    assert after[OUTAGE_SITE].reachable and after[OUTAGE_SITE].error is None
    for c in collectors:
        c.close()


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
    assert [line.text for line in detail.logs] == [line.text for line in demo.world.logs(svc, clock.now, 30)]
    assert any("datatrail.inventory" in line.text for line in detail.logs)
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
        message = "the Debian docker CLI (/usr/bin/docker, package docker.io) is not installed"
        if os.environ.get("CI", "").lower() not in ("", "0", "false", "no"):
            pytest.fail(message)
        pytest.skip(message)
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
        stopped_bucket = replicator_bucket(STOPPED[0])
        buckets = {b["name"]: b for b in report["buckets"]}
        assert buckets[stopped_bucket]["consumer_state"] == "stopped" and buckets[stopped_bucket]["queued"] > 0
        assert any(p.startswith(f"bucket {stopped_bucket}: ") for p in problems), problems
        kinds = {(p["site"], p["kind"]) for p in report["progress"]}
        assert kinds == {(site, kind) for site in SITES for kind in ("replication", "deletion")}
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


# ---------------------------------------------------------------------------
# The Buckets service and Prometheus of the demo (issue 3).
# ---------------------------------------------------------------------------


def _buckets(demo: Demo, sites=()):
    from dtmon.collectors.buckets import BucketsCollector, link_consumers

    report = BucketsCollector(load(demo.config_path).buckets, timeout=5.0).poll_blocking()
    assert report.reachable, report.error
    return link_consumers(report, sites)


def test_buckets_follow_the_services(demo: Demo, clock: ManualClock) -> None:
    sites = [collector(demo, site).poll() for site in SITES]
    report = _buckets(demo, sites)
    by_name = {b.name: b for b in report.buckets}
    assert set(by_name) == set(demo.flow.buckets()) - {OTHER_BUCKET}  # the include glob leaves it out
    for name, bucket in by_name.items():
        expected = demo.flow.counts(name, clock.now)
        got = (bucket.queued, bucket.running, bucket.success, bucket.failure, bucket.total)
        assert got == (expected.queued, expected.running, expected.success, expected.failure, expected.total), name
    stopped = by_name[replicator_bucket(STOPPED[0])]
    assert stopped.running == 0 and stopped.consumer_state == "stopped" and "not running" in stopped.problem
    degraded = by_name[replicator_bucket(DEGRADED[0])]
    assert degraded.consumer_state == "degraded" and degraded.problem
    assert by_name[replicator_bucket("chime")].running == 2 and by_name[replicator_bucket("chime")].problem is None


def test_a_stopped_consumer_lets_its_queue_grow(demo: Demo, clock: ManualClock) -> None:
    before = {b.name: b for b in _buckets(demo).buckets}
    clock.now += 3600
    after = {b.name: b for b in _buckets(demo).buckets}
    stopped = replicator_bucket(STOPPED[0])
    assert after[stopped].queued - before[stopped].queued >= 30  # ~40 works arrive per hour, none leave
    assert after[stopped].success == before[stopped].success
    degraded = replicator_bucket(DEGRADED[0])
    assert after[degraded].queued > before[degraded].queued
    chime = replicator_bucket("chime")
    assert after[chime].queued < before[chime].queued  # two replicas drain faster than work arrives
    assert after[chime].success > before[chime].success


def _progress(demo: Demo, **queries: str):
    from dataclasses import replace

    from dtmon.collectors.prometheus import PrometheusCollector

    cfg = load(demo.config_path).prometheus
    cfg = replace(cfg, queries={**cfg.queries, **queries})
    return PrometheusCollector(cfg, timeout=10.0, site_order=SITES).poll()


def test_prometheus_progress_is_the_buckets_story_in_files(demo: Demo) -> None:
    from dtmon.collectors.prometheus import HISTORY_STEPS, history_grid

    report = _progress(demo)
    assert report.reachable and not report.query_errors, report
    at = report.polled_at.timestamp()
    flow = demo.flow
    rows = {(p.site, p.kind): p for p in report.progress}
    for site in SITES:
        bucket = replicator_bucket(site)
        row = rows[(site, "replication")]
        assert row.pending == flow.queued(bucket, at) * FILES_PER_WORK
        done = (flow.counts(bucket, at).success - flow.counts(bucket, at - 86400).success) * FILES_PER_WORK
        assert row.done == max(0, done)
        start, _, step = history_grid(at, 86400)
        grid = [start + i * step for i in range(HISTORY_STEPS)]
        expected_history = [flow.queued(bucket, t) * FILES_PER_WORK for t in grid] + [row.pending]
        assert list(row.pending_history) == expected_history
    # Since its replicator stopped, nothing leaves the bucket: done stops, pending only grows.
    stopped_bucket = replicator_bucket(STOPPED[0])
    stopped_at = flow.stopped_at(stopped_bucket)
    assert stopped_at is not None and stopped_at < at
    assert flow.counts(stopped_bucket, at).success == flow.counts(stopped_bucket, stopped_at + 1).success
    stopped = rows[(STOPPED[0], "replication")]
    times = [*grid, at]
    after = [v for t, v in zip(times, stopped.pending_history) if t > stopped_at]
    assert len(after) >= 2 and after == sorted(after) and after[-1] > after[0]
    chime = rows[("chime", "replication")]
    assert chime.rate_per_hour > 0 and chime.eta_seconds > 0
    bad = [f for f in report.feeds if not f.ok]
    assert [dict(f.labels).get("instance") for f in bad] == ["ha1.hco:9100"]
    assert {f.name for f in report.feeds if f.ok} == {"targets_up", "push_age", "pg_up"}


def test_prometheus_reports_a_bad_query_and_keeps_the_rest(demo: Demo) -> None:
    report = _progress(demo, deletion_done="sum by (site) (increase(datatrail_deletion_completed_files_total[$window]")
    assert report.reachable
    assert len(report.query_errors) == 1 and report.query_errors[0].startswith("deletion_done: bad_data: ")
    assert "parse error" in report.query_errors[0]
    rows = {(p.site, p.kind): p for p in report.progress}
    assert rows[("chime", "replication")].done and rows[("chime", "deletion")].done is None


def test_promql_subset() -> None:
    world = World(seed=1, start=1_800_000_000.0, clock=lambda: 1_800_000_000.0)
    from dtmon.demo.flow import Flow

    series = Flow(world).series()
    up = instant("sum by (job) (up)", series, 1_800_000_000.0)["result"]
    assert {r["metric"]["job"]: r["value"][1] for r in up}["node"] == "0"
    age = instant('time() - push_time_seconds{job="metric_pusher"}', series, 1_800_000_000.0)["result"]
    assert len(age) == 1 and "__name__" not in age[0]["metric"] and 0 <= float(age[0]["value"][1]) < 60
    rate = instant('rate(datatrail_deletion_completed_files_total{site="chime"}[1h])', series, 1_800_000_000.0)
    assert float(rate["result"][0]["value"][1]) == pytest.approx(9000 / 3600)
    for broken in ("sum by (site) (", "up{job=}", "nosuchfn(up)", "up +"):
        with pytest.raises(PromQLError):
            instant(broken, series, 1_800_000_000.0)


def socket_dirs(pid: int) -> set[Path]:
    """The /tmp/dtmon-demo-* dirs holding unix sockets that process `pid` has open (its world's)."""
    inodes = set()
    for fd in Path(f"/proc/{pid}/fd").glob("*"):
        try:
            target = os.readlink(fd)
        except OSError:
            continue
        if target.startswith("socket:["):
            inodes.add(target[len("socket:["):-1])
    dirs = set()
    for line in Path("/proc/net/unix").read_text().splitlines()[1:]:
        fields = line.split()
        if len(fields) >= 8 and fields[6] in inodes and fields[7].startswith("/tmp/dtmon-demo-"):
            dirs.add(Path(fields[7]).parent)
    return dirs


@pytest.mark.parametrize("signum", [signal.SIGTERM, signal.SIGHUP])
def test_dashboard_demo_cleans_up_when_killed(signum: int) -> None:
    """A closed SSH session (SIGHUP) or a kill (SIGTERM) ends `dtmon demo` cleanly: no socket or dir left."""
    import pty

    master, slave = pty.openpty()
    proc = subprocess.Popen(
        [sys.executable, "-m", "dtmon", "demo"], stdin=slave, stdout=slave, stderr=slave, start_new_session=True,
        env={**os.environ, "TERM": "xterm-256color", "COLUMNS": "100", "LINES": "30"},
    )
    os.close(slave)
    screen = bytearray()

    def drain() -> None:
        while True:
            try:
                data = os.read(master, 65536)
            except OSError:
                return
            if not data:
                return
            screen.extend(data)

    reader = threading.Thread(target=drain, daemon=True)
    reader.start()
    try:
        deadline = time.monotonic() + 30
        # Its own world's dir: other demos (other test workers, other users) may start theirs meanwhile.
        while time.monotonic() < deadline and not socket_dirs(proc.pid):
            time.sleep(0.05)
        created = socket_dirs(proc.pid)
        assert len(created) == 1, f"the demo did not start its world: {created}"
        world_dir = created.pop()
        while time.monotonic() < deadline and b"datatrail" not in screen:  # the dashboard drew the world
            time.sleep(0.05)
        assert b"datatrail" in screen
        proc.send_signal(signum)
        assert proc.wait(timeout=15) == 128 + signum  # ended by the signal, as a shell reports it
        assert not world_dir.exists()
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        os.close(master)
        reader.join(5)


def test_official_client_sees_the_simulated_buckets_and_its_own_work(demo: Demo, clock: ManualClock, workflow) -> None:
    """workflow-core reads the simulated counts; work it deposits and withdraws adds to them, for dtmon too."""
    url = demo.buckets.url
    bucket = replicator_bucket("kko")
    simulated = demo.flow.counts(bucket, clock.now).as_json()  # the clock stands still: these stay put
    assert bucket in workflow.pipelines(url)
    assert workflow.status(url, bucket) == simulated
    workflow.deposit(url, bucket, 3, site="kko")
    workflow.withdraw(url, bucket, 1, finish="success")
    expected = dict(simulated, total=simulated["total"] + 3, queued=simulated["queued"] + 2,
                    success=simulated["success"] + 1)
    assert workflow.status(url, bucket) == expected
    seen = {b.name: b for b in _buckets(demo).buckets}[bucket]
    assert {k: getattr(seen, k) for k in expected} == expected
