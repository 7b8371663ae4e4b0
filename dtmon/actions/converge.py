"""When a step that starts tasks has converged: every desired replica runs from a task of the new spec, and
none of those tasks has failed for a stability period (the role of `docker service update --update-monitor`).

One `Watch` follows the services of one wait step across samples; `observe` is pure (engine JSON in,
counts out) so the rule is tested without an engine; restart, redeploy and later scale and rollback waits
share it. A service whose new tasks keep failing ends the wait early with `NotConverging`.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

#: Task states that mean a task of the new spec failed (a replicated service's task that ends
#: "complete" stopped too: swarm replaces it, so it counts as a failure of a service meant to run).
FAILED_STATES = frozenset({"failed", "rejected"})
ENDED_STATES = frozenset({"complete", "shutdown", "orphaned"})
#: Update states during which the service has not converged yet.
UPDATING_STATES = frozenset({"updating"})
#: Update states that end the wait: the engine gave up on the new spec (paused it, or rolls it back).
FAILED_UPDATE_STATES = frozenset({"paused", "rollback_started", "rollback_paused", "rollback_completed"})


class NotConverging(Exception):
    """A service's new tasks keep failing, or its update failed; the message names the service and the error."""


def _normal(spec: dict[str, Any]) -> dict[str, Any]:
    """A task spec without empty fields and with the default runtime spelled out (the API adds it to one side)."""
    normal = {key: value for key, value in spec.items() if value not in (None, {}, [], "", 0)}
    normal.setdefault("Runtime", "container")
    return normal


def of_spec(task: dict[str, Any], service: dict[str, Any]) -> bool:
    """True when `task` was made from the service's current task template (the new spec)."""
    template = (service.get("Spec") or {}).get("TaskTemplate") or {}
    return _normal(task.get("Spec") or {}) == _normal(template)


def _when(stamp: str) -> float:
    from ..collectors.swarm import parse_time

    when = parse_time(stamp)
    return when.timestamp() if when is not None else 0.0


def _text(value: Any) -> str:
    """Server text made safe for notes, the audit log and the terminal (the house sanitiser)."""
    from ..sanitize import clean

    return clean(value)


@dataclass(frozen=True)
class ServiceCount:
    """One service at one sample."""

    name: str
    running: int  #: tasks of the new spec running
    desired: int  #: replicas that must run
    failures: int  #: tasks of the new spec seen failing since the wait began
    last_error: str | None  #: the latest of those failures' errors
    steady: float | None  #: seconds all replicas have run with no failure (None: not all running)
    update: str | None = None  #: the service's update state, when one is in progress

    def text(self, short: str | None = None) -> str:
        words = f"{short or self.name} {self.running}/{self.desired}"
        if self.update:
            words += f" (update {self.update.replace('_', ' ')})"
        if self.failures:
            words += f", {self.failures} failed"
        return words


@dataclass
class _Seen:
    failed: dict[str, tuple[str, str]] = field(default_factory=dict)  #: task id -> (timestamp, error)
    running: frozenset[str] = frozenset()
    steady_since: float | None = None


class Watch:
    """Follows the services of one wait step. `monitor` seconds of stability; `max_failures` ends it early."""

    def __init__(self, monitor: float, max_failures: int, clock: Callable[[], float] = time.monotonic) -> None:
        self.monitor = monitor
        self.max_failures = max_failures
        self.clock = clock
        self._seen: dict[str, _Seen] = {}

    def observe(self, service: dict[str, Any], tasks: Sequence[dict[str, Any]], desired: int) -> ServiceCount:
        """Count one service's new-spec tasks in one sample; raises NotConverging when it keeps failing."""
        spec = service.get("Spec") or {}
        name = _text(spec.get("Name") or service.get("ID", "?"))
        seen = self._seen.setdefault(service.get("ID") or name, _Seen())
        update = service.get("UpdateStatus") or {}
        state = update.get("State")
        if state in FAILED_UPDATE_STATES:
            message = _text(update.get("Message") or "")
            raise NotConverging(f"{name}: update {state.replace('_', ' ')}" + (f": {message}" if message else ""))
        job = any(key in (spec.get("Mode") or {}) for key in ("ReplicatedJob", "GlobalJob"))
        running: set[str] = set()
        new_failure = False
        for task in tasks:
            if not of_spec(task, service):
                continue
            status = task.get("Status") or {}
            task_state = status.get("State")
            task_id = task.get("ID", "")
            if task_state == "running" and task.get("DesiredState") == "running":
                running.add(task_id)
            elif task_state in FAILED_STATES or (task_state == "complete" and not job):
                if task_id not in seen.failed:
                    error = status.get("Err") or status.get("Message") or task_state
                    seen.failed[task_id] = (status.get("Timestamp") or "", _text(error))
                    new_failure = True
        now = self.clock()
        ready = len(running) >= desired and state not in UPDATING_STATES
        if not ready:
            seen.steady_since = None
        elif seen.steady_since is None or new_failure or running != seen.running:
            seen.steady_since = now  # a failure or a replaced task starts the period again
        seen.running = frozenset(running)
        last_error = max(seen.failed.values(), key=lambda f: _when(f[0]))[1] if seen.failed else None
        count = ServiceCount(
            name, len(running), desired, len(seen.failed), last_error,
            None if seen.steady_since is None else now - seen.steady_since,
            state if state in UPDATING_STATES else None,
        )
        if count.failures >= self.max_failures:
            raise NotConverging(
                f"{name} keeps failing: {count.failures} tasks of the new spec failed "
                f"({count.running}/{desired} running), last error: {last_error}"
            )
        return count

    def verdict(self, counts: Sequence[ServiceCount], prefix: str = "",
                missing: Sequence[str] = ()) -> tuple[bool, str]:
        """(converged, note): converged when every service exists and has been steady for `monitor` seconds."""
        steady = [c for c in counts if c.steady is not None and c.steady >= self.monitor]
        total = len(counts) + len(missing)
        done = len(steady) == total
        running = [c for c in counts if c.steady is not None]
        if len(running) == total and not done:
            head = f"all running, watching {self.monitor:g}s for failures"
        else:
            head = f"{len(steady)}/{total} services steady"

        def short(name: str) -> str:
            return name[len(prefix):] if prefix and name.startswith(prefix) else name

        parts = [f"{short(name)} not created yet" for name in missing] + [c.text(short(c.name)) for c in counts]
        note = f"{head}: " + ", ".join(parts) if parts else head
        failing = [c for c in counts if c.last_error]
        if failing and not done:
            worst = max(failing, key=lambda c: c.failures)
            note += f" (last error of {worst.name}: {worst.last_error})"
        return done, note
