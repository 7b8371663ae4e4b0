"""Swarm collector: one site's services, tasks and nodes through the Docker Engine API.

Polls and the detail screen read the API through `engine.Engine` (httpx, every request within the poll's
deadline and the size cap); actions get a docker-py client from `SwarmCollector.client()`.
"""

from __future__ import annotations

import ssl
import threading
import time
from collections import defaultdict
from collections.abc import Callable
from dataclasses import dataclass, replace
from datetime import datetime, timedelta, timezone
from typing import Any
from urllib.parse import quote

from .. import sanitize
from ..redact import scrub, url_secrets
from ..sanitize import LogLine
from ..config import HealthConfig, SiteConfig, TlsConfig
from . import bounded
from .engine import Engine, EngineError, demux_logs, filters
from ..model import (
    CRASHLOOP,
    DEGRADED,
    DOWN,
    MISSING,
    RUNNING,
    STATE_RANK,
    STOPPED,
    UPDATING,
    NodeInfo,
    ServiceStatus,
    SiteStatus,
    StackStatus,
    TaskInfo,
)

STACK_LABEL = "com.docker.stack.namespace"

#: More replicas than this is a server error, not a service (a swarm runs thousands of tasks, not billions).
MAX_REPLICAS = 10**6

#: The swarm's TaskHistoryRetentionLimit when GET /swarm does not say (Docker's default).
DEFAULT_TASK_HISTORY = 5
#: Seconds between two reads of the retention limit (it changes only with `docker swarm update`).
TASK_HISTORY_TTL = 600.0

#: Update states that make a service `updating`. A paused update (failure_action=pause, or a rollback
#: that failed) stays paused until someone acts, so it is shown, and counted as a problem, like one in progress.
_UPDATE_PAUSED = {"paused", "rollback_paused"}
_UPDATE_IN_PROGRESS = {"updating", "rollback_started", *_UPDATE_PAUSED}
_FAILED_TASK_STATES = {"failed", "rejected"}


class SwarmError(Exception):
    """A poll that could not complete; the message says what failed and where."""


# ---------------------------------------------------------------------------
# Pure functions: engine JSON -> snapshot pieces.
# ---------------------------------------------------------------------------


def parse_time(value: object) -> datetime | None:
    """An engine timestamp (RFC 3339 with up to nanoseconds) as an aware datetime; None for anything else."""
    if not isinstance(value, str) or not value or len(value) > 64 or value.startswith("0001-01-01"):
        return None
    text = value.rstrip("Z")
    offset = "+00:00"
    for sign in ("+", "-"):
        head, sep, tail = text.rpartition(sign)
        if sep and "T" in head and ":" in tail and len(tail) == 5:
            text, offset = head, sign + tail
            break
    if "." in text:
        whole, frac = text.split(".", 1)
        text = f"{whole}.{frac[:6].ljust(6, '0')}"
    try:
        return datetime.fromisoformat(text + offset)
    except ValueError:
        return None


def _dict(value: object) -> dict[str, Any]:
    """A JSON object from the engine, or {} for anything else (a hostile answer's null, list or string)."""
    return value if isinstance(value, dict) else {}


def _optional_int(value: object, what: str) -> int | None:
    return None if value is None else sanitize.count(value, what, limit=2**31)


def short_image(image: str | None) -> str | None:
    """repository:tag without the digest."""
    if not image:
        return None
    return sanitize.name(str(image).split("@", 1)[0])


def service_state(running: int, desired: int, update_state: str | None) -> str:
    """The state of a service from its replica counts and update status."""
    if update_state in _UPDATE_IN_PROGRESS:
        return UPDATING
    if desired == 0:
        return STOPPED
    if running >= desired:
        return RUNNING
    if running == 0:
        return DOWN
    return DEGRADED


def service_mode(spec_mode: dict[str, Any]) -> str:
    """replicated, global, replicated-job or global-job."""
    if not isinstance(spec_mode, dict):
        return "unknown"
    for key, word in (
        ("Replicated", "replicated"),
        ("Global", "global"),
        ("ReplicatedJob", "replicated-job"),
        ("GlobalJob", "global-job"),
    ):
        if key in spec_mode:
            return word
    return "unknown"


