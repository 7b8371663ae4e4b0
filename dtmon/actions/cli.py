"""The action subcommands: `restart`, `scale`, `rollback`, `redeploy`, `plan`, `audit` (same guards, lock and audit as the TUI)."""

from __future__ import annotations

import argparse
import json
import sys
from typing import TYPE_CHECKING, TextIO

from ..config import Config

if TYPE_CHECKING:  # the parser is built on every run (status too): import the planner only to act
    from .plan import Plan

EXIT_OK, EXIT_REFUSED, EXIT_READ_ONLY = 0, 1, 2
EXIT_INTERRUPTED = 130  #: Ctrl-C, as a shell reports SIGINT

READ_ONLY = (
    "dtmon: actions are disabled (read-only mode): set `allow = true` in [deploy] of the config, "
    "or pass --allow-actions"
)


#: --wait-timeout bounds (seconds): a wait of more than a day is no wait; 1e10 overflowed the timers.
WAIT_RANGE = (1.0, 86400.0)


def _wait_seconds(text: str) -> float:
    from ..config_values import seconds

    try:
        return seconds(float(text), WAIT_RANGE)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc).replace("could not convert string to float: ", "not a number: "))


def _count(text: str) -> int:
    from ..config_values import shown

    if not text.isdigit() or len(text) > 9 or not 1 <= int(text) <= 100_000_000:
        raise argparse.ArgumentTypeError(f"expected a whole number from 1 to 100000000, got {shown(text)}")
    return int(text)


def _replicas(text: str) -> int:
    from ..config import MAX_REPLICAS
    from ..config_values import shown

    if not text.isascii() or not text.isdigit() or len(text) > 9 or int(text) > MAX_REPLICAS:
        raise argparse.ArgumentTypeError(f"expected a whole number of replicas from 0 to {MAX_REPLICAS}, got {shown(text)}")
    return int(text)


def add_parsers(sub: argparse._SubParsersAction) -> None:
    """Register restart, redeploy, plan and audit on dtmon's subcommand parser."""

    def common(p: argparse.ArgumentParser) -> None:
        p.add_argument("--config", metavar="PATH", default=argparse.SUPPRESS, help="config file (TOML)")
        p.add_argument("--allow-actions", action="store_true", default=argparse.SUPPRESS,
                       help="enable actions for this run even if the config says read-only")

    restart = sub.add_parser(
        "restart",
        help="rolling restart of one service (like `docker service update --force`)",
        description="Restart one service at one site the way `docker service update --force` does, through the "
        "Engine API, and wait until every replica of the new spec has run for [deploy] monitor seconds (15) with "
        "no failure; a service whose new tasks keep failing fails at once. Refused while it is updating. "
        "Exit 0 when converged, 1 when refused or failed, 2 in read-only mode.",
    )
    restart.add_argument("site")
    restart.add_argument("service", help="swarm name (stack_service) or the short name when unique")
    restart.add_argument("--yes", action="store_true", help="do not ask for confirmation")
    restart.add_argument("--wait-timeout", type=_wait_seconds, default=300.0, metavar="S", help="seconds to wait (300)")
    common(restart)

    scale = sub.add_parser(
        "scale",
        help="set the replicas of one service (like `docker service scale`)",
        description="Scale one replicated service at one site to REPLICAS through the Engine API, as `docker service "
        "scale` does, and wait until every replica runs for [deploy] monitor seconds (15) with no failure; failures "
        "from before the scale do not count. Refused for a global service and while it is updating; warns when its "
        "compose file says another number (the next redeploy puts that back). Exit 0 when converged, 1 when refused "
        "or failed, 2 in read-only mode.",
    )
    scale.add_argument("site")
    scale.add_argument("service", help="swarm name (stack_service) or the short name when unique")
    scale.add_argument("replicas", type=_replicas, help="the number of replicas (0 to 1000000)")
    scale.add_argument("--yes", action="store_true", help="do not ask for confirmation")
    scale.add_argument("--wait-timeout", type=_wait_seconds, default=300.0, metavar="S", help="seconds to wait (300)")
    common(scale)

    rollback = sub.add_parser(
        "rollback",
        help="roll one service back to its previous spec (like `docker service rollback`)",
        description="Roll one service at one site back to the engine's previous spec (its PreviousSpec), as `docker "
        "service rollback` does, and wait until every replica of it runs for [deploy] monitor seconds (15) with no "
        "failure. The plan says what changes: image, replicas, env keys (never their values). Refused when the "
        "service has no previous spec and while it is updating. Exit 0 when converged, 1 when refused or failed, "
        "2 in read-only mode.",
    )
    rollback.add_argument("site")
    rollback.add_argument("service", help="swarm name (stack_service) or the short name when unique")
    rollback.add_argument("--yes", action="store_true", help="do not ask for confirmation")
    rollback.add_argument("--wait-timeout", type=_wait_seconds, default=300.0, metavar="S", help="seconds to wait (300)")
    common(rollback)

    redeploy = sub.add_parser(
        "redeploy",
        help="remove and deploy a stack by the rules of the operations page",
        description="Redeploy STACK at SITE: pull its compose repo when behind, remove, wait until gone, deploy "
        "with --with-registry-auth, wait until every service has run its replicas of the new spec for [deploy] "
        "monitor seconds (15) with no failure. The core stack takes every other stack down at every "
        "site first and needs its name typed to confirm. Exit 0 when done, 1 when refused or failed, 2 in "
        "read-only mode. The docker CLI used is $DTMON_DOCKER, else `docker` on PATH.",
    )
    redeploy.add_argument("site")
    redeploy.add_argument("stack")
    redeploy.add_argument("--dry-run", action="store_true", help="print the plan and exit (as `dtmon plan`)")
    redeploy.add_argument("--yes", action="store_true", help="do not ask for confirmation")
    redeploy.add_argument("--resume", action="store_true",
                          help="continue the last failed run of this redeploy from its failed step (fresh plan); "
                          "refused when the last run was interrupted")
    redeploy.add_argument("--wait-timeout", type=_wait_seconds, default=300.0, metavar="S",
                          help="seconds each wait step may take (300)")
    common(redeploy)

    plan = sub.add_parser(
        "plan",
        help="print the redeploy plan of a stack; exit 0 when it may run, 1 when refused",
        description="Gather the current state (every site, git repos fetched) and print the redeploy plan of "
        "STACK at SITE. Acts on nothing. Exit 0 when the plan may run, 1 when it is refused (with the reason).",
    )
    plan.add_argument("site")
    plan.add_argument("stack")
    common(plan)

    audit = sub.add_parser("audit", help="show the audit log of actions", description="Show the audit log.")
    audit.add_argument("--last", type=_count, metavar="N", help="only the last N actions")
    audit.add_argument("--json", action="store_true", help="print the raw JSON lines")
    audit.add_argument("--config", metavar="PATH", default=argparse.SUPPRESS, help="config file (TOML)")


