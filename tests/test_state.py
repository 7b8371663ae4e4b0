"""Pure state computation: engine JSON (hand-made, shaped like API 1.41 answers) -> snapshot pieces."""

from __future__ import annotations

from datetime import datetime, timedelta, timezone
from pathlib import Path

import pytest

from dtmon.collectors.swarm import build_stacks, parse_time, service_state, short_image
from dtmon.config import SiteConfig
from dtmon.model import CRASHLOOP, DEGRADED, DOWN, MISSING, RUNNING, STOPPED, UPDATING

NOW = datetime(2026, 11, 25, 21, 40, 0, tzinfo=timezone.utc)
LABEL = "com.docker.stack.namespace"


def stamp(ago: timedelta) -> str:
    """An engine-style timestamp (nanoseconds, Z) `ago` before NOW."""
    return (NOW - ago).strftime("%Y-%m-%dT%H:%M:%S.%f") + "123Z"


def engine_service(stack: str, short: str, running: int, desired: int, *, sid: str | None = None,
                   image: str = "chimefrb/maestro-datatrail:latest@sha256:" + "ab" * 32,
                   mode: dict | None = None, update: dict | None = None) -> dict:
    svc = {
        "ID": sid or f"id-{stack}-{short}",
        "UpdatedAt": "2026-11-25T20:00:00.5Z",
        "Spec": {
            "Name": f"{stack}_{short}",
            "Labels": {LABEL: stack},
            "Mode": mode or {"Replicated": {"Replicas": desired}},
            "TaskTemplate": {"ContainerSpec": {"Image": image}},
        },
        "ServiceStatus": {"RunningTasks": running, "DesiredTasks": desired},
    }
    if update is not None:
        svc["UpdateStatus"] = update
    return svc


def engine_task(service_id: str, state: str, ago: timedelta, err: str | None = None, slot: int = 1) -> dict:
    status = {"Timestamp": stamp(ago), "State": state, "Message": state}
    if err:
        status["Err"] = err
    return {"ID": f"t-{service_id}-{state}-{ago.total_seconds()}", "ServiceID": service_id, "Slot": slot,
            "NodeID": "node1", "Status": status, "DesiredState": "running"}


def site(stacks: dict[str, dict[str, int]]) -> SiteConfig:
    return SiteConfig(
        name="chime",
        docker="unix:///x.sock",
        stacks={name: Path(f"/compose/{name}.yaml") for name in stacks},
        compose_services=stacks,
    )


@pytest.mark.parametrize(
    "running, desired, update_state, expected",
    [
        (1, 1, None, RUNNING),
        (3, 3, "completed", RUNNING),
        (4, 3, None, RUNNING),  # an old task still shutting down while the new one runs
        (0, 0, None, STOPPED),
        (0, 1, None, DOWN),
        (1, 2, None, DEGRADED),
        (2, 3, "rollback_completed", DEGRADED),
        (0, 1, "updating", UPDATING),
        (1, 1, "rollback_started", UPDATING),
        (0, 0, "updating", UPDATING),
        (0, 1, "paused", UPDATING),  # an update that failed with failure_action=pause waits for someone
        (1, 1, "paused", UPDATING),
        (1, 1, "rollback_paused", UPDATING),
    ],
)
def test_service_state(running, desired, update_state, expected):
    assert service_state(running, desired, update_state) == expected


@pytest.mark.parametrize(
    "text, expected",
    [
        ("2026-11-25T21:40:00.123456789Z", datetime(2026, 11, 25, 21, 40, 0, 123456, tzinfo=timezone.utc)),
        ("2026-11-25T21:40:00Z", datetime(2026, 11, 25, 21, 40, tzinfo=timezone.utc)),
        ("2026-11-25T21:40:00.5Z", datetime(2026, 11, 25, 21, 40, 0, 500000, tzinfo=timezone.utc)),
        ("2026-11-25T16:40:00.25-05:00", datetime(2026, 11, 25, 21, 40, 0, 250000, tzinfo=timezone.utc)),
        ("2026-11-25T23:40:00+02:00", datetime(2026, 11, 25, 21, 40, tzinfo=timezone.utc)),
        ("2026-11-25T21:40:00", datetime(2026, 11, 25, 21, 40, tzinfo=timezone.utc)),
        ("0001-01-01T00:00:00Z", None),
        ("", None),
        (None, None),
        ("yesterday", None),
    ],
)
def test_parse_time(text, expected):
    got = parse_time(text)
    assert got == expected
    if got is not None:
        assert got.utcoffset() is not None


