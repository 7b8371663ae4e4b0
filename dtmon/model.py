"""Immutable snapshots of the watched world: what collectors return and every view renders."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime, timezone

#: Service states, from healthiest to the ones that need attention.
RUNNING = "running"
STOPPED = "stopped"
UPDATING = "updating"
DEGRADED = "degraded"
DOWN = "down"
MISSING = "missing"
CRASHLOOP = "crashloop"  #: tasks keep failing (see config.HealthConfig), however many happen to run now

#: States that are not a problem.
HEALTHY_STATES = frozenset({RUNNING, STOPPED})

#: Sort rank: problems first, worst first.
STATE_RANK = {DOWN: 0, CRASHLOOP: 1, MISSING: 2, DEGRADED: 3, UPDATING: 4, RUNNING: 5, STOPPED: 6}


@dataclass(frozen=True)
class TaskInfo:
    """One swarm task of a service, as the engine reports it."""

    id: str
    slot: int | None
    node: str  #: node hostname (or id when unknown)
    state: str  #: current state: running, failed, shutdown, ...
    desired_state: str
    since: datetime | None  #: when the task entered its current state
    error: str | None
    message: str
    container_id: str | None = None
    exit_code: int | None = None


@dataclass(frozen=True)
class ServiceStatus:
    """One service of a watched stack at one site."""

    site: str
    stack: str
    service: str  #: short name, as the compose file names it
    name: str  #: swarm name, <stack>_<service>
    mode: str  #: replicated or global ("" when missing)
    running: int
    desired: int
    state: str  #: one of the state constants above
    image: str | None  #: repository:tag, no digest
    updated_at: datetime | None
    error: str | None  #: the latest task error
    error_at: datetime | None
    failed_recent: int  #: tasks that failed (or were rejected) in the crash-loop window
    expected: bool = True  #: named by the stack's compose file
    id: str | None = None  #: swarm service id (None when missing)
    update_message: str | None = None  #: the engine's word on a running or paused update
    update_paused: bool = False  #: the update (or its rollback) stopped and waits for someone to act
    key_suffix: str = ""  #: "#<id>" only when another service of the site has the same swarm name
    failed_capped: bool = False  #: the swarm's task history was full within the window: more failed than counted
    looping_since: datetime | None = None  #: when the crash loop began, as far as known (None unless crashloop)

    @property
    def key(self) -> str:
        """A stable id across polls, unique within a snapshot (duplicate names are told apart by service id)."""
        return f"{self.site}/{self.name}{self.key_suffix}"

    @property
    def is_problem(self) -> bool:
        return self.state not in HEALTHY_STATES

    @property
    def replicas(self) -> str:
        return f"{self.running}/{self.desired}"

    @property
    def failed_text(self) -> str:
        """The failures in the window: "3", or "≥4" when the swarm's task history cut the count short."""
        return f"≥{self.failed_recent}" if self.failed_capped else str(self.failed_recent)

    @property
    def tag(self) -> str:
        """The image tag alone (or the image when it has none)."""
        if not self.image:
            return ""
        tail = self.image.rsplit("/", 1)[-1]
        return tail.split(":", 1)[1] if ":" in tail else tail

    def problem_text(self) -> str:
        """One line for `problems`, e.g. "chime datatrail_server: down 0/1: task: non-zero exit (1)", or
        "chime datatrail-daemons_inventory: crashloop 1/1: ≥4 failures since 2026-12-02T15:40:01Z: task: ..."."""
        text = f"{self.site} {self.name}: {self.state} {self.replicas}"
        if self.state == MISSING:
            return f"{self.site} {self.name}: missing (in the compose file, not deployed)"
        if self.state == CRASHLOOP:
            text = f"{text}: {self.failed_text} failures"
            if self.looping_since is not None:
                text += f" since {self.looping_since.astimezone(timezone.utc).strftime('%Y-%m-%dT%H:%M:%SZ')}"
            detail = self.error
        elif self.state == UPDATING:  # the update's own word first: "update paused: ..." says why it is one
            detail = "; ".join(d for d in (self.update_message, self.error) if d)
        else:
            detail = self.error or self.update_message
        return f"{text}: {detail}" if detail else text


