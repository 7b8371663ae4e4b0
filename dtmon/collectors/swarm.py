"""Swarm collector: one site's services, tasks and nodes through the Docker Engine API (docker-py)."""

from __future__ import annotations

import threading
import time
from collections import defaultdict
from dataclasses import dataclass, replace
from datetime import datetime, timedelta, timezone
from typing import Any

from ..config import SiteConfig
from ..model import (
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

#: Failed tasks younger than this count as "failed recently".
RECENT_FAILURES = timedelta(minutes=10)

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


def parse_time(value: str | None) -> datetime | None:
    """An engine timestamp (RFC 3339 with up to nanoseconds) as an aware datetime."""
    if not value or value.startswith("0001-01-01"):
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


def short_image(image: str | None) -> str | None:
    """repository:tag without the digest."""
    if not image:
        return None
    return image.split("@", 1)[0]


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
    """A TaskInfo from one engine task object."""
    status = task.get("Status") or {}
    container = status.get("ContainerStatus") or {}
    node_id = task.get("NodeID") or ""
    return TaskInfo(
        id=task.get("ID", ""),
        slot=task.get("Slot"),
        node=hostnames.get(node_id, node_id[:12]),
        state=status.get("State", "unknown"),
        desired_state=task.get("DesiredState", "unknown"),
        since=parse_time(status.get("Timestamp")),
        error=status.get("Err") or None,
        message=status.get("Message", ""),
        container_id=container.get("ContainerID") or None,
        exit_code=container.get("ExitCode"),
    )


def build_stacks(
    site: SiteConfig,
    services: list[dict[str, Any]],
    tasks: list[dict[str, Any]],
    now: datetime,
) -> tuple[StackStatus, ...]:
    """Every watched stack of `site`, in config order, each service sorted problems-first."""
    by_service: dict[str, list[dict[str, Any]]] = defaultdict(list)
    for task in tasks:
        by_service[task.get("ServiceID", "")].append(task)
    deployed: dict[str, list[dict[str, Any]]] = defaultdict(list)
    for svc in services:
        labels = (svc.get("Spec") or {}).get("Labels") or {}
        stack = labels.get(STACK_LABEL)
        if stack in site.stacks:
            deployed[stack].append(svc)
    stacks = []
    for stack in site.stacks:
        compose = site.compose_services.get(stack, {})
        rows: list[ServiceStatus] = []
        seen: set[str] = set()
        for svc in deployed.get(stack, []):
            row = _service_row(site.name, stack, svc, by_service.get(svc.get("ID", ""), []), now)
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
        rows.sort(key=lambda r: (STATE_RANK[r.state], r.name))
        stacks.append(StackStatus(stack, tuple(rows)))
    return tuple(stacks)


def _service_row(site: str, stack: str, svc: dict[str, Any], tasks: list[dict[str, Any]], now: datetime) -> ServiceStatus:
    spec = svc.get("Spec") or {}
    name = spec.get("Name", "")
    short = name[len(stack) + 1 :] if name.startswith(stack + "_") else name
    counts = svc.get("ServiceStatus")
    if not isinstance(counts, dict) or "RunningTasks" not in counts or "DesiredTasks" not in counts:
        # Without them every service would read 0/0, i.e. stopped and healthy.
        raise SwarmError(f"engine did not report replica counts for {name or svc.get('ID', '?')} (API < 1.41?)")
    running = int(counts["RunningTasks"])
    desired = int(counts["DesiredTasks"])
    update = svc.get("UpdateStatus") or {}
    update_state = update.get("State")
    error = error_at = None
    failed_recent = 0
    cutoff = now - RECENT_FAILURES
    for task in tasks:
        status = task.get("Status") or {}
        when = parse_time(status.get("Timestamp"))
        if status.get("Err") and when is not None and (error_at is None or when > error_at):
            error, error_at = status["Err"], when
        if status.get("State") in _FAILED_TASK_STATES and when is not None and when >= cutoff:
            failed_recent += 1
    update_message = None
    if update_state and update_state not in ("completed", "rollback_completed"):
        update_message = f"update {update_state.replace('_', ' ')}" + (
            f": {update['Message']}" if update.get("Message") else ""
        )
    return ServiceStatus(
        site=site,
        stack=stack,
        service=short,
        name=name,
        mode=service_mode(spec.get("Mode") or {}),
        running=running,
        desired=desired,
        state=service_state(running, desired, update_state),
        image=short_image(((spec.get("TaskTemplate") or {}).get("ContainerSpec") or {}).get("Image")),
        updated_at=parse_time(svc.get("UpdatedAt")),
        error=error,
        error_at=error_at,
        failed_recent=failed_recent,
        id=svc.get("ID"),
        update_message=update_message,
        update_paused=update_state in _UPDATE_PAUSED,
    )


def node_info(node: dict[str, Any]) -> NodeInfo:
    spec = node.get("Spec") or {}
    return NodeInfo(
        id=node.get("ID", ""),
        hostname=(node.get("Description") or {}).get("Hostname", ""),
        role=spec.get("Role", ""),
        state=(node.get("Status") or {}).get("State", "unknown"),
        availability=spec.get("Availability", ""),
        leader=bool((node.get("ManagerStatus") or {}).get("Leader")),
    )


# ---------------------------------------------------------------------------
# The collector: owns one site's client and keeps its last good data.
# ---------------------------------------------------------------------------


@dataclass(frozen=True)
class ServiceDetail:
    """A service's tasks (with history) and the tail of its logs."""

    tasks: tuple[TaskInfo, ...]
    logs: tuple[str, ...]
    logs_error: str | None = None


def describe_error(exc: BaseException) -> str:
    """A one-line reason for a failed engine call."""
    import docker.errors
    import requests

    if isinstance(exc, SwarmError):
        return str(exc)
    if isinstance(exc, docker.errors.DockerException) and isinstance(exc.__cause__, requests.exceptions.RequestException):
        # docker-py wraps a failed API version negotiation ("Error while fetching server API version: ...").
        return describe_error(exc.__cause__)
    if isinstance(exc, requests.exceptions.Timeout):
        return "timed out"
    if isinstance(exc, requests.exceptions.ConnectionError):
        reason = str(exc)
        for known in ("Connection refused", "No such file or directory", "Name or service not known", "timed out"):
            if known in reason:
                return f"connection failed: {known.lower()}"
        return "connection failed"
    if isinstance(exc, docker.errors.APIError):
        return f"engine said: {exc.explanation or exc}"
    if isinstance(exc, docker.errors.DockerException):
        return str(exc).splitlines()[0]
    return f"{type(exc).__name__}: {exc}"


class SwarmCollector:
    """Polls one site. Thread-safe enough for one poller thread plus detail requests."""

    def __init__(self, site: SiteConfig, timeout: float) -> None:
        self.site = site
        self.timeout = timeout
        self._client = None
        self._tunnel = None
        self._lock = threading.Lock()
        self.last = SiteStatus(name=site.name, reachable=False, error="not polled yet")

    # -- connection ---------------------------------------------------------

    def _base_url(self) -> str:
        url = self.site.docker
        if url.startswith("ssh://"):
            from .tunnel import SshTunnel

            if self._tunnel is None:
                self._tunnel = SshTunnel(url)
            return self._tunnel.ensure(self.timeout)
        return url

    def client(self, timeout: float):
        """The site's APIClient, created (and the API version negotiated) on first use."""
        import docker

        with self._lock:
            if self._client is None:
                tls: Any = False
                if self.site.tls is not None:
                    t = self.site.tls
                    tls = docker.tls.TLSConfig(
                        client_cert=(str(t.cert), str(t.key)) if t.cert and t.key else None,
                        ca_cert=str(t.ca) if t.ca else None,
                        verify=t.verify,
                    )
                self._client = docker.APIClient(base_url=self._base_url(), version="auto", timeout=timeout, tls=tls)
            self._client.timeout = timeout
            return self._client

    def reset(self) -> None:
        """Forget the client so the next call reconnects and renegotiates."""
        with self._lock:
            client, self._client = self._client, None
        if client is not None:
            try:
                client.close()
            except Exception:
                pass

    def close(self) -> None:
        self.reset()
        if self._tunnel is not None:
            self._tunnel.close()

    # -- polling -------------------------------------------------------------

    def fetch(self) -> SiteStatus:
        """One poll; raises on failure. Three calls: services with status, tasks, nodes."""
        deadline = time.monotonic() + self.timeout
        started = time.perf_counter()

        def remaining() -> float:
            left = deadline - time.monotonic()
            if left <= 0:
                raise SwarmError(f"timed out after {self.timeout:g}s")
            return left

        client = self.client(remaining())
        client.timeout = remaining()
        services = client.services(filters={"label": STACK_LABEL}, status=True)
        client.timeout = remaining()
        tasks = client.tasks(filters={"label": STACK_LABEL})
        client.timeout = remaining()
        nodes = client.nodes()
        now = datetime.now(timezone.utc)
        if not isinstance(services, list) or not isinstance(tasks, list) or not isinstance(nodes, list):
            raise SwarmError("engine answered with something other than a list")
        latency = (time.perf_counter() - started) * 1000
        return SiteStatus(
            name=self.site.name,
            reachable=True,
            latency_ms=round(latency, 1),
            polled_at=now,
            stacks=build_stacks(self.site, services, tasks, now),
            nodes=tuple(node_info(n) for n in nodes),
        )

    def poll(self) -> SiteStatus:
        """One poll that never raises: on failure the last good data is kept and marked stale."""
        try:
            status = self.fetch()
        except Exception as exc:  # every failure becomes data, never a crash
            self.reset()
            now = datetime.now(timezone.utc)
            previous = self.last
            since = previous.error_since if (not previous.reachable and previous.error_since) else now
            status = replace(previous, reachable=False, error=describe_error(exc), error_since=since)
        self.last = status
        return status

    # -- detail ---------------------------------------------------------------

    def detail(self, service: ServiceStatus, log_lines: int = 40) -> ServiceDetail:
        """Tasks of one service (history included) and the tail of its logs; raises on failure."""
        if service.id is None:
            return ServiceDetail(tasks=(), logs=(), logs_error="service is not deployed")
        client = self.client(self.timeout)
        hostnames = {n.id: n.hostname for n in self.last.nodes}
        raw = client.tasks(filters={"service": service.id})
        tasks = sorted(
            (task_info(t, hostnames) for t in raw),
            key=lambda t: (t.slot or 0, -(t.since.timestamp() if t.since else 0)),
        )
        logs: tuple[str, ...] = ()
        logs_error = None
        try:
            data = client.service_logs(
                service.id, stdout=True, stderr=True, tail=log_lines, timestamps=False, is_tty=False
            )
            text = b"".join(data) if not isinstance(data, bytes) else data
            logs = tuple(text.decode("utf-8", "replace").splitlines()[-log_lines:])
        except Exception as exc:
            logs_error = describe_error(exc)
        return ServiceDetail(tasks=tuple(tasks), logs=logs, logs_error=logs_error)

