"""Runs a plan step by step: progress callbacks, the audit log, the lock, and what a failure leaves behind."""

from __future__ import annotations

import os
import shutil
import subprocess
import threading
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ..config import Config, parse_compose
from ..redact import redact_url
from ..sanitize import clean_lines
from . import announce, gitrepo, restart, service_ops
from .audit import OUTCOME, START, STEP, AuditLog
from .converge import NotConverging, Watch
from .lock import ActionLock, lock_path, who
from .plan import (
    ANNOUNCE,
    DEPLOY,
    PULL,
    REMOVE,
    RESTART,
    ROLLBACK,
    SCALE,
    STACK_LABEL,
    WAIT_CONVERGED,
    WAIT_GONE,
    WAIT_ROLLED_BACK,
    WAIT_RUNNING,
    WAIT_SCALED,
    Plan,
    Step,
    left_states,
)

PENDING, RUNNING, DONE, FAILED = "pending", "running", "done", "failed"
INTERRUPTED = "interrupted"  #: a step, and the run, cut short by Ctrl-C: the step's effect is unknown
STOPPED = "stopped"  #: a wait step ended by Stop (the run too): what it waited for had not happened yet
#: How often the main thread looks up from a step running in its helper thread: a Ctrl-C is acted on within this.
INTERRUPT_POLL = 0.1


class StepFailed(Exception):
    """A step that did not succeed; the message is shown to the operator and audited."""


class StepStopped(Exception):
    """Stop was pressed while a wait step waited; the message says what it was waiting for and how far it got."""


class Interrupted(KeyboardInterrupt):
    """Ctrl-C during a run, raised again once the interruption is audited; `result` says where it stopped."""

    def __init__(self, result: "RunResult") -> None:
        super().__init__()
        self.result = result


class CannotResume(Exception):
    """The latest run of a request was interrupted, so there is no known point to resume from."""


def docker_binary() -> str:
    """The docker CLI to run: $DTMON_DOCKER, else `docker` on PATH."""
    return os.environ.get("DTMON_DOCKER") or shutil.which("docker") or "docker"


@dataclass
class StepRun:
    """The live state of one step."""

    index: int
    step: Step
    status: str = PENDING
    started: float | None = None  #: time.time()
    ended: float | None = None
    note: str = ""  #: progress or the command's output summary
    error: str | None = None

    @property
    def duration(self) -> float | None:
        if self.started is None:
            return None
        return (self.ended or time.time()) - self.started


@dataclass
class RunResult:
    """How a run ended."""

    action_id: str
    plan: Plan
    runs: list[StepRun]
    outcome: str  #: done, failed, stopped or interrupted
    failed_index: int | None = None
    states: dict[str, str] = field(default_factory=dict)

    @property
    def resume_index(self) -> int | None:
        """Where a resume starts: the failed step, else the first step that did not run (after a stop)."""
        if self.failed_index is not None:
            return self.failed_index
        return next((run.index for run in self.runs if run.status == PENDING), None)

    def summary(self) -> str:
        """What happened, for people."""
        lines = []
        for run in self.runs:
            took = f"{run.duration:.1f}s" if run.duration is not None else ""
            lines.append(f"  {run.index + 1:>2}. {run.status:<7} {took:>7}  {run.step.title}"
                         + (f": {run.error}" if run.error else ""))
        lines.append(f"outcome: {self.outcome}")
        if self.outcome != DONE:
            for where, state in self.states.items():
                lines.append(f"  {where}: {state}")
        return "\n".join(lines)


def _tail(text: str, limit: int = 1500) -> str:
    """The end of a command's output, clean of control sequences (docker quotes the engine's errors)."""
    text = text.strip()
    return clean_lines(text if len(text) <= limit else "..." + text[-limit:], limit + 200)