def task_info(task: dict[str, Any], hostnames: dict[str, str]) -> TaskInfo:
    """A TaskInfo from one engine task object; every text cleaned, every number checked (ValueError)."""
    status = _dict(task.get("Status"))
    container = _dict(status.get("ContainerStatus"))
    node_id = sanitize.name(task.get("NodeID") or "")
    exit_code = container.get("ExitCode")
    if exit_code is not None and (isinstance(exit_code, bool) or not isinstance(exit_code, int) or abs(exit_code) > 2**31):
        raise ValueError(f"task exit code: expected a small integer, got {sanitize.describe_number(exit_code)}")
    return TaskInfo(
        id=sanitize.name(task.get("ID") or ""),
        slot=_optional_int(task.get("Slot"), "task slot"),
        node=hostnames.get(node_id, node_id[:12]),
        state=sanitize.name(status.get("State") or "unknown"),
        desired_state=sanitize.name(task.get("DesiredState") or "unknown"),
        since=parse_time(status.get("Timestamp")),
        error=sanitize.clean_optional(status.get("Err")),
        message=sanitize.clean(status.get("Message") or ""),
        container_id=sanitize.clean_optional(container.get("ContainerID"), sanitize.MAX_NAME),
        exit_code=exit_code,
    )


@dataclass(frozen=True)
class Failures:
    """A service's task failures within the crash-loop window, as far as the swarm's task history shows them."""

    count: int  #: failed or rejected tasks whose failure is within the window
    capped: bool  #: a slot's history was full of tasks from within the window: older ones were reaped
    first_at: datetime | None  #: the oldest failure counted
    looping: bool  #: enough failures for a crash loop


def count_failures(tasks: list[dict[str, Any]], now: datetime, health: HealthConfig,
                   retention: int | None = DEFAULT_TASK_HISTORY) -> Failures:
    """Failures of one service's tasks in the window, honest about the swarm's task history.

    Swarm keeps `retention` tasks per slot (per node for global services) and reaps the oldest first. A
    slot holding that many tasks, all from within the window, may have lost failures from within it: the
    count is then a lower bound (`capped`). A crash loop is `crashloop_failures` failures in the window, or a
    full history (capped) whose tasks, bar the current one, all failed: the swarm cannot show more.
    """
    cutoff = now - timedelta(seconds=health.crashloop_window)
    slots: dict[str, list[tuple[datetime | None, str | None]]] = defaultdict(list)
    for task in tasks:
        task = _dict(task)
        status = _dict(task.get("Status"))
        slot, state = task.get("Slot"), status.get("State")
        key = f"slot {slot!r}" if slot else f"node {task.get('NodeID')!r}"
        slots[key].append((parse_time(status.get("Timestamp")), state if isinstance(state, str) else None))
    count, capped, first_at, full_of_failures = 0, False, None, False
    for entries in slots.values():
        failed = [when for when, state in entries if state in _FAILED_TASK_STATES and when is not None and when >= cutoff]
        count += len(failed)
        if failed:
            oldest = min(failed)
            first_at = oldest if first_at is None or oldest < first_at else first_at
        times = [when for when, _ in entries if when is not None]
        full = retention is not None and retention > 0 and len(entries) >= retention
        if full and failed and times and min(times) >= cutoff:
            capped = True
            full_of_failures |= len(failed) >= max(2, len(entries) - 1)
    looping = count >= health.crashloop_failures or full_of_failures
    return Failures(count, capped, first_at, looping)


