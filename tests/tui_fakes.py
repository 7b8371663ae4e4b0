"""A hand-made Datatrail world for the TUI tests: fixed SiteStatus snapshots served by fake collectors.

The TUI only needs objects with `.site`, `.poll()`, `.detail(service)` and `.close()`; these fakes
return what the test put in them, so Pilot and snapshot tests are deterministic.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass, replace
from datetime import datetime, timedelta, timezone

from dtmon.collectors.swarm import ServiceDetail
from dtmon.config import Config
from dtmon.model import ServiceStatus, SiteStatus, StackStatus, TaskInfo
from dtmon.sanitize import LogLine

#: The frozen "now" of every TUI test.
NOW = datetime(2026, 11, 25, 21, 40, 0, tzinfo=timezone.utc)

IMAGE = "chimefrb/maestro-datatrail:v3.4.1"


def svc(site: str, stack: str, short: str, running: int = 1, desired: int = 1, state: str = "running", **kw) -> ServiceStatus:
    """A service with sensible defaults: updated 2 h ago, no error."""
    fields = dict(
        site=site,
        stack=stack,
        service=short,
        name=f"{stack}_{short}",
        mode="replicated",
        running=running,
        desired=desired,
        state=state,
        image=IMAGE,
        updated_at=NOW - timedelta(hours=2),
        error=None,
        error_at=None,
        failed_recent=0,
        id=f"id-{site}-{stack}-{short}",
    )
    fields.update(kw)
    return ServiceStatus(**fields)


def client_stack(site: str) -> StackStatus:
    names = ["deletion_healer", "event_registration", "reattempt_unregistered", "replication_healer", "replicator",
             "update_canfar_certificates"]
    return StackStatus("datatrail-client", tuple(svc(site, "datatrail-client", n) for n in names))


def chime() -> SiteStatus:
    server = StackStatus(
        "datatrail",
        (svc("chime", "datatrail", "autossh_kko"), svc("chime", "datatrail", "postgres_exporter"),
         svc("chime", "datatrail", "server")),
    )
    daemons = StackStatus(
        "datatrail-daemons",
        (
            svc("chime", "datatrail-daemons", "inventory", running=0, state="down",
                error="task: non-zero exit (1)", error_at=NOW - timedelta(minutes=3), failed_recent=4),
            svc("chime", "datatrail-daemons", "replication_stager_kko", running=1, desired=2, state="degraded",
                error="no suitable node (insufficient resources on 1 node)", error_at=NOW - timedelta(minutes=12)),
            svc("chime", "datatrail-daemons", "debug_shell", expected=False, image="busybox:latest"),
            svc("chime", "datatrail-daemons", "deletion_notification"),
            svc("chime", "datatrail-daemons", "metric_pusher", updated_at=NOW - timedelta(days=3)),
            svc("chime", "datatrail-daemons", "state_updater"),
        ),
    )
    client = StackStatus(
        "datatrail-client",
        tuple(svc("chime", "datatrail-client", n) for n in
              ["deletion_healer", "event_registration", "reattempt_unregistered", "replication_healer", "replicator"])
        + (svc("chime", "datatrail-client", "update_canfar_certificates", running=0, state="missing", mode="",
               image=None, updated_at=None, id=None),),
    )
    return SiteStatus("chime", True, latency_ms=12.3, polled_at=NOW - timedelta(seconds=2),
                      stacks=(server, daemons, client))


def kko() -> SiteStatus:
    return SiteStatus("kko", True, latency_ms=48.0, polled_at=NOW - timedelta(seconds=1), stacks=(client_stack("kko"),))


def gbo_stale() -> SiteStatus:
    """A site whose manager stopped answering 5 minutes ago: its last good data, marked stale."""
    return SiteStatus("gbo", False, error="connection failed: connection refused", latency_ms=30.0,
                      polled_at=NOW - timedelta(minutes=6), error_since=NOW - timedelta(minutes=5),
                      stacks=(client_stack("gbo"),))


def tasks_for(service: ServiceStatus) -> ServiceDetail:
    tasks = (
        TaskInfo(id="t-new", slot=1, node="frb-vsop", state="running", desired_state="running",
                 since=NOW - timedelta(minutes=2), error=None, message="started"),
        TaskInfo(id="t-old", slot=1, node="frb-vsop", state="failed", desired_state="shutdown",
                 since=NOW - timedelta(minutes=3), error="task: non-zero exit (1)", message="started", exit_code=1),
    )
    logs = tuple(LogLine(f"{service.name} log line {i}") for i in range(1, 6))
    return ServiceDetail(tasks=tasks, logs=logs)


@dataclass
class FakeSite:
    name: str


class FakeCollector:
    """Serves `status` (replaceable between polls) and counts calls."""

    def __init__(self, status: SiteStatus, detail=tasks_for) -> None:
        self.site = FakeSite(status.name)
        self.status = status
        self.detail_fn = detail
        self.polls = 0
        self.details = 0
        self.closed = False
        self.gate: threading.Event | None = None  #: when set, poll() waits for it (a slow site)

    def poll(self) -> SiteStatus:
        if self.gate is not None:
            self.gate.wait(10)
        self.polls += 1
        return self.status

    def detail(self, service: ServiceStatus) -> ServiceDetail:
        self.details += 1
        return self.detail_fn(service)

    def close(self) -> None:
        self.closed = True


def fake_config(refresh: float = 3600.0) -> Config:
    return Config(path=None, refresh=refresh, timeout=1.0)


def world(*sites: SiteStatus) -> list[FakeCollector]:
    return [FakeCollector(s) for s in (sites or (chime(), kko(), gbo_stale()))]


def frozen_clock() -> datetime:
    return NOW


def with_service(site: SiteStatus, key: str, **changes) -> SiteStatus:
    """`site` with one service (by key) changed."""
    stacks = []
    for stack in site.stacks:
        stacks.append(replace(stack, services=tuple(replace(s, **changes) if s.key == key else s for s in stack.services)))
    return replace(site, stacks=tuple(stacks))