def test_short_image_drops_the_digest():
    assert short_image("chimefrb/maestro-datatrail:latest@sha256:" + "0" * 64) == "chimefrb/maestro-datatrail:latest"
    assert short_image("registry:5000/x/y:1.2") == "registry:5000/x/y:1.2"
    assert short_image(None) is None


def test_build_stacks_counts_states_errors_and_failures():
    cfg = site({"datatrail-daemons": {"inventory": 1, "state_updater": 1, "replication_stager_kko": 2}})
    services = [
        engine_service("datatrail-daemons", "inventory", 0, 1),
        engine_service("datatrail-daemons", "state_updater", 1, 1),
        engine_service("datatrail-daemons", "replication_stager_kko", 1, 2),
    ]
    inv = "id-datatrail-daemons-inventory"
    tasks = [
        engine_task(inv, "rejected", timedelta(minutes=3), "No such image: x"),  # recent: a rejected task failed too
        engine_task(inv, "rejected", timedelta(minutes=30), "No such image"),  # too old to count as recent
        engine_task(inv, "shutdown", timedelta(minutes=2)),
        engine_task("id-datatrail-daemons-state_updater", "running", timedelta(hours=2)),
        engine_task(inv, "failed", timedelta(minutes=1), "task: non-zero exit (1)"),  # the latest, listed last
    ]
    (stack,) = build_stacks(cfg, services, tasks, NOW)
    assert stack.name == "datatrail-daemons"
    rows = {s.service: s for s in stack.services}

    inventory = rows["inventory"]
    assert (inventory.state, inventory.running, inventory.desired) == (DOWN, 0, 1)
    assert inventory.error == "task: non-zero exit (1)"  # the latest error, not the first listed
    assert inventory.error_at == NOW - timedelta(minutes=1) + timedelta(microseconds=0)
    assert inventory.failed_recent == 2  # the failed one and the recent rejected one
    assert inventory.failed_capped is False and inventory.looping_since is None
    assert inventory.image == "chimefrb/maestro-datatrail:latest"
    assert inventory.mode == "replicated"
    assert inventory.name == "datatrail-daemons_inventory" and inventory.site == "chime"
    assert inventory.id == inv
    assert inventory.updated_at == datetime(2026, 11, 25, 20, 0, 0, 500000, tzinfo=timezone.utc)

    assert rows["state_updater"].state == RUNNING
    assert rows["state_updater"].error is None and rows["state_updater"].failed_recent == 0
    assert rows["replication_stager_kko"].state == DEGRADED
    assert rows["replication_stager_kko"].replicas == "1/2"
    # Problems first, worst first.
    assert [s.service for s in stack.services] == ["inventory", "replication_stager_kko", "state_updater"]


