"""The pure planner: (config, snapshot the operator saw, request, repo states) -> a Plan or a refusal.

Nothing here touches a process, a socket or a file: every input is gathered first
(`dtmon.collectors.poll.snapshot`, `dtmon.actions.gitrepo.gather`), so the plan the operator
confirms is exactly the plan that runs.
"""

from __future__ import annotations

import json
import shlex
from collections.abc import Mapping
from dataclasses import dataclass, replace
from datetime import datetime
from pathlib import Path

from ..config import Config, SiteConfig
from ..model import MISSING, UPDATING, ServiceStatus, SiteStatus, Snapshot
from ..redact import webhook_url
from ..sanitize import clean

STACK_LABEL = "com.docker.stack.namespace"

# Step kinds.
PULL = "pull"  #: fast-forward a compose repo to the upstream commit seen by the planner
ANNOUNCE = "announce"  #: POST the downtime announcement
REMOVE = "remove"  #: docker stack rm
WAIT_GONE = "wait-gone"  #: until services, tasks and networks of the stack are gone
DEPLOY = "deploy"  #: docker stack deploy --with-registry-auth
WAIT_RUNNING = "wait-running"  #: until every service of the stack runs its desired replicas, steadily
RESTART = "restart"  #: rolling restart (ForceUpdate + 1), like `docker service update --force`
WAIT_CONVERGED = "wait-converged"  #: until every replica of the new spec runs, or the update failed
SCALE = "scale"  #: set a replicated service's replicas, like `docker service scale`
ROLLBACK = "rollback"  #: back to the engine's previous spec, like `docker service rollback`
WAIT_SCALED = "wait-scaled"  #: as wait-converged, after a scale (failures from before it do not count)
WAIT_ROLLED_BACK = "wait-rolled-back"  #: as wait-converged, after a rollback (its rollback states are progress)

REDEPLOY = "redeploy"
RESTART_ACTION = "restart"
SCALE_ACTION = "scale"
ROLLBACK_ACTION = "rollback"


@dataclass(frozen=True)
class RepoState:
    """What git says about the repository holding one compose file (after `git fetch`)."""

    file: Path  #: the compose file
    root: Path | None = None  #: the repository's top level
    branch: str | None = None
    upstream: str | None = None  #: e.g. origin/main
    head: str | None = None  #: commit checked out
    upstream_head: str | None = None  #: commit of the upstream after fetching
    ahead: int = 0  #: local commits not on the upstream
    behind: int = 0  #: upstream commits not checked out
    dirty: tuple[str, ...] = ()  #: `git status --porcelain` lines of uncommitted tracked changes
    tracked: bool = True  #: the compose file itself is committed
    error: str | None = None  #: why the state could not be read (not a repo, fetch failed, ...)

    def problem(self) -> str | None:
        """Why a deploy from this repo must be refused, or None."""
        where = str(self.root or self.file.parent)
        if self.error:
            return f"{self.file}: {self.error}"
        if not self.tracked:
            return f"{self.file} is not committed in {where}"
        if self.dirty:
            shown = ", ".join(line.strip() for line in self.dirty[:3]) + (" ..." if len(self.dirty) > 3 else "")
            return f"{where} has uncommitted changes ({shown})"
        if self.branch is None:
            return f"{where} is not on a branch (detached HEAD)"
        if self.upstream is None:
            return f"{where}: branch {self.branch} has no upstream to compare with"
        if self.ahead and self.behind:
            return (
                f"{where} has diverged from {self.upstream} "
                f"({self.ahead} local commit(s) not upstream, {self.behind} upstream commit(s) not here)"
            )
        return None

    @property
    def deploy_commit(self) -> str | None:
        """The commit a deploy will use: the upstream's when a fast-forward is due, else HEAD."""
        return self.upstream_head if self.behind else self.head