@dataclass(frozen=True)
class StackStatus:
    """One watched stack at one site."""

    name: str
    services: tuple[ServiceStatus, ...]

    @property
    def state(self) -> str:
        """The worst state among the stack's services ("missing" when nothing is deployed)."""
        if not self.services:
            return MISSING
        if all(s.state == MISSING for s in self.services):
            return MISSING
        return min((s.state for s in self.services), key=STATE_RANK.__getitem__)

    @property
    def deployed(self) -> bool:
        """True when any of its services is deployed (a stack missing one compose service is still deployed)."""
        return any(s.state != MISSING for s in self.services)


@dataclass(frozen=True)
class NodeInfo:
    """One swarm node as its manager reports it."""

    id: str
    hostname: str
    role: str
    state: str  #: ready, down, unknown
    availability: str  #: active, pause, drain
    leader: bool = False
    engine_version: str = ""  #: the node's Docker Engine version, as its manager reports it
    tasks_running: int = 0  #: tasks of the watched stacks running on it

    @property
    def problem(self) -> str | None:
        """Why this node needs attention: it is not ready (down, disconnected, unknown) or it is drained."""
        if self.state != "ready":
            return self.state or "unknown"
        if self.availability == "drain":
            return "drained"
        return None

    @property
    def is_problem(self) -> bool:
        return self.problem is not None


@dataclass(frozen=True)
class SiteStatus:
    """Everything known about one site; `stacks` stays the last good data when a poll fails."""

    name: str
    reachable: bool
    error: str | None = None  #: why the last poll failed
    latency_ms: float | None = None  #: duration of the last successful poll
    polled_at: datetime | None = None  #: when the data in `stacks` was collected
    error_since: datetime | None = None  #: first failure of the current run of failures
    stacks: tuple[StackStatus, ...] = ()
    nodes: tuple[NodeInfo, ...] = ()
    manager: str | None = None  #: the manager URL (as configured) that answered the last poll
    manager_index: int = 0  #: its place in the site's list of managers (0: the first)
    manager_notes: tuple[str, ...] = ()  #: managers asked before it, or all of them when none answered: "url: why"
    outage: str | None = None  #: when unreachable: "unreachable", "reconnecting" (ssh), "no leader" (electing) or "no quorum"

    @property
    def services(self) -> tuple[ServiceStatus, ...]:
        return tuple(s for stack in self.stacks for s in stack.services)

    @property
    def stale(self) -> bool:
        """True when what is shown is older than the last attempt (the last poll failed)."""
        return not self.reachable and self.polled_at is not None

    def problems(self) -> list[str]:
        found = []
        if not self.reachable:
            found.append(f"{self.name}: {self.outage or 'unreachable'}: {self.error}")
        for service in self.services:
            if service.is_problem:
                found.append(service.problem_text())
        if self.reachable:  # an unreachable site's nodes are old news; the site itself is the problem
            found.extend(f"{self.name} node {n.hostname or n.id}: {n.problem}" for n in self.nodes if n.is_problem)
        return found

    @property
    def node_problems(self) -> int:
        """Nodes that are down or drained (counted only while the site answers)."""
        return sum(1 for n in self.nodes if n.is_problem) if self.reachable else 0


@dataclass(frozen=True)
class Snapshot:
    """The whole world at one moment."""

    generated_at: datetime
    sites: tuple[SiteStatus, ...] = field(default_factory=tuple)
    buckets: BucketsReport | None = None  #: None when no [buckets] is configured
    progress: ProgressReport | None = None  #: None when no [prometheus] is configured

    def site(self, name: str) -> SiteStatus:
        for site in self.sites:
            if site.name == name:
                return site
        raise KeyError(name)

    @property
    def problems(self) -> list[str]:
        found = [p for site in self.sites for p in site.problems()]
        if self.buckets is not None:
            found.extend(self.buckets.problems())
        if self.progress is not None:
            found.extend(self.progress.problems())
        return found

    @property
    def healthy(self) -> bool:
        return not self.problems