def test_build_stacks_marks_missing_and_unexpected_and_ignores_other_stacks():
    cfg = site({
        "datatrail": {"server": 1},
        "datatrail-client": {"replicator": 1, "update_canfar_certificates": 1, "deletion_healer": 3},
    })
    services = [
        engine_service("datatrail-client", "replicator", 1, 1),
        engine_service("datatrail-client", "debug_shell", 1, 1),
        engine_service("monitoring", "grafana", 0, 1),  # a stack nobody asked about
    ]
    stacks = build_stacks(cfg, services, [], NOW)
    assert [s.name for s in stacks] == ["datatrail", "datatrail-client"]  # config order, even when empty

    core = stacks[0]
    assert [(s.service, s.state, s.desired, s.id) for s in core.services] == [("server", MISSING, 1, None)]
    assert core.state == MISSING

    client = {s.service: s for s in stacks[1].services}
    assert set(client) == {"replicator", "debug_shell", "update_canfar_certificates", "deletion_healer"}
    assert client["debug_shell"].expected is False and client["debug_shell"].state == RUNNING
    assert client["replicator"].expected is True
    assert client["update_canfar_certificates"].state == MISSING
    assert client["deletion_healer"].state == MISSING and client["deletion_healer"].desired == 3
    assert client["deletion_healer"].problem_text() == "chime datatrail-client_deletion_healer: missing (in the compose file, not deployed)"
    assert stacks[1].state == MISSING  # the worst of its services
    assert all(s.name != "monitoring_grafana" for st in stacks for s in st.services)


def test_build_stacks_global_and_stopped_and_updating():
    cfg = site({"datatrail-client": {"replicator": 1, "event_registration": 1, "replication_healer": 1}})
    services = [
        engine_service("datatrail-client", "replicator", 2, 2, mode={"Global": {}}),
        engine_service("datatrail-client", "event_registration", 0, 0),
        engine_service("datatrail-client", "replication_healer", 1, 1,
                       update={"State": "updating", "Message": "update in progress"}),
    ]
    rows = {s.service: s for s in build_stacks(cfg, services, [], NOW)[0].services}
    assert rows["replicator"].mode == "global" and rows["replicator"].state == RUNNING
    assert rows["event_registration"].state == STOPPED and not rows["event_registration"].is_problem
    healer = rows["replication_healer"]
    assert healer.state == UPDATING and healer.is_problem
    assert healer.update_message == "update updating: update in progress"
    assert healer.problem_text() == "chime datatrail-client_replication_healer: updating 1/1: update updating: update in progress"


def test_a_paused_update_is_a_problem_that_says_why():
    cfg = site({"datatrail-client": {"replicator": 1}})
    message = "update paused due to failure or early termination of task 4x7"
    services = [engine_service("datatrail-client", "replicator", 1, 1, update={"State": "paused", "Message": message})]
    tasks = [engine_task("id-datatrail-client-replicator", "failed", timedelta(seconds=30), "task: non-zero exit (1)")]
    (replicator,) = build_stacks(cfg, services, tasks, NOW)[0].services
    assert replicator.state == UPDATING and replicator.is_problem and replicator.update_paused
    assert replicator.problem_text() == (
        f"chime datatrail-client_replicator: updating 1/1: update paused: {message}; task: non-zero exit (1)"
    )


def test_a_service_without_replica_counts_fails_the_poll_instead_of_reading_stopped():
    from dtmon.collectors.swarm import SwarmError

    cfg = site({"datatrail-client": {"replicator": 1}})
    svc = engine_service("datatrail-client", "replicator", 1, 1)
    del svc["ServiceStatus"]  # what an engine that ignores status=true answers
    with pytest.raises(SwarmError, match=r"engine did not report replica counts for datatrail-client_replicator \(API < 1.41\?\)"):
        build_stacks(cfg, [svc], [], NOW)


def test_build_stacks_tasks_of_other_services_do_not_leak():
    cfg = site({"datatrail-client": {"replicator": 1, "deletion_healer": 1}})
    services = [
        engine_service("datatrail-client", "replicator", 1, 1),
        engine_service("datatrail-client", "deletion_healer", 1, 1),
    ]
    tasks = [engine_task("id-datatrail-client-replicator", "failed", timedelta(seconds=5), "boom")]
    rows = {s.service: s for s in build_stacks(cfg, services, tasks, NOW)[0].services}
    assert rows["replicator"].error == "boom" and rows["replicator"].failed_recent == 1
    assert rows["deletion_healer"].error is None and rows["deletion_healer"].failed_recent == 0