@dataclass(frozen=True)
class Step:
    """One step of a plan, with the exact command it amounts to."""

    kind: str
    title: str  #: for people, e.g. "remove datatrail-client at kko"
    command: str  #: what the operator confirms: the shell command, or what is waited for
    site: str | None = None
    stack: str | None = None
    argv: tuple[str, ...] = ()  #: the command run (pull, remove, deploy); argv[0] "docker" means the docker CLI
    file: str | None = None  #: compose file (deploy, wait-running)
    repo: str | None = None  #: repository root (pull, deploy)
    commit: str | None = None  #: commit deployed from, or pulled to
    service: str | None = None  #: swarm service name (restart)
    service_id: str | None = None  #: the service id the operator saw (restart)
    payload: str | None = None  #: JSON body (announce)
    url: str | None = None  #: webhook (announce)
    replicas: int | None = None  #: the replicas asked for (scale)

    @property
    def key(self) -> tuple[str, str | None, str | None, str | None]:
        """Identity across re-plans (used to resume): kind, site, stack, and the repo pulled or service restarted."""
        return (self.kind, self.site, self.stack, self.repo if self.kind == PULL else self.service)


@dataclass(frozen=True)
class Plan:
    """An ordered list of steps for one request, or the reason it is refused."""

    action: str  #: redeploy or restart
    site: str
    target: str  #: stack or service name
    steps: tuple[Step, ...] = ()
    refusal: str | None = None
    notes: tuple[str, ...] = ()
    commits: tuple[tuple[str, str, str], ...] = ()  #: (site, stack, commit) each deploy uses
    core: bool = False  #: a core redeploy: needs the stack name typed to confirm
    snapshot_at: datetime | None = None  #: when the snapshot this plan acts on was taken
    resumed_from: int | None = None  #: index in the full plan this one resumes at
    replicas: int | None = None  #: the replicas asked for (scale)

    @property
    def ok(self) -> bool:
        return self.refusal is None

    @property
    def title(self) -> str:
        if self.action == RESTART_ACTION:
            return f"restart {self.target} at {self.site}"
        if self.action == SCALE_ACTION:
            return f"scale {self.target} at {self.site} to {self.replicas}"
        if self.action == ROLLBACK_ACTION:
            return f"roll back {self.target} at {self.site}"
        return f"redeploy {self.target} at {self.site}" + (" (core: every datatrail stack goes down)" if self.core else "")

    def text(self, title: bool = True, steps_first: bool = False) -> str:
        """The plan as shown to the operator: the CLI's order, or refusal and steps first (the confirm dialog)."""
        snapshot = []
        if self.snapshot_at is not None:
            when = self.snapshot_at.astimezone().strftime("%Y-%m-%d %H:%M:%S %Z")
            snapshot.append(f"  acting on the snapshot of {when}")
        refusal = [f"REFUSED: {self.refusal}"] if self.refusal else []
        notes = [f"  note: {note}" for note in self.notes]
        if self.commits:
            notes.append("  deploys from:")
            notes += [f"    {stack} at {site}: {commit[:12]}" for site, stack, commit in self.commits]
        steps = []
        if self.steps:
            steps.append("  steps:")
            width = len(str(len(self.steps)))
            for index, step in enumerate(self.steps, 1):
                steps.append(f"    {index:>{width}}. {step.command}")
        lines = [self.title] if title else []
        if steps_first:  # the dialog says "N steps" above them
            lines += refusal + steps[1:] + snapshot + notes
        else:
            lines += snapshot + refusal + notes + steps
        return "\n".join(clean(line, 4000) for line in lines)  # names and reasons may quote servers


# ---------------------------------------------------------------------------
# Commands.
# ---------------------------------------------------------------------------


def docker_argv(site: SiteConfig) -> list[str]:
    """`docker --host URL` plus TLS flags for this site's manager."""
    argv = ["docker", "--host", site.docker]
    if site.tls is not None:
        tls = site.tls
        argv.append("--tlsverify" if tls.verify else "--tls")
        if tls.ca:
            argv.append(f"--tlscacert={tls.ca}")
        if tls.cert:
            argv.append(f"--tlscert={tls.cert}")
        if tls.key:
            argv.append(f"--tlskey={tls.key}")
    return argv


def _remove(site: SiteConfig, stack: str) -> Step:
    argv = (*docker_argv(site), "stack", "rm", stack)
    return Step(REMOVE, f"remove {stack} at {site.name}", shlex.join(argv), site.name, stack, argv)


def _wait_gone(site: SiteConfig, stack: str) -> Step:
    return Step(
        WAIT_GONE,
        f"wait until {stack} is gone at {site.name}",
        f"wait until services, tasks and networks labelled {STACK_LABEL}={stack} are gone at {site.name}",
        site.name,
        stack,
    )