def build_stacks(
    site: SiteConfig,
    services: list[dict[str, Any]],
    tasks: list[dict[str, Any]],
    now: datetime,
    health: HealthConfig = HealthConfig(),
    retention: int | None = DEFAULT_TASK_HISTORY,
) -> tuple[StackStatus, ...]:
    """Every watched stack of `site`, in config order, each service sorted problems-first."""
    by_service: dict[str, list[dict[str, Any]]] = defaultdict(list)
    for task in tasks:
        if isinstance(task, dict):
            by_service[str(task.get("ServiceID", ""))].append(task)
    deployed: dict[str, list[dict[str, Any]]] = defaultdict(list)
    for svc in services:
        if not isinstance(svc, dict):
            raise SwarmError("engine answered a service that is not a JSON object")
        labels = _dict(_dict(svc.get("Spec")).get("Labels"))
        stack = labels.get(STACK_LABEL)
        if isinstance(stack, str) and stack in site.stacks:
            deployed[stack].append(svc)
    stacks = []
    used: set[str] = set()  #: row keys of this site so far: two services with one name must not share a row
    for stack in site.stacks:
        compose = site.compose_services.get(stack, {})
        rows: list[ServiceStatus] = []
        seen: set[str] = set()
        for svc in deployed.get(stack, []):
            row = _service_row(site.name, stack, svc, by_service.get(str(svc.get("ID", "")), []), now, health, retention)
            seen.add(row.service)
            if compose and row.service not in compose:
                row = replace(row, expected=False)
            rows.append(row)
        for short, replicas in compose.items():
            if short not in seen:
                rows.append(
                    ServiceStatus(
                        site=site.name,
                        stack=stack,
                        service=short,
                        name=f"{stack}_{short}",
                        mode="",
                        running=0,
                        desired=replicas,
                        state=MISSING,
                        image=None,
                        updated_at=None,
                        error=None,
                        error_at=None,
                        failed_recent=0,
                    )
                )
        rows = _unique_keys(rows, used)
        rows.sort(key=lambda r: (STATE_RANK[r.state], r.name, r.key))
        stacks.append(StackStatus(stack, tuple(rows)))
    return tuple(stacks)


def _unique_keys(rows: list[ServiceStatus], used: set[str]) -> list[ServiceStatus]:
    """`rows` with a key suffix on each one whose key is taken (a duplicated service name, or a stack `a`'s
    `a_b_c` next to stack `a_b`'s `c`): the service id, else "#missing", then a number until unique."""
    out = []
    for row in sorted(rows, key=lambda r: (r.id is None, r.name, r.id or "")):
        if row.key in used:
            base = f"#{row.id}" if row.id else f"#missing:{row.stack}"
            suffix, number = base, 1
            while replace(row, key_suffix=suffix).key in used:
                number += 1
                suffix = f"{base}#{number}"
            row = replace(row, key_suffix=suffix)
        used.add(row.key)
        out.append(row)
    return out


def _service_row(site: str, stack: str, svc: dict[str, Any], tasks: list[dict[str, Any]], now: datetime,
                 health: HealthConfig, retention: int | None) -> ServiceStatus:
    spec = _dict(svc.get("Spec"))
    name = sanitize.name(spec.get("Name") or "")
    short = name[len(stack) + 1 :] if name.startswith(stack + "_") else name
    counts = svc.get("ServiceStatus")
    if not isinstance(counts, dict) or "RunningTasks" not in counts or "DesiredTasks" not in counts:
        # Without them every service would read 0/0, i.e. stopped and healthy.
        raise SwarmError(
            f"engine did not report replica counts for {name or sanitize.name(svc.get('ID') or '?')} (API < 1.41?)"
        )
    try:
        running = sanitize.count(counts["RunningTasks"], "running tasks", limit=MAX_REPLICAS)
        desired = sanitize.count(counts["DesiredTasks"], "desired tasks", limit=MAX_REPLICAS)
    except ValueError as exc:
        raise SwarmError(f"engine reported bad replica counts for {name or '?'}: {exc}") from None
    update = _dict(svc.get("UpdateStatus"))
    update_state = update.get("State") if isinstance(update.get("State"), str) else None
    error = error_at = None
    for task in tasks:
        status = _dict(task.get("Status"))
        when = parse_time(status.get("Timestamp"))
        if status.get("Err") and when is not None and (error_at is None or when > error_at):
            error, error_at = sanitize.clean(status["Err"]), when
    failures = count_failures(tasks, now, health, retention)
    state = service_state(running, desired, update_state)
    # A loop outranks the replica counts (they catch its tasks at any moment of their short lives), but not an
    # update, which is the engine's own account of what its tasks are doing, nor a service scaled to 0.
    looping = failures.looping and state not in (UPDATING, STOPPED)
    update_message = None
    if update_state and update_state not in ("completed", "rollback_completed"):
        update_message = f"update {sanitize.name(update_state).replace('_', ' ')}" + (
            f": {sanitize.clean(update['Message'])}" if update.get("Message") else ""
        )
    return ServiceStatus(
        site=site,
        stack=stack,
        service=short,
        name=name,
        mode=service_mode(spec.get("Mode")),
        running=running,
        desired=desired,
        state=CRASHLOOP if looping else state,
        image=short_image(_dict(_dict(spec.get("TaskTemplate")).get("ContainerSpec")).get("Image")),
        updated_at=parse_time(svc.get("UpdatedAt")),
        error=error,
        error_at=error_at,
        failed_recent=failures.count,
        id=sanitize.clean_optional(svc.get("ID"), sanitize.MAX_NAME),
        update_message=update_message,
        update_paused=update_state in _UPDATE_PAUSED,
        failed_capped=failures.capped,
        looping_since=failures.first_at if looping else None,
    )