COMMANDS = ("restart", "scale", "rollback", "redeploy", "plan", "audit")


def allowed(config: Config, args: argparse.Namespace) -> bool:
    return bool(config.deploy.allow or getattr(args, "allow_actions", False))


def gather_redeploy(config: Config, site: str, stack: str) -> Plan:
    """Snapshot every site, fetch the compose repos, then plan (the planner itself is pure)."""
    from ..collectors.poll import snapshot
    from . import gitrepo
    from .lock import who
    from .plan import compose_files, plan_redeploy

    snap = snapshot(config)
    repos = gitrepo.gather(compose_files(config, site, stack))
    user, host = who()
    return plan_redeploy(config, snap, site, stack, repos, who=f"{user}@{host}")


def _confirm(plan: Plan, stdin: TextIO, out: TextIO) -> bool:
    try:
        if plan.core:
            out.write(f"This takes every datatrail stack down. Type the stack name ({plan.target}) to confirm: ")
            out.flush()
            return stdin.readline().strip() == plan.target
        out.write("Proceed? [y/N] ")
        out.flush()
        return stdin.readline().strip().lower() in ("y", "yes")
    except (OSError, KeyboardInterrupt):
        return False


def _progress(out: TextIO):
    from .execute import DONE, FAILED, INTERRUPTED, RUNNING, STOPPED, StepRun

    def show(run: StepRun) -> None:
        if run.status == RUNNING and run.started and not run.note:
            out.write(f"[{run.index + 1}] {run.step.title} ...\n")
        elif run.status == RUNNING and run.note:  # a wait step's progress, each time it changes
            out.write(f"[{run.index + 1}]   {run.note}\n")
        elif run.status == DONE:
            out.write(f"[{run.index + 1}] done in {run.duration or 0:.1f}s" + (f": {run.note}" if run.note else "") + "\n")
        elif run.status in (FAILED, INTERRUPTED, STOPPED):
            out.write(f"[{run.index + 1}] {run.status.upper()} after {run.duration or 0:.1f}s: {run.error}\n")
        out.flush()

    return show


def _left_behind(out: TextIO, headline: str, states: dict[str, str]) -> None:
    """How a run ended and the state it left each stack in."""
    out.write(f"{headline}\nleft behind:\n")
    for where, state in states.items():
        out.write(f"  {where}: {state}\n")