def _deploy(site: SiteConfig, stack: str, repo: RepoState) -> Step:
    file = site.stacks[stack]
    argv = (*docker_argv(site), "stack", "deploy", "-c", str(file), stack, "--with-registry-auth")
    commit = repo.deploy_commit
    return Step(
        DEPLOY,
        f"deploy {stack} at {site.name}",
        shlex.join(argv) + (f"  # from {commit[:12]}" if commit else ""),
        site.name,
        stack,
        argv,
        file=str(file),
        repo=str(repo.root) if repo.root else None,
        commit=commit,
    )


def _wait_running(site: SiteConfig, stack: str, monitor: float) -> Step:
    return Step(
        WAIT_RUNNING,
        f"wait until {stack} runs at {site.name}",
        f"wait until every service of {stack} runs its desired replicas at {site.name}"
        f" for {monitor:g}s with no task failing",
        site.name,
        stack,
        file=str(site.stacks[stack]),
    )


def _pull(repo: RepoState) -> Step:
    assert repo.root is not None and repo.upstream_head is not None
    argv = ("git", "-C", str(repo.root), "merge", "--ff-only", repo.upstream_head)
    return Step(
        PULL,
        f"fast-forward {repo.root} to {repo.upstream}",
        shlex.join(argv) + f"  # fast-forward pull: {repo.behind} commit(s) from {repo.upstream}",
        argv=argv,
        repo=str(repo.root),
        commit=repo.upstream_head,
    )


def _status(snapshot: Snapshot, name: str) -> SiteStatus | None:
    try:
        return snapshot.site(name)
    except KeyError:
        return None


def _unreachable(snapshot: Snapshot, name: str) -> str | None:
    """Why `name` cannot be acted on per the snapshot, or None when it answered."""
    status = _status(snapshot, name)
    if status is None:
        return f"site {name} is not in the snapshot"
    if not status.reachable:
        return f"site {name} is unreachable ({status.error or 'no answer'})"
    return None


def _deployed(snapshot: Snapshot, site: str, stack: str) -> bool:
    status = _status(snapshot, site)
    if status is None:
        return False
    for s in status.stacks:
        if s.name == stack:
            return s.deployed  # any service deployed: a stack missing one compose service is still deployed
    return False


# ---------------------------------------------------------------------------
# Planners.
# ---------------------------------------------------------------------------