def carry_loops(previous: SiteStatus, current: SiteStatus) -> SiteStatus:
    """`current` with each crash loop's start taken from `previous` when that is earlier.

    The swarm reaps old tasks, so a long loop's first failure soon leaves its history; a collector that
    watched the loop from earlier on knows better when it began.
    """
    before = {s.key: s.looping_since for s in previous.services if s.state == CRASHLOOP and s.looping_since}
    if not before:
        return current
    stacks = []
    for stack in current.stacks:
        rows = tuple(
            replace(s, looping_since=before[s.key])
            if s.state == CRASHLOOP and s.key in before and s.looping_since is not None and before[s.key] < s.looping_since
            else s
            for s in stack.services
        )
        stacks.append(replace(stack, services=rows))
    return replace(current, stacks=tuple(stacks))


def node_info(node: dict[str, Any], tasks_running: int = 0) -> NodeInfo:
    """A NodeInfo from one engine node object (every text cleaned)."""
    node = _dict(node)
    spec = _dict(node.get("Spec"))
    description = _dict(node.get("Description"))
    return NodeInfo(
        id=sanitize.name(node.get("ID") or ""),
        hostname=sanitize.name(_dict(node.get("Description")).get("Hostname") or ""),
        role=sanitize.name(spec.get("Role") or ""),
        state=sanitize.name(_dict(node.get("Status")).get("State") or "unknown"),
        availability=sanitize.name(spec.get("Availability") or ""),
        leader=_dict(node.get("ManagerStatus")).get("Leader") is True,
        engine_version=sanitize.name(_dict(description.get("Engine")).get("EngineVersion") or ""),
        tasks_running=tasks_running,
    )


def running_per_node(tasks: list[Any]) -> dict[str, int]:
    """Node id -> how many of these tasks run there now."""
    counts: dict[str, int] = defaultdict(int)
    for task in tasks:
        task = _dict(task)
        if _dict(task.get("Status")).get("State") == "running" and isinstance(task.get("NodeID"), str):
            counts[task["NodeID"]] += 1
    return counts


# ---------------------------------------------------------------------------
# The collector: owns one site's client and keeps its last good data.
# ---------------------------------------------------------------------------


@dataclass(frozen=True)
class ServiceDetail:
    """A service's tasks (with history) and the tail of its logs."""

    tasks: tuple[TaskInfo, ...]
    logs: tuple[LogLine, ...]  #: clean text and its SGR colours, nothing else of the raw line
    logs_error: str | None = None
    #: the same lines with their time and the task/node each came from (collectors.logs.LogEntry)
    entries: tuple[Any, ...] = ()


def describe_error(exc: BaseException) -> str:
    """A one-line reason for a failed engine call, clean of control characters (it may quote the engine)."""
    return sanitize.clean(_describe_error(exc))


def _describe_error(exc: BaseException) -> str:
    if isinstance(exc, bounded.ConnectFailed):
        return f"connection failed: {exc}"
    if isinstance(exc, (SwarmError, bounded.FetchError)):
        return str(exc)
    if isinstance(exc, ssl.SSLError):
        return f"TLS: {bounded.one_line(str(exc), 160)}"
    if isinstance(exc, OSError) and exc.strerror:
        return f"connection failed: {exc.strerror.lower()}"
    import docker.errors  # what actions raise (they use docker-py)
    import requests

    if isinstance(exc, docker.errors.APIError) and exc.response is not None:
        # Before the unwrapping below: an APIError is raised from the HTTPError, whose text is only the URL.
        return f"engine said: {bounded.one_line(str(exc.explanation or exc))}"
    if isinstance(exc, docker.errors.DockerException) and isinstance(exc.__cause__, requests.exceptions.RequestException):
        # docker-py wraps a failed API version negotiation ("Error while fetching server API version: ...").
        return _describe_error(exc.__cause__)
    if isinstance(exc, requests.exceptions.Timeout):
        return "timed out"
    if isinstance(exc, requests.exceptions.ConnectionError):
        reason = str(exc)
        for known in ("Connection refused", "No such file or directory", "Name or service not known", "timed out"):
            if known in reason:
                return f"connection failed: {known.lower()}"
        return "connection failed"
    if isinstance(exc, docker.errors.APIError):
        return f"engine said: {bounded.one_line(str(exc.explanation or exc))}"
    if isinstance(exc, docker.errors.DockerException):
        return bounded.one_line(str(exc))
    return f"{type(exc).__name__}: {bounded.one_line(str(exc))}"