@dataclass(frozen=True)
class BucketStatus:
    """One work queue ("bucket") of the Buckets service, linked to the service that consumes it."""

    name: str
    queued: int
    running: int
    success: int
    failure: int
    total: int
    consumer: str | None = None  #: "site/stack_service" (globs allowed), None when nobody is known to consume it
    consumer_state: str | None = None  #: worst state of the matched consumers; None when not watched here
    consumers: tuple[tuple[str, str], ...] = ()  #: every matched consumer: ("site/stack_service", state)
    history: tuple[int, ...] = ()  #: queued at each poll of this session, oldest first
    rate_per_hour: float | None = None  #: change of queued per hour; negative while draining
    eta_seconds: float | None = None  #: time to empty at the current drain rate; None unless draining
    growing: bool = False  #: queued kept rising over the last polls
    problem: str | None = None  #: why this bucket needs attention, None when it does not

    @property
    def key(self) -> str:
        """A stable id across polls."""
        return self.name


@dataclass(frozen=True)
class BucketsReport:
    """The Buckets service as last polled; `buckets` stays the last good data when a poll fails."""

    url: str
    reachable: bool
    error: str | None = None  #: why the last poll failed, naming the URL
    latency_ms: float | None = None  #: duration of the last successful poll
    polled_at: datetime | None = None  #: when the data in `buckets` was collected
    buckets: tuple[BucketStatus, ...] = ()

    def problems(self) -> list[str]:
        found = [] if self.reachable else [f"buckets: unreachable: {self.error}"]
        found.extend(f"bucket {b.name}: {b.problem}" for b in self.buckets if b.problem)
        return found


#: Progress kinds, in display order.
PROGRESS_KINDS = ("replication", "deletion")


@dataclass(frozen=True)
class Progress:
    """Replication or deletion at one site over the window, as Prometheus holds it.

    `rate_per_hour` is the files done in the window divided by the window's length in hours (the
    window's average, not the trend of `pending`, which also moves when new work arrives);
    `eta_seconds` is `pending` at that rate. Values are None when their query failed or had no
    series for the site.
    """

    site: str
    kind: str  #: "replication" or "deletion"
    pending: float | None  #: files waiting now
    done: float | None  #: files completed in the window
    failed: float | None  #: files that failed in the window
    percent: float | None  #: done / (done + pending) * 100; None when nothing is known or both are 0
    rate_per_hour: float | None  #: done / window hours
    eta_seconds: float | None  #: pending / rate; 0 when nothing is pending; None when the rate is 0 or unknown
    pending_history: tuple[float, ...] = ()  #: pending over the window (range query), oldest first

    @property
    def key(self) -> str:
        """A stable id across polls."""
        return f"{self.site}/{self.kind}"


@dataclass(frozen=True)
class FeedCheck:
    """One check of what feeds the numbers: a scrape target's `up`, a push's age, or `pg_up`."""

    name: str  #: the query that produced it: targets_up, push_age or pg_up
    labels: tuple[tuple[str, str], ...]  #: the series' labels, sorted, without __name__
    value: float | None  #: the query's value; None when the query returned no series
    ok: bool
    detail: str  #: one line for people, e.g. "target job=node instance=a:9100 down"

    @property
    def target(self) -> str:
        """The labels as "job=x instance=y" (job and instance first)."""
        first = [kv for k in ("job", "instance") for kv in self.labels if kv[0] == k]
        rest = [kv for kv in self.labels if kv[0] not in ("job", "instance")]
        return " ".join(f"{k}={v}" for k, v in first + rest)

    @property
    def key(self) -> str:
        """A stable id across polls: the query and the full label set (two label sets can display alike)."""
        import json

        return f"{self.name}/{json.dumps(self.labels, ensure_ascii=True, separators=(',', ':'))}"


@dataclass(frozen=True)
class ProgressReport:
    """Prometheus as last polled; `progress` and `feeds` stay the last good data when it is unreachable."""

    url: str
    reachable: bool
    error: str | None = None  #: why the last poll failed, naming the URL
    latency_ms: float | None = None  #: duration of the last successful poll
    polled_at: datetime | None = None  #: the evaluation time of every query of the data shown
    window: str = "24h"
    progress: tuple[Progress, ...] = ()  #: per site and kind
    feeds: tuple[FeedCheck, ...] = ()
    query_errors: tuple[str, ...] = ()  #: "name: error" for each query that failed while the server answered

    def problems(self) -> list[str]:
        if not self.reachable:
            return [f"prometheus: unreachable: {self.error}"]
        found = [f"prometheus: query {e}" for e in self.query_errors]
        found.extend(f"prometheus: {f.detail}" for f in self.feeds if not f.ok)
        return found