def plan_redeploy(
    config: Config,
    snapshot: Snapshot,
    site: str,
    stack: str,
    repos: Mapping[Path, RepoState],
    who: str = "",
) -> Plan:
    """The steps that redeploy `stack` at `site` by the rules of the operations page, or a refusal."""
    deploy = config.deploy
    base = Plan(REDEPLOY, site, stack, core=(stack == deploy.core), snapshot_at=snapshot.generated_at)
    try:
        site_cfg = config.site(site)
    except KeyError:
        return replace(base, refusal=f"unknown site {site!r} (configured: {', '.join(s.name for s in config.sites)})")
    if stack not in site_cfg.stacks:
        carried = ", ".join(site_cfg.stacks) or "none"
        return replace(base, refusal=f"site {site} does not carry stack {stack!r} (it carries: {carried})")

    removals: list[tuple[SiteConfig, str]] = []
    deploys: list[tuple[SiteConfig, str]] = []
    notes: list[str] = []
    if stack == deploy.core:
        dependents = [s for s in deploy.order if s != deploy.core]
        problems = []
        for other in config.sites:
            carried = [s for s in dependents if s in other.stacks]
            if carried and (why := _unreachable(snapshot, other.name)):
                problems.append(f"{why}; it carries {', '.join(carried)}")
        if why := _unreachable(snapshot, site):
            problems.insert(0, why)
        if problems:
            return replace(
                base, refusal="cannot verify that every dependent stack is down: " + "; ".join(problems)
            )
        for dependent in reversed(dependents):
            for other in config.sites:
                if dependent in other.stacks:
                    removals.append((other, dependent))
        for name in deploy.order:
            if name == deploy.core:
                deploys.append((site_cfg, name))
            else:
                deploys.extend((other, name) for other in config.sites if name in other.stacks)
        notes.append(
            f"{stack} is a core utility of the CHIME telescope: its downtime must be announced to the collaboration"
        )
        if deploy.announce:
            notes.append(f"the announcement is POSTed to {webhook_url(deploy.announce)} before the first removal")
        else:
            notes.append("no announce webhook is configured: tell the collaboration yourself before confirming")
    else:
        if why := _unreachable(snapshot, site):
            return replace(base, refusal=why)
        deploys.append((site_cfg, stack))

    # Git: every compose file deployed must come from a clean repo that is not behind or diverged.
    problems = []
    pulls: dict[Path, RepoState] = {}
    used: dict[tuple[str, str], RepoState] = {}
    for target_site, name in deploys:
        file = target_site.stacks[name]
        repo = repos.get(file)
        if repo is None:
            problems.append(f"{file}: the repository state was not gathered")
            continue
        if problem := repo.problem():
            problems.append(problem)
            continue
        used[(target_site.name, name)] = repo
        if repo.behind and repo.root is not None:
            pulls.setdefault(repo.root, repo)
        if repo.ahead:
            notes.append(f"{repo.root}: {repo.ahead} local commit(s) are not on {repo.upstream}")
    if problems:
        return replace(base, refusal="; ".join(dict.fromkeys(problems)), notes=tuple(notes))

    pull_steps = [_pull(repo) for repo in pulls.values()]
    steps: list[Step] = []
    if base.core:
        # Reverse deploy order, one stack at a time: removed at every site and gone everywhere before the next.
        for name in dict.fromkeys(n for _, n in removals):
            carriers = [s for s, n in removals if n == name]
            steps += [_remove(s, name) for s in carriers]
            steps += [_wait_gone(s, name) for s in carriers]
    steps += [_remove(site_cfg, stack), _wait_gone(site_cfg, stack)]
    for target_site, name in deploys:
        steps += [_deploy(target_site, name, used[(target_site.name, name)]),
                  _wait_running(target_site, name, deploy.monitor)]
    if base.core and deploy.announce:
        down = [(s.name, n) for s, n in removals] + [(site, stack)]
        payload = announcement(site, stack, down, who, [s.command for s in pull_steps + steps])
        steps.insert(
            0,
            Step(
                ANNOUNCE,
                "announce the downtime",
                f"POST {webhook_url(deploy.announce)}  # {payload['text']}",  # the token stays in `url`
                site,
                stack,
                payload=json.dumps(payload, sort_keys=True),
                url=deploy.announce,
            ),
        )
    steps = pull_steps + steps

    for target_site, name in removals + [(site_cfg, stack)]:
        if not _deployed(snapshot, target_site.name, name):
            notes.append(f"{name} at {target_site.name} is not deployed now: removing it changes nothing")
    commits = tuple(
        (s.name, n, used[(s.name, n)].deploy_commit or "") for s, n in deploys if used[(s.name, n)].deploy_commit
    )
    return replace(base, steps=tuple(steps), notes=tuple(notes), commits=commits)


def announcement(site: str, stack: str, down: list[tuple[str, str]], who: str, steps: list[str]) -> dict:
    """The JSON announcing core downtime: site, the stacks going down, who, and the steps expected."""
    names = ", ".join(f"{name}@{where}" for where, name in down)
    return {
        "text": f"{who or 'someone'} is redeploying {stack} at {site}: {names} go down ({len(steps)} steps follow)",
        "site": site,
        "stack": stack,
        "stacks": [{"site": where, "stack": name} for where, name in down],
        "who": who,
        "steps": steps,
    }


def find_service(status: SiteStatus, service: str) -> ServiceStatus | None:
    """A service by swarm name (stack_service), or by short name when exactly one stack has it."""
    exact = [s for s in status.services if s.name == service]
    if exact:
        return exact[0]
    short = [s for s in status.services if s.service == service]
    return short[0] if len(short) == 1 else None