class _Collector:
    """Stands in for SwarmCollector in poll_sites: answers after `delay` seconds (or when released)."""

    def __init__(self, name: str, delay: float, release) -> None:
        self.site = SiteConfig(name=name, docker="unix:///x.sock")
        self.delay = delay
        self.release = release
        from dtmon.model import SiteStatus

        self.last = SiteStatus(name=name, reachable=False, error="not polled yet")
        self.answer = SiteStatus(name=name, reachable=True, latency_ms=1.0, polled_at=NOW)

    def poll(self):
        self.release.wait(self.delay)
        return self.answer


def test_poll_sites_never_waits_for_a_slow_site_beyond_the_timeout():
    import threading
    import time

    from dtmon.collectors.poll import poll_sites
    from dtmon.config import Config

    release = threading.Event()
    config = Config(path=None, timeout=0.5)
    collectors = [_Collector("chime", 30.0, release), _Collector("kko", 0.0, release)]
    started = time.monotonic()
    try:
        chime, kko = poll_sites(config, collectors)  # type: ignore[arg-type]
    finally:
        release.set()
    elapsed = time.monotonic() - started
    assert 0.5 <= elapsed < 1.5
    assert (chime.name, chime.reachable, chime.error) == ("chime", False, "timed out after 0.5s")
    assert chime.error_since is not None
    assert kko.reachable is True and kko.latency_ms == 1.0


# ---------------------------------------------------------------------------
# Crash loops: failures in the window, counted honestly against the swarm's task history.
# ---------------------------------------------------------------------------

DAEMONS = {"datatrail-daemons": {"inventory": 1}}
INV = "id-datatrail-daemons-inventory"


def inventory_row(tasks: list[dict], running: int = 1, desired: int = 1, health=None, retention: int | None = 5,
                  update: dict | None = None):
    from dtmon.config import HealthConfig

    services = [engine_service("datatrail-daemons", "inventory", running, desired, update=update)]
    (stack,) = build_stacks(site(DAEMONS), services, tasks, NOW, health or HealthConfig(), retention)
    (row,) = stack.services
    return row


def test_repeated_failures_are_a_crash_loop_even_while_every_replica_runs():
    tasks = [
        engine_task(INV, "failed", timedelta(minutes=8), "task: non-zero exit (1)"),
        engine_task(INV, "failed", timedelta(minutes=5), "task: non-zero exit (1)"),
        engine_task(INV, "failed", timedelta(minutes=2), "task: non-zero exit (3)"),
        engine_task(INV, "running", timedelta(minutes=1)),
    ]
    row = inventory_row(tasks)
    assert (row.state, row.running, row.desired) == (CRASHLOOP, 1, 1)
    assert row.is_problem
    assert (row.failed_recent, row.failed_capped, row.failed_text) == (3, False, "3")
    assert row.looping_since == NOW - timedelta(minutes=8)  # the oldest failure counted
    assert row.error == "task: non-zero exit (3)"
    assert row.problem_text() == (
        "chime datatrail-daemons_inventory: crashloop 1/1: 3 failures since 2026-11-25T21:32:00Z: "
        "task: non-zero exit (3)"
    )
    # Two in the window are not a loop (the default threshold is 3), nor three with a threshold of 4.
    assert inventory_row(tasks[1:]).state == RUNNING
    from dtmon.config import HealthConfig

    assert inventory_row(tasks, health=HealthConfig(crashloop_failures=4)).state == RUNNING
    # A shorter window leaves the 8-minute-old failure out.
    assert inventory_row(tasks, health=HealthConfig(crashloop_window=360)).state == RUNNING


def test_rejected_tasks_count_as_failures_of_a_loop():
    tasks = [engine_task(INV, "rejected", timedelta(minutes=m), "No such image: x") for m in (1, 2, 3)]
    row = inventory_row(tasks, running=0)
    assert (row.state, row.failed_recent) == (CRASHLOOP, 3)