class Executor:
    """Runs one plan once. `on_update(run)` is called (from the running thread) at every change of a step."""

    def __init__(
        self,
        config: Config,
        plan: Plan,
        *,
        audit: AuditLog | None = None,
        on_update: Callable[[StepRun], None] | None = None,
        docker_bin: str | None = None,
        wait_timeout: float = 300.0,
        interval: float = 0.5,
        stop: threading.Event | None = None,
    ) -> None:
        self.config = config
        self.plan = plan
        self.audit = audit if audit is not None else AuditLog(config.deploy.audit)
        self.on_update = on_update
        self.docker_bin = docker_bin or docker_binary()
        self.wait_timeout = wait_timeout
        self.interval = interval
        self.stop = stop or threading.Event()
        self.action_id = uuid.uuid4().hex[:12]
        self.runs = [StepRun(i, s) for i, s in enumerate(plan.steps)]
        self._collectors: dict[str, Any] = {}
        self._cancel = threading.Event()  #: set on Ctrl-C: a step still running in its helper thread gives up
        self._proc: subprocess.Popen | None = None  #: the command a step is running, killed on Ctrl-C
        self._ended: dict[str, frozenset[str]] = {}  #: service id -> its tasks that had ended before a scale/rollback

    # -- plumbing -----------------------------------------------------------------

    def _notify(self, run: StepRun) -> None:
        if self.on_update is not None:
            try:
                self.on_update(run)
            except Exception:  # a broken progress view must not break the action
                pass

    def _collector(self, site: str):
        from ..collectors.swarm import SwarmCollector

        if site not in self._collectors:
            self._collectors[site] = SwarmCollector(self.config.site(site), self.config.timeout, self.config.health,
                                                    max_bytes=self.config.max_bytes)
        return self._collectors[site]

    def _client(self, site: str):
        return self._collector(site).client(max(self.config.timeout, 30.0))

    def _live_argv(self, step: Step) -> tuple[tuple[str, ...], str]:
        """The step's docker command aimed at the site's manager that answers now, through its ssh tunnel if
        it has one (the docker CLI's own ssh:// would need docker on the remote host and ignore `socket`);
        and a note naming that manager when it is not the plain URL of the plan."""
        argv = step.argv
        if not step.site or len(argv) < 3 or argv[0] != "docker" or argv[1] != "--host":
            return argv, ""
        site = self.config.site(step.site)
        if argv[2] == site.docker and not site.docker.startswith("ssh://") and len(site.endpoints) == 1:
            return argv, ""
        end = 3
        while end < len(argv) and argv[end].startswith("--tls"):
            end += 1
        collector = self._collector(step.site)
        try:
            host = collector.cli_host(max(self.config.timeout, 30.0))
        except OSError as exc:  # the tunnel is down: its reason, in one line
            raise StepFailed(f"cannot reach {step.site}'s manager: {exc}") from None
        manager = collector.endpoints[collector.current].url
        via = f"via {redact_url(manager)}" + (" (ssh tunnel)" if manager.startswith("ssh://") else "")
        return ("docker", *host, *argv[end:]), via

    def _close(self) -> None:
        for collector in self._collectors.values():
            try:
                collector.close()
            except Exception:
                pass
        self._collectors.clear()

    def _command(self, argv: tuple[str, ...], cwd: str | None = None, timeout: float = 600.0) -> str:
        args = [self.docker_bin if argv[0] == "docker" else argv[0], *argv[1:]]
        env = dict(os.environ, DOCKER_CLI_HINTS="false")
        try:
            proc = subprocess.Popen(
                args, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env, cwd=cwd,
                stdin=subprocess.DEVNULL,
            )
        except FileNotFoundError:
            raise StepFailed(f"{args[0]} not found") from None
        self._proc = proc
        try:
            stdout, stderr = proc.communicate(timeout=timeout)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.communicate()
            raise StepFailed(f"{argv[0]} timed out after {timeout:g}s") from None
        finally:
            self._proc = None
        output = _tail(stdout + ("\n" if stdout and stderr else "") + stderr)
        if proc.returncode != 0:
            raise StepFailed(f"exit {proc.returncode}: {output or '(no output)'}")
        return output

    # -- the steps -------------------------------------------------------------------

    def _watch(self) -> Watch:
        deploy = self.config.deploy
        return Watch(deploy.monitor, deploy.max_task_failures)

    def _wait(self, run: StepRun, check: Callable[[], tuple[bool, str]], what: str) -> str:
        deadline = time.monotonic() + self.wait_timeout
        while True:
            try:
                done, note = check()
            except NotConverging as exc:
                raise StepFailed(str(exc)) from None
            if note != run.note:
                run.note = note
                self._notify(run)
            if done:
                return note
            if time.monotonic() > deadline:
                raise StepFailed(f"gave up after {self.wait_timeout:g}s waiting for {what}: {note}")
            if self.stop.wait(self.interval):
                raise StepStopped(f"stopped while waiting for {what}: {note}")
            if self._cancel.is_set():
                raise StepFailed("cancelled")

    def _gone(self, site: str, stack: str) -> tuple[bool, str]:
        client = self._client(site)
        label = {"label": f"{STACK_LABEL}={stack}"}
        counts = (len(client.services(filters=label)), len(client.tasks(filters=label)), len(client.networks(filters=label)))
        if not any(counts):
            return True, "gone"
        return False, "left: {} service(s), {} task(s), {} network(s)".format(*counts)

    def _running(self, site: str, stack: str, file: str, watch: Watch) -> tuple[bool, str]:
        try:
            expected = parse_compose(Path(file))
        except ValueError as exc:
            raise StepFailed(f"{file}: {exc}") from None
        client = self._client(site)
        services = client.services(filters={"label": f"{STACK_LABEL}={stack}"}, status=True)
        found = {}
        for svc in services:
            name = (svc.get("Spec") or {}).get("Name", "")
            found[name[len(stack) + 1 :] if name.startswith(stack + "_") else name] = svc
        ids = [svc["ID"] for short, svc in found.items() if short in expected and svc.get("ID")]
        tasks: dict[str, list[dict[str, Any]]] = {service_id: [] for service_id in ids}
        if ids:
            for task in client.tasks(filters={"service": ids}):
                tasks.setdefault(task.get("ServiceID", ""), []).append(task)
        counts, missing = [], []
        for short, replicas in expected.items():
            svc = found.get(short)
            if svc is None:
                missing.append(f"{stack}_{short}")
                continue
            status = svc.get("ServiceStatus") or {}
            desired = int(status.get("DesiredTasks", 0))
            replicated = "Replicated" in ((svc.get("Spec") or {}).get("Mode") or {})
            needed = max(desired, replicas if replicated else min(replicas, 1))
            counts.append(watch.observe(svc, tasks.get(svc.get("ID", ""), []), needed))
        return watch.verdict(counts, prefix=stack + "_", missing=missing)

    def _run_step(self, run: StepRun) -> str:
        step = run.step
        if step.kind == PULL:
            assert step.repo and step.commit
            try:
                return gitrepo.fast_forward(step.repo, step.commit)
            except gitrepo.GitError as exc:
                raise StepFailed(str(exc)) from None
        if step.kind == ANNOUNCE:
            assert step.url and step.payload is not None
            try:
                return announce.post(step.url, step.payload)
            except announce.AnnounceError as exc:
                raise StepFailed(str(exc)) from None
        if step.kind == REMOVE:
            argv, via = self._live_argv(step)
            return " ".join(p for p in (via, self._command(argv) or "removed") if p)
        if step.kind == WAIT_GONE:
            assert step.site and step.stack
            return self._wait(run, lambda: self._gone(step.site, step.stack), f"{step.stack} to be gone")
        if step.kind == DEPLOY:
            assert step.file
            if step.repo and step.commit:
                try:
                    now = gitrepo.head(step.repo)
                    changes = gitrepo.dirty(step.repo)
                except gitrepo.GitError as exc:
                    raise StepFailed(str(exc)) from None
                if now != step.commit:
                    raise StepFailed(
                        f"{step.repo} is at {now[:12]}, not at {step.commit[:12]} as planned: make a fresh plan"
                    )
                if changes:
                    raise StepFailed(f"{step.repo} has uncommitted changes since the plan: {', '.join(changes[:3])}")
            argv, via = self._live_argv(step)
            return " ".join(p for p in (via, self._command(argv, cwd=str(Path(step.file).parent)) or "deployed") if p)
        if step.kind == WAIT_RUNNING:
            assert step.site and step.stack and step.file
            watch = self._watch()
            return self._wait(run, lambda: self._running(step.site, step.stack, step.file, watch),
                              f"{step.stack} to run")
        if step.kind == RESTART:
            assert step.site and step.service_id
            try:
                force = restart.force_update(self._client(step.site), step.service_id, step.service)
            except restart.RestartError as exc:
                raise StepFailed(str(exc)) from None
            return f"ForceUpdate is now {force}"
        if step.kind == WAIT_CONVERGED:
            assert step.site and step.service_id
            watch = self._watch()

            def check() -> tuple[bool, str]:
                try:
                    return restart.convergence(self._client(step.site), step.service_id, step.service, watch)
                except restart.RestartError as exc:
                    raise StepFailed(str(exc)) from None

            return self._wait(run, check, f"{step.service} to converge")
        if step.kind in (SCALE, ROLLBACK):
            assert step.site and step.service_id
            client = self._client(step.site)
            self._ended[step.service_id] = service_ops.ended_tasks(client, step.service_id)
            try:
                if step.kind == SCALE:
                    assert step.replicas is not None
                    before = service_ops.scale(client, step.service_id, step.service, step.replicas)
                    return f"replicas {before} -> {step.replicas}"
                service_ops.rollback(client, step.service_id, step.service)
            except restart.RestartError as exc:
                raise StepFailed(str(exc)) from None
            return "rolling back to the previous spec"
        if step.kind in (WAIT_SCALED, WAIT_ROLLED_BACK):
            assert step.site and step.service_id
            watch = self._watch()
            ignore = self._ended.get(step.service_id, frozenset())

            def settled() -> tuple[bool, str]:
                try:
                    return service_ops.convergence(self._client(step.site), step.service_id, step.service, watch,
                                                   ignore, rolling_back=step.kind == WAIT_ROLLED_BACK)
                except restart.RestartError as exc:
                    raise StepFailed(str(exc)) from None

            return self._wait(run, settled, f"{step.service} to converge")
        raise StepFailed(f"unknown step kind {step.kind!r}")

    # -- the run -----------------------------------------------------------------------

    def run(self) -> RunResult:
        """Run every step in order; stop at the first failure. Never raises for a failed step."""
        user, host = who()
        plan = self.plan
        self.audit.append(
            {
                "event": START,
                "id": self.action_id,
                "user": user,
                "host": host,
                "pid": os.getpid(),
                "action": plan.action,
                "site": plan.site,
                "target": plan.target,
                "title": plan.title + (" (resumed)" if plan.resumed_from is not None else ""),
                "core": plan.core,
                "snapshot_at": plan.snapshot_at,
                "resumed_from": plan.resumed_from,
                "plan": [s.command for s in plan.steps],
                "commits": {f"{stack}@{site}": commit for site, stack, commit in plan.commits},
            }
        )
        failed_index: int | None = None
        outcome = "done"
        done = 0
        interrupted = False
        stopped_at: int | None = None  #: 1-based step where Stop took effect (during it, or before it ran)
        try:
            for run in self.runs:
                if self.stop.is_set():
                    outcome, stopped_at = STOPPED, run.index + 1
                    break
                run.status, run.started = RUNNING, time.time()
                self._notify(run)
                try:
                    note = self._step_in_helper(run)
                    run.status, run.note = DONE, note or run.note
                except StepStopped as exc:
                    run.status, run.error = STOPPED, str(exc)
                except StepFailed as exc:
                    run.status, run.error = FAILED, str(exc)
                except Exception as exc:  # an engine or OS error is a failed step, not a crash
                    from ..collectors.swarm import describe_error

                    run.status, run.error = FAILED, describe_error(exc)
                run.ended = time.time()
                self._audit_step(run)
                self._notify(run)
                if run.status == STOPPED:
                    failed_index, outcome, stopped_at = run.index, STOPPED, run.index + 1
                    break
                if run.status == FAILED:
                    failed_index, outcome = run.index, "failed"
                    break
                done += 1
        except KeyboardInterrupt:
            # Ctrl-C (SIGINT reaches the step's command too): the step may be half done, so this run
            # offers no resume point; running the redeploy again converges.
            interrupted, outcome = True, INTERRUPTED
            self._abandon_step()
            cut = next((run for run in self.runs if run.status == RUNNING), None)
            if cut is not None:
                cut.status, cut.error, cut.ended = INTERRUPTED, "interrupted (Ctrl-C)", time.time()
                failed_index = cut.index
                self._audit_step(cut)
                self._notify(cut)
        finally:
            self._close()
        how = "was interrupted" if interrupted else ("was stopped" if outcome == STOPPED else "failed")
        states = left_states(plan, done, failed_index, how)
        resume_index = failed_index if failed_index is not None else (done if done < len(plan.steps) else None)
        resume = plan.steps[resume_index] if resume_index is not None and not interrupted else None
        reason = self.runs[failed_index].error if failed_index is not None else None
        if outcome == STOPPED and reason is None and stopped_at is not None:
            reason = f"stopped before step {stopped_at} ({plan.steps[stopped_at - 1].title})"
        self.audit.append(
            {
                "event": OUTCOME,
                "id": self.action_id,
                "action": plan.action,
                "site": plan.site,
                "target": plan.target,
                "outcome": outcome,
                "failed_step": failed_index + 1 if failed_index is not None and outcome != STOPPED else None,
                "stopped_step": stopped_at,
                "resume_key": list(resume.key) if resume else None,
                "resume_title": resume.title if resume else None,
                "reason": reason,
                "states": states if outcome != "done" else {},
            }
        )
        result = RunResult(self.action_id, plan, self.runs, outcome, failed_index, states)
        if interrupted:
            raise Interrupted(result)
        return result

    def _step_in_helper(self, run: StepRun) -> str:
        """Run a step; from the main thread, in a helper thread so that Ctrl-C ends the run at once.

        A blocking call (an HTTP POST, a socket read, a command) can keep the main thread from seeing SIGINT
        until it returns; the main thread here only waits, in short slices, so KeyboardInterrupt is raised
        within INTERRUPT_POLL whatever the step is doing. The helper is a daemon thread: it is abandoned.
        """
        if threading.current_thread() is not threading.main_thread():
            return self._run_step(run)  # e.g. the dashboard's worker: no Ctrl-C here, Stop is an event
        outcome: dict[str, Any] = {}

        def helper() -> None:
            try:
                outcome["note"] = self._run_step(run)
            except BaseException as exc:  # handed to the main thread below
                outcome["error"] = exc

        thread = threading.Thread(target=helper, name=f"step {run.index + 1}", daemon=True)
        thread.start()
        while thread.is_alive():
            thread.join(INTERRUPT_POLL)
        if "error" in outcome:
            raise outcome["error"]
        return outcome["note"]

    def _abandon_step(self) -> None:
        """After Ctrl-C: tell a step still running in its helper to give up, and end the command it runs."""
        self._cancel.set()
        proc = self._proc
        if proc is not None:
            try:
                proc.kill()
            except OSError:
                pass

    def _audit_step(self, run: StepRun) -> None:
        self.audit.append(
            {
                "event": STEP,
                "id": self.action_id,
                "number": run.index + 1,
                "kind": run.step.kind,
                "site": run.step.site,
                "stack": run.step.stack,
                "command": run.step.command,
                "commit": run.step.commit,
                "status": run.status,
                "started": run.started,
                "duration_s": round((run.ended or time.time()) - (run.started or time.time()), 3),
                "output": run.note,
                "error": run.error,
            }
        )


