"""Plans of one service's scale and rollback (`plan_*`: pure, like the rest of the planner), and what they need
gathered first (`gather_*`: the compose file's replicas, the engine's previous spec)."""

from __future__ import annotations

import shlex
from dataclasses import replace
from typing import Any

from ..config import Config, parse_compose
from ..model import MISSING, UPDATING, ServiceStatus, Snapshot
from .plan import (
    ROLLBACK,
    ROLLBACK_ACTION,
    SCALE,
    SCALE_ACTION,
    WAIT_ROLLED_BACK,
    WAIT_SCALED,
    Plan,
    Step,
    _unreachable,
    docker_argv,
    find_service,
)


def _target(config: Config, snapshot: Snapshot, base: Plan, what: str) -> tuple[Plan, ServiceStatus | None]:
    """The service a plan acts on, or `base` refused (with None) saying why it cannot be acted on."""
    site, service = base.site, base.target
    try:
        config.site(site)
    except KeyError:
        return replace(base, refusal=f"unknown site {site!r} (configured: {', '.join(s.name for s in config.sites)})"), None
    if why := _unreachable(snapshot, site):
        return replace(base, refusal=why), None
    found = find_service(snapshot.site(site), service)
    if found is None:
        return replace(base, refusal=f"no watched service {service!r} at {site}"), None
    base = replace(base, target=found.name)
    same = [s for s in snapshot.site(site).services if s.name == found.name and s.id is not None]
    if len(same) > 1:
        return replace(base, refusal=f"{len(same)} services at {site} are named {found.name}: {what} one with docker"), None
    if found.id is None or found.state == MISSING:
        return replace(base, refusal=f"{found.name} is not deployed at {site}"), None
    if found.state == UPDATING and not found.update_paused:
        return replace(base, refusal=f"{found.name} is already updating ({found.update_message or 'update in progress'})"), None
    return base, found


def _wait(kind: str, found: ServiceStatus, site: str, monitor: float, what: str) -> Step:
    return Step(
        kind,
        f"wait until {found.name} has converged at {site}",
        f"wait until every replica {what} runs for {monitor:g}s with no task failing, or the update fails",
        site,
        found.stack,
        service=found.name,
        service_id=found.id,
    )


def plan_scale(config: Config, snapshot: Snapshot, site: str, service: str, replicas: int,
               declared: int | None = None, declared_error: str | None = None) -> Plan:
    """Scale one replicated service to `replicas`, as `docker service scale`, or a refusal.

    `declared` is what the stack's compose file says (gathered): another number is a note, since the next
    redeploy puts it back.
    """
    base = Plan(SCALE_ACTION, site, service, snapshot_at=snapshot.generated_at, replicas=replicas)
    base, found = _target(config, snapshot, base, "scale")
    if found is None:
        return base
    if found.mode != "replicated":
        return replace(base, refusal=f"{found.name} is a {found.mode or 'non-replicated'} service: "
                       "only a replicated service can be scaled")
    notes = []
    if found.desired == replicas:
        notes.append(f"{found.name} already asks for {replicas} replicas: scaling changes nothing but is checked")
    if declared is not None and declared != replicas:
        notes.append(f"the compose file of {found.stack} says {declared} replicas: the next redeploy puts it back to {declared}")
    elif declared_error:
        notes.append(f"the compose file of {found.stack} could not be read: {declared_error}")
    argv = (*docker_argv(config.site(site)), "service", "scale", f"{found.name}={replicas}")
    steps = (
        Step(SCALE, f"scale {found.name} at {site} to {replicas}",
             shlex.join(argv) + f"  # through the Engine API: replicas {found.desired} -> {replicas}",
             site, found.stack, argv, service=found.name, service_id=found.id, replicas=replicas),
        _wait(WAIT_SCALED, found, site, config.deploy.monitor, f"of {found.name} ({replicas})"),
    )
    return replace(base, steps=steps, notes=tuple(notes))


def plan_rollback(config: Config, snapshot: Snapshot, site: str, service: str,
                  inspected: dict[str, Any] | None = None, inspect_error: str | None = None) -> Plan:
    """Roll one service back to the engine's previous spec, as `docker service rollback`, or a refusal.

    `inspected` is the engine's inspect answer (gathered); the notes say what changes (never env values).
    """
    from .service_ops import changes

    base = Plan(ROLLBACK_ACTION, site, service, snapshot_at=snapshot.generated_at)
    base, found = _target(config, snapshot, base, "roll back")
    if found is None:
        return base
    if inspected is None:
        return replace(base, refusal=f"cannot read {found.name}'s spec at {site}: {inspect_error or 'no answer'}")
    if inspected.get("ID") != found.id:
        return replace(base, refusal=f"{found.name} at {site} was replaced since the snapshot: look again")
    previous = inspected.get("PreviousSpec")
    if not isinstance(previous, dict) or not previous:
        return replace(base, refusal=f"{found.name} at {site} has no previous spec to roll back to "
                       "(it was never updated since it was created)")
    notes = tuple(f"changes {line}" for line in changes(inspected.get("Spec") or {}, previous))
    argv = (*docker_argv(config.site(site)), "service", "rollback", found.name)
    steps = (
        Step(ROLLBACK, f"roll back {found.name} at {site}",
             shlex.join(argv) + "  # through the Engine API: the previous spec (rollback=previous)",
             site, found.stack, argv, service=found.name, service_id=found.id),
        _wait(WAIT_ROLLED_BACK, found, site, config.deploy.monitor, f"of {found.name}'s previous spec"),
    )
    return replace(base, steps=steps, notes=notes)


# ---------------------------------------------------------------------------
# Gathering (blocking: files and the engine).
# ---------------------------------------------------------------------------


def declared_replicas(config: Config, snapshot: Snapshot, site: str, service: str) -> tuple[int | None, str | None]:
    """(replicas the stack's compose file declares for the service, or why it could not be read)."""
    try:
        site_cfg = config.site(site)
        found = find_service(snapshot.site(site), service)
    except KeyError:
        return None, None
    if found is None or found.stack not in site_cfg.stacks:
        return None, None
    try:
        declared = parse_compose(site_cfg.stacks[found.stack])
    except ValueError as exc:
        return None, f"{site_cfg.stacks[found.stack]}: {exc}"
    return declared.get(found.service), None


def gather_scale(config: Config, snapshot: Snapshot, site: str, service: str, replicas: int) -> Plan:
    declared, error = declared_replicas(config, snapshot, site, service)
    return plan_scale(config, snapshot, site, service, replicas, declared, error)


def gather_rollback(config: Config, snapshot: Snapshot, site: str, service: str) -> Plan:
    """Inspect the service at its site (the previous spec lives only in the engine), then plan."""
    from ..collectors.swarm import SwarmCollector, describe_error

    inspected, error = None, None
    try:
        site_cfg = config.site(site)
        found = find_service(snapshot.site(site), service)
    except KeyError:
        found = None
    if found is not None and found.id is not None:
        collector = SwarmCollector(site_cfg, config.timeout)
        try:
            inspected = collector.client(max(config.timeout, 30.0)).inspect_service(found.id)
        except Exception as exc:  # noqa: BLE001 - an engine error is the plan's refusal
            error = describe_error(exc)
        finally:
            collector.close()
    return plan_rollback(config, snapshot, site, service, inspected, error)