def test_a_full_task_history_within_the_window_is_a_lower_bound():
    # Swarm keeps 5 tasks per slot: one running and four failed, all within the window. Older failures,
    # also within it, may have been reaped: "≥4", and a loop even when the threshold is above what it keeps.
    from dtmon.config import HealthConfig

    tasks = [engine_task(INV, "failed", timedelta(seconds=40 * m), "task: non-zero exit (1)") for m in (1, 2, 3, 4)]
    tasks.append(engine_task(INV, "running", timedelta(seconds=10)))
    row = inventory_row(tasks, health=HealthConfig(crashloop_failures=10))
    assert (row.state, row.failed_recent, row.failed_capped, row.failed_text) == (CRASHLOOP, 4, True, "≥4")
    assert "≥4 failures since" in row.problem_text()
    # The history is full only relative to the swarm's limit: with 10 kept per slot, 5 is everything.
    row = inventory_row(tasks, retention=10, health=HealthConfig(crashloop_failures=10))
    assert (row.state, row.failed_capped, row.failed_text) == (RUNNING, False, "4")
    # A negative limit keeps every task: never capped.
    assert inventory_row(tasks, retention=None).failed_capped is False


def test_a_full_history_reaching_back_past_the_window_is_an_exact_count():
    tasks = [engine_task(INV, "failed", timedelta(minutes=m), "task: non-zero exit (1)") for m in (1, 2, 3)]
    tasks.append(engine_task(INV, "failed", timedelta(minutes=40), "task: non-zero exit (1)"))  # reaped after it
    tasks.append(engine_task(INV, "running", timedelta(seconds=10)))
    row = inventory_row(tasks)
    assert (row.state, row.failed_recent, row.failed_capped) == (CRASHLOOP, 3, False)


def test_failures_are_counted_per_slot_against_the_history_limit():
    # Two replicas: slot 1 fails over and over (full history), slot 2 runs with one old failure.
    tasks = [engine_task(INV, "failed", timedelta(seconds=30 * m), "task: non-zero exit (1)", slot=1) for m in (1, 2, 3, 4)]
    tasks.append(engine_task(INV, "running", timedelta(seconds=5), slot=1))
    tasks.append(engine_task(INV, "running", timedelta(hours=1), slot=2))
    row = inventory_row(tasks, running=2, desired=2)
    assert (row.state, row.failed_recent, row.failed_capped) == (CRASHLOOP, 4, True)


def test_a_stopped_or_updating_service_is_not_called_a_crash_loop():
    tasks = [engine_task(INV, "failed", timedelta(minutes=m), "task: non-zero exit (1)") for m in (1, 2, 3)]
    assert inventory_row(tasks, running=0, desired=0).state == STOPPED
    updating = inventory_row(tasks, update={"State": "updating", "Message": "update in progress"})
    assert updating.state == UPDATING and updating.looping_since is None
    assert updating.failed_recent == 3  # still counted and shown


def test_a_collector_remembers_when_a_loop_began():
    from dataclasses import replace

    from dtmon.collectors.swarm import carry_loops
    from dtmon.model import SiteStatus, StackStatus

    tasks = [engine_task(INV, "failed", timedelta(minutes=m), "task: non-zero exit (1)") for m in (1, 2, 3)]
    now_row = inventory_row(tasks)
    earlier = replace(now_row, looping_since=NOW - timedelta(minutes=30))
    before = SiteStatus("chime", True, stacks=(StackStatus("datatrail-daemons", (earlier,)),))
    after = SiteStatus("chime", True, stacks=(StackStatus("datatrail-daemons", (now_row,)),))
    assert carry_loops(before, after).services[0].looping_since == NOW - timedelta(minutes=30)
    # A loop that ended in between starts afresh.
    healed = SiteStatus("chime", True, stacks=(StackStatus("datatrail-daemons", (replace(earlier, state=RUNNING),)),))
    assert carry_loops(healed, after).services[0].looping_since == NOW - timedelta(minutes=3)