def run_plan(config: Config, plan: Plan, **kwargs: Any) -> RunResult:
    """Take the action lock (raises LockHeld), run the plan, release the lock."""
    if not plan.ok:
        raise ValueError(f"refused plan cannot run: {plan.refusal}")
    with ActionLock(lock_path(config), plan.title):
        return Executor(config, plan, **kwargs).run()


def audit_refusal(config: Config, plan: Plan, reason: str, audit: AuditLog | None = None) -> None:
    """Record an action that was asked for and refused (plan refused, lock held).

    Read-only mode is not audited: there, actions are not offered at all, so nothing was refused by a guard.
    """
    user, host = who()
    (audit or AuditLog(config.deploy.audit)).append(
        {
            "event": OUTCOME,
            "id": uuid.uuid4().hex[:12],
            "user": user,
            "host": host,
            "pid": os.getpid(),
            "action": plan.action,
            "site": plan.site,
            "target": plan.target,
            "title": plan.title,
            "outcome": "refused",
            "reason": reason,
            "plan": [s.command for s in plan.steps],
        }
    )


def last_failure(config: Config, action: str, site: str, target: str) -> dict[str, Any] | None:
    """Where --resume starts: the outcome record of the latest run of this request, when it failed or stopped.

    None when the latest run succeeded (or there was none). Raises CannotResume when the latest run was
    interrupted: Ctrl-C, or killed or crashed with no outcome recorded at all.
    """
    from .audit import read

    records = read(config.deploy.audit)
    starts = [
        r
        for r in records
        if r.get("event") == START and r.get("action") == action and r.get("site") == site and r.get("target") == target
    ]
    if not starts:
        return None
    latest = starts[-1]
    mine = [r for r in records if r.get("id") == latest.get("id") and r is not latest]
    outcome = next((r for r in mine if r.get("event") == OUTCOME), None)
    if outcome is None or outcome.get("outcome") == INTERRUPTED:
        if outcome is not None and outcome.get("failed_step"):
            number = int(outcome["failed_step"])
        else:  # steps are audited as they end: the first one without a record was running
            number = sum(1 for r in mine if r.get("event") == STEP and r.get("status") == DONE) + 1
        plan = latest.get("plan") or []
        step = f" ({plan[number - 1]})" if 0 < number <= len(plan) else ""
        how = "interrupted" if outcome is not None else "interrupted (no outcome recorded: killed or crashed)"
        raise CannotResume(
            f"the last run of this {action} was {how} at step {number}{step}; "
            f"run it again without --resume, which converges"
        )
    if outcome.get("outcome") in ("failed", "stopped") and outcome.get("resume_key"):
        return outcome
    return None