_ENGINE_CLIENT: Any = None


def _engine_client():
    """docker-py's APIClient, but deaf to $REQUESTS_CA_BUNDLE / $CURL_CA_BUNDLE and proxy variables.

    requests lets those replace a session's own CA (psf/requests#3829), so a TLS site would be checked
    against the machine's bundle instead of its `tls.ca`; and a Docker engine is never reached through an
    HTTP proxy. The switch happens before the API version is negotiated, the client's first request.
    """
    global _ENGINE_CLIENT
    if _ENGINE_CLIENT is None:
        import docker

        class EngineClient(docker.APIClient):
            def _retrieve_server_version(self):
                self.trust_env = False
                return super()._retrieve_server_version()

        _ENGINE_CLIENT = EngineClient
    return _ENGINE_CLIENT


class SwarmCollector:
    """Polls one site through the first of its managers that answers. Thread-safe enough for one poller
    thread plus detail requests."""

    def __init__(self, site: SiteConfig, timeout: float, health: HealthConfig | None = None,
                 clock: Callable[[], datetime] | None = None, max_bytes: int = bounded.DEFAULT_MAX_BYTES) -> None:
        from .managers import Endpoint

        self.site = site
        self.timeout = timeout
        self.max_bytes = max_bytes  #: the largest answer read from the engine
        self.health = health or HealthConfig()
        #: "Now" for the crash-loop window and the poll's time: the wall clock, or a simulated world's.
        self.clock = clock or (lambda: datetime.now(timezone.utc))
        #: The swarm's TaskHistoryRetentionLimit and when it was read (monotonic); re-read every TASK_HISTORY_TTL.
        self._retention: tuple[int | None, float] | None = None
        self.endpoints = [Endpoint(url, site, timeout) for url in site.endpoints]
        self._clients: dict[int, Any] = {}
        self.current = 0  #: the endpoint that answered last
        self._engines: dict[int, Engine] = {}  #: the Engine API readers of polls and details, per manager
        self._lock = threading.Lock()
        self.last = SiteStatus(name=site.name, reachable=False, error="not polled yet")

    # -- connection ---------------------------------------------------------

    def endpoint(self, timeout: float) -> tuple[str, TlsConfig | None]:
        """The engine's base URL as this collector reaches it now (the manager that answered last; for an ssh
        manager, its tunnel's local socket, started if need be) and its client TLS: what the site's event
        stream connects to."""
        endpoint = self.endpoints[self.current]
        return endpoint.base_url(timeout), endpoint.tls

    def _client_for(self, index: int, timeout: float):
        """The APIClient of one manager, created (and the API version negotiated) on first use."""
        import docker

        with self._lock:
            client = self._clients.get(index)
        if client is None:
            endpoint = self.endpoints[index]
            tls: Any = False
            if endpoint.tls is not None:
                t = endpoint.tls
                tls = docker.tls.TLSConfig(
                    client_cert=(str(t.cert), str(t.key)) if t.cert and t.key else None,
                    ca_cert=str(t.ca) if t.ca else None,
                    verify=t.verify,
                )
            client = _engine_client()(base_url=endpoint.base_url(timeout), version="auto", timeout=timeout, tls=tls)
            with self._lock:
                self._clients[index] = client
        client.timeout = timeout
        return client

    def client(self, timeout: float):
        """The APIClient of the manager that answered last (the first one before any poll answered)."""
        if not self.last.reachable and len(self.endpoints) > 1:
            self.poll()  # find a manager that answers before acting on one
        return self._client_for(self.current, timeout)

    def cli_host(self, timeout: float) -> list[str]:
        """`--host URL` (and TLS flags) for the docker CLI, to the manager that answered last, through its tunnel."""
        if not self.last.reachable and len(self.endpoints) > 1:
            self.poll()
        return self.endpoints[self.current].cli_host(timeout)

    def engine(self) -> Engine:
        """The Engine API reader of the manager that answered last (the first one before any poll answered)."""
        if not self.last.reachable and len(self.endpoints) > 1:
            self.poll()  # find a manager that answers first
        return self._engine_for(self.current, self.timeout)

    def _engine_for(self, index: int, timeout: float) -> Engine:
        """The Engine API reader of one manager (polls and details), made on first use."""
        with self._lock:
            engine = self._engines.get(index)
        if engine is None:
            endpoint = self.endpoints[index]
            engine = Engine(endpoint.base_url(timeout), endpoint.tls, self.max_bytes)
            with self._lock:
                self._engines[index] = engine
        return engine

    def _drop(self, index: int) -> None:
        with self._lock:
            client = self._clients.pop(index, None)
            engine = self._engines.pop(index, None)
            self._retention = None
        for each in (client, engine):
            if each is not None:
                try:
                    each.close()
                except Exception:
                    pass

    def reset(self) -> None:
        """Forget the clients so the next call reconnects and renegotiates."""
        for index in range(len(self.endpoints)):
            self._drop(index)

    def close(self) -> None:
        """Close every client and end every ssh tunnel this collector started."""
        self.reset()
        for endpoint in self.endpoints:
            endpoint.close()

    # -- polling -------------------------------------------------------------

    def fetch(self) -> SiteStatus:
        """One poll; raises on failure. Managers are asked in order; the first that answers is used."""
        from .managers import NoManagerAnswered

        deadline = time.monotonic() + self.timeout
        attempts = []
        for index, endpoint in enumerate(self.endpoints):
            # A manager that hangs gets its share of what is left, so the next one can still answer in time.
            share = (deadline - time.monotonic()) / (len(self.endpoints) - index)
            try:
                status = self._fetch_from(index, time.monotonic() + share)
            except Exception as exc:
                self._drop(index)
                kind, reason = endpoint.explain(exc, describe_error)
                from .managers import Attempt

                attempts.append(Attempt(endpoint.url, kind, reason))
                continue
            self.current = index
            return replace(status, manager=endpoint.url, manager_index=index,
                           manager_notes=tuple(sanitize.clean(str(a)) for a in attempts))
        known = sum(1 for node in self.last.nodes if node.role == "manager")
        raise NoManagerAnswered(attempts, max(known, len(self.endpoints)))

    def _fetch_from(self, index: int, deadline: float) -> SiteStatus:
        """One poll of one manager before `deadline`: services with status, tasks, nodes."""
        started = time.perf_counter()
        budget = deadline - time.monotonic()

        stack = filters(label=STACK_LABEL)
        with bounded.deadline(deadline):  # every read of these requests ends by it
            try:
                if budget <= 0:
                    raise bounded.TimedOut("deadline passed")
                engine = self._engine_for(index, budget)
                services = engine.get_list("/services", {"filters": stack, "status": "true"}, seconds=budget)
                tasks = engine.get_list("/tasks", {"filters": stack}, seconds=budget)
                nodes = engine.get_list("/nodes", seconds=budget)
                retention = self._task_history(engine, budget)
            except bounded.TimedOut:
                raise SwarmError(f"timed out after {round(budget, 1):g}s") from None
        now = self.clock()
        latency = (time.perf_counter() - started) * 1000
        running = running_per_node(tasks)
        return SiteStatus(
            name=self.site.name,
            reachable=True,
            latency_ms=round(latency, 1),
            polled_at=now,
            stacks=build_stacks(self.site, services, tasks, now, self.health, retention),
            # A "node" without an id is no node (a hostile or broken answer): not listed, not counted as down.
            nodes=tuple(node_info(n, running.get(n["ID"], 0)) for n in nodes
                        if isinstance(n, dict) and isinstance(n.get("ID"), str) and n["ID"]),
        )

    def _task_history(self, engine: Engine, seconds: float) -> int | None:
        """The swarm's TaskHistoryRetentionLimit (GET /swarm), read once per TASK_HISTORY_TTL; the default when unsaid.

        A negative limit keeps every task (nothing is reaped): returned as None, a count never capped.
        """
        cached = self._retention
        if cached is not None and time.monotonic() - cached[1] < TASK_HISTORY_TTL:
            return cached[0]
        limit: int | None = DEFAULT_TASK_HISTORY
        try:
            spec = _dict(_dict(engine.get_json("/swarm", seconds=seconds)).get("Spec"))
            value = _dict(spec.get("Orchestration")).get("TaskHistoryRetentionLimit")
            if isinstance(value, int) and not isinstance(value, bool):
                limit = value if value >= 0 else None
        except (EngineError, bounded.NotJson):  # not a manager, or an engine that does not say: Docker's default
            pass
        self._retention = (limit, time.monotonic())
        return limit

    def poll(self) -> SiteStatus:
        """One poll that never raises: on failure the last good data is kept and marked stale."""
        from .managers import NoManagerAnswered, UNREACHABLE

        try:
            status = carry_loops(self.last, self.fetch())
        except Exception as exc:  # every failure becomes data, never a crash
            now = datetime.now(timezone.utc)
            previous = self.last
            since = previous.error_since if (not previous.reachable and previous.error_since) else now
            secrets = [secret for url in self.site.endpoints for secret in url_secrets(url)]
            if isinstance(exc, NoManagerAnswered):  # ssh's and the engines' words: cleaned like any server text
                error, outage = str(exc), exc.outage
                notes = tuple(scrub(sanitize.clean(str(a)), secrets) for a in exc.attempts)
            else:
                error, outage, notes = describe_error(exc), UNREACHABLE, ()
            error = scrub(sanitize.clean(error), secrets)
            status = replace(previous, reachable=False, error=error, error_since=since, outage=outage,
                             manager=None, manager_notes=notes)
        self.last = status
        return status

    # -- detail ---------------------------------------------------------------

    def detail(self, service: ServiceStatus, log_lines: int = 40) -> ServiceDetail:
        """Tasks of one service (history included) and the tail of its logs; raises on failure."""
        if service.id is None:
            return ServiceDetail(tasks=(), logs=(), logs_error="service is not deployed")
        engine = self.engine()
        hostnames = {n.id: n.hostname for n in self.last.nodes}
        from .logs import TaskNames, parse_entry, split_lines

        with bounded.deadline(time.monotonic() + self.timeout):  # tasks and logs, within one timeout
            try:
                raw = engine.get_list("/tasks", {"filters": filters(service=service.id)}, seconds=self.timeout)
            except bounded.TimedOut:
                raise SwarmError(f"timed out after {self.timeout:g}s") from None
            tasks = sorted(
                (task_info(t, hostnames) for t in raw if isinstance(t, dict)),
                key=lambda t: (t.slot or 0, -(t.since.timestamp() if t.since else 0)),
            )
            logs: tuple[LogLine, ...] = ()
            entries: tuple[Any, ...] = ()
            logs_error = None
            names = TaskNames({t.id: (service.name, t.slot) for t in tasks}, hostnames)
            try:
                # As `logs.read_logs` asks (timestamps and details), but through the bounded reader.
                params = {"stdout": "1", "stderr": "1", "tail": str(log_lines), "timestamps": "1", "details": "1"}
                answer = engine.get(f"/services/{quote(service.id, safe='')}/logs", params, seconds=self.timeout)
                read = [parse_entry(line) for line in split_lines([demux_logs(answer.body)])][-log_lines:]
                entries = tuple(replace(e, source=names.source(e)) for e in read)
                logs = tuple(e.line for e in entries)
            except Exception as exc:
                logs_error = describe_error(exc)
        return ServiceDetail(tasks=tuple(tasks), logs=logs, logs_error=logs_error, entries=entries)

    # -- inspect --------------------------------------------------------------

    def inspect(self, service: ServiceStatus) -> Any:
        """The service's spec as the engine holds it (`docker service inspect`), cleaned; raises on failure."""
        from .spec import service_spec

        if service.id is None:
            raise SwarmError(f"{service.name} is not deployed")
        client = self.client(self.timeout)
        return service_spec(client.inspect_service(service.id))