def _execute(config: Config, plan: Plan, args: argparse.Namespace, out: TextIO) -> int:
    from .execute import Interrupted, audit_refusal, run_plan
    from .lock import LockHeld

    try:
        result = run_plan(config, plan, on_update=_progress(out), wait_timeout=args.wait_timeout)
    except LockHeld as exc:
        print(f"dtmon: refused: {exc}", file=sys.stderr)
        audit_refusal(config, plan, str(exc))
        return EXIT_REFUSED
    except Interrupted as exc:  # audited by the executor; the lock is already released
        result = exc.result
        step = f" at step {result.failed_index + 1}" if result.failed_index is not None else ""
        _left_behind(out, f"{plan.title}: interrupted{step}", result.states)
        if plan.action == "redeploy":
            out.write(f"run it again (without --resume), which converges: dtmon redeploy {plan.site} {plan.target}\n")
        return EXIT_INTERRUPTED
    if result.outcome == "done":
        out.write(f"{plan.title}: done\n")
        return EXIT_OK
    _left_behind(out, f"{plan.title}: {result.outcome}", result.states)
    if plan.action == "redeploy":
        out.write(f"resume with: dtmon redeploy {plan.site} {plan.target} --resume\n")
    return EXIT_REFUSED


def run(command: str, config: Config, args: argparse.Namespace, stdin: TextIO | None = None,
        out: TextIO | None = None) -> int:
    """Run one action subcommand; returns the exit code.

    An audit log or lock that cannot be written ends it with one line naming the file (exit 1): nothing
    runs unaudited, and the steps already shown say how far it got.
    """
    try:
        return _run(command, config, args, stdin or sys.stdin, out or sys.stdout)
    except OSError as exc:
        print(f"dtmon: {exc}", file=sys.stderr)
        return EXIT_REFUSED
    except KeyboardInterrupt:  # before or after a run (a run itself reports its interruption)
        print("dtmon: interrupted", file=sys.stderr)
        return EXIT_INTERRUPTED


def _run(command: str, config: Config, args: argparse.Namespace, stdin: TextIO, out: TextIO) -> int:
    if command == "audit":
        from ..report import finite
        from .audit import read, render

        records = read(config.deploy.audit)
        if args.json:
            wanted = records
            if args.last:
                ids = list(dict.fromkeys(r.get("id") for r in records))[-args.last:]
                wanted = [r for r in records if r.get("id") in ids]
            for record in wanted:
                out.write(json.dumps(finite(record), allow_nan=False) + "\n")  # strict JSON, as status --json
        else:
            out.write(render(records, last=args.last) + "\n")
        return EXIT_OK

    from .execute import CannotResume, audit_refusal, last_failure

    if command == "plan" or (command == "redeploy" and args.dry_run):
        plan = gather_redeploy(config, args.site, args.stack)
        out.write(plan.text() + "\n")
        if not allowed(config, args):
            out.write("note: read-only mode: enable actions to run it (--allow-actions or [deploy] allow = true)\n")
        return EXIT_OK if plan.ok else EXIT_REFUSED

    if not allowed(config, args):
        print(READ_ONLY, file=sys.stderr)
        return EXIT_READ_ONLY

    if command == "restart":
        from ..collectors.poll import snapshot
        from .plan import plan_restart

        plan = plan_restart(config, snapshot(config), args.site, args.service)
    elif command == "scale":
        from ..collectors.poll import snapshot
        from .service_plan import gather_scale

        plan = gather_scale(config, snapshot(config), args.site, args.service, args.replicas)
    elif command == "rollback":
        from ..collectors.poll import snapshot
        from .service_plan import gather_rollback

        plan = gather_rollback(config, snapshot(config), args.site, args.service)
    else:
        from .plan import resume_plan

        failure = None
        if args.resume:  # from the audit log, before anything is fetched
            try:
                failure = last_failure(config, "redeploy", args.site, args.stack)
            except CannotResume as exc:
                print(f"dtmon: cannot resume: {exc}", file=sys.stderr)
                return EXIT_REFUSED
            if failure is None:
                print(f"dtmon: nothing to resume: the last redeploy of {args.stack} at {args.site} did not fail",
                      file=sys.stderr)
                return EXIT_REFUSED
        plan = gather_redeploy(config, args.site, args.stack)
        if failure is not None:
            out.write(f"resuming from: {failure.get('resume_title')}\n")
            plan = resume_plan(plan, tuple(failure["resume_key"]))
    out.write(plan.text() + "\n")
    if not plan.ok:
        audit_refusal(config, plan, plan.refusal or "refused")
        return EXIT_REFUSED
    if not args.yes and not _confirm(plan, stdin, out):
        out.write("cancelled\n")
        return EXIT_REFUSED
    return _execute(config, plan, args, out)