def plan_restart(config: Config, snapshot: Snapshot, site: str, service: str) -> Plan:
    """A rolling restart of one service (ForceUpdate + 1, as `docker service update --force`), or a refusal."""
    base = Plan(RESTART_ACTION, site, service, snapshot_at=snapshot.generated_at)
    try:
        site_cfg = config.site(site)
    except KeyError:
        return replace(base, refusal=f"unknown site {site!r} (configured: {', '.join(s.name for s in config.sites)})")
    if why := _unreachable(snapshot, site):
        return replace(base, refusal=why)
    found = find_service(snapshot.site(site), service)
    if found is None:
        return replace(base, refusal=f"no watched service {service!r} at {site}")
    same = [s for s in snapshot.site(site).services if s.name == found.name and s.id is not None]
    if len(same) > 1:  # two services answer to one name: which one the operator meant is not known
        return replace(base, target=found.name,
                       refusal=f"{len(same)} services at {site} are named {found.name}: restart one with docker")
    base = replace(base, target=found.name)
    if found.id is None or found.state == MISSING:
        return replace(base, refusal=f"{found.name} is not deployed at {site}")
    if found.state == UPDATING and not found.update_paused:  # a paused update is what --force gets out of
        return replace(base, refusal=f"{found.name} is already updating ({found.update_message or 'update in progress'})")
    argv = (*docker_argv(site_cfg), "service", "update", "--force", found.name)
    steps = (
        Step(
            RESTART,
            f"restart {found.name} at {site}",
            shlex.join(argv) + "  # through the Engine API: ForceUpdate + 1",
            site,
            found.stack,
            argv,
            service=found.name,
            service_id=found.id,
        ),
        Step(
            WAIT_CONVERGED,
            f"wait until {found.name} has converged at {site}",
            f"wait until every replica of the new {found.name} spec runs for {config.deploy.monitor:g}s with no task "
            "failing, or the update fails",
            site,
            found.stack,
            service=found.name,
            service_id=found.id,
        ),
    )
    return replace(base, steps=steps)


def resume_plan(full: Plan, key: tuple) -> Plan:
    """`full` (a fresh plan of the same request) from the step whose key is `key`; its pull steps stay first.

    Returns a refusal when the fresh plan is refused or no longer has such a step.
    """
    if not full.ok:
        return full
    keys = [s.key for s in full.steps]
    key = tuple(key)
    if key not in keys:
        what = " ".join(str(k) for k in key if k)
        return replace(full, steps=(), refusal=f"the fresh plan has no step '{what}' to resume from")
    index = keys.index(key)
    pulls = tuple(s for s in full.steps[:index] if s.kind == PULL)
    return replace(full, steps=pulls + full.steps[index:], resumed_from=index)


def stacks_touched(plan: Plan) -> list[tuple[str, str]]:
    """(site, stack) pairs the plan acts on, in first-touched order."""
    seen: dict[tuple[str, str], None] = {}
    for step in plan.steps:
        if step.site and step.stack and step.kind not in (ANNOUNCE,):
            seen.setdefault((step.site, step.stack), None)
    return list(seen)


_LEFT = {
    REMOVE: "being removed (stack rm done, not yet confirmed gone)",
    WAIT_GONE: "removed",
    DEPLOY: "deployed, not yet confirmed running",
    WAIT_RUNNING: "running",
    RESTART: "restarting",
    WAIT_CONVERGED: "restarted and converged",
    SCALE: "scaled, not yet confirmed running",
    WAIT_SCALED: "scaled and converged",
    ROLLBACK: "rolling back, not yet confirmed running",
    WAIT_ROLLED_BACK: "rolled back and converged",
}


def left_states(plan: Plan, done: int, failed: int | None, how: str = "failed") -> dict[str, str]:
    """What state each stack is left in when steps [0, done) succeeded and step `failed` (if any) `how`."""
    states: dict[str, str] = {}
    for site, stack in stacks_touched(plan):
        states[f"{stack}@{site}"] = "untouched (as it was)"
    for index, step in enumerate(plan.steps[:done]):
        if step.site and step.stack and step.kind in _LEFT:
            text = _LEFT[step.kind]
            if step.kind == DEPLOY and step.commit:
                text = f"deployed from {step.commit[:12]}, not yet confirmed running"
            states[f"{step.stack}@{step.site}"] = text
    if failed is not None and failed < len(plan.steps):
        step = plan.steps[failed]
        if step.site and step.stack:
            key = f"{step.stack}@{step.site}"
            states[key] = f"{states.get(key, 'untouched')}; then {step.title} {how}"
    return states


def compose_files(config: Config, site: str, stack: str) -> list[Path]:
    """The compose files a redeploy of `stack` at `site` may deploy (whose repos must be gathered)."""
    try:
        site_cfg = config.site(site)
    except KeyError:
        return []
    if stack != config.deploy.core:
        return [site_cfg.stacks[stack]] if stack in site_cfg.stacks else []
    files = [site_cfg.stacks[stack]] if stack in site_cfg.stacks else []
    for other in config.sites:
        files += [file for name, file in other.stacks.items() if name in config.deploy.order and name != stack]
    return files
