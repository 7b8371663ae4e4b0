"""Scale and rollback through the Engine API, as `docker service scale` and `docker service rollback` do them.

Both send the service's whole spec back at the version inspected (as the docker CLI does), so a service changed
by someone else since is refused by the engine rather than overwritten. `changes` is pure: what a rollback would
change (image, replicas, env keys; never env values), for the confirm dialog.
"""

from __future__ import annotations

import copy
from collections.abc import Iterable
from typing import Any

from ..sanitize import clean
from .restart import RestartError, _inspect

_IN_PROGRESS = {"updating", "rollback_started"}
#: Rollback update states that mean the rollback is under way / done (not a failed update, as for a restart).
ROLLING_BACK = "rollback_started"
ROLLED_BACK = "rollback_completed"


def _post_spec(client: Any, service: dict[str, Any], spec: dict[str, Any], **params: str) -> None:
    url = client._url("/services/{0}/update", service["ID"])
    response = client._post_json(url, data=spec, params={"version": service["Version"]["Index"], **params})
    client._result(response, json=True)


def _sendable(spec: dict[str, Any]) -> dict[str, Any]:
    """The spec to send back: networks still in the deprecated top-level field move into the task template."""
    spec = copy.deepcopy(spec)
    template = spec.setdefault("TaskTemplate", {})
    networks = spec.pop("Networks", None)
    if networks and not template.get("Networks"):
        template["Networks"] = networks
    return spec


def replicas_of(spec: dict[str, Any]) -> int | None:
    """The replicas a spec asks for, or None for a global (or job) service."""
    mode = spec.get("Mode") or {}
    if "Replicated" not in mode:
        return None
    value = (mode.get("Replicated") or {}).get("Replicas", 1)
    return value if isinstance(value, int) and not isinstance(value, bool) else None


def scale(client: Any, service_id: str, name: str | None, replicas: int) -> int:
    """Set a replicated service's replicas; returns the number it had. Refused for a global service and while
    the service updates."""
    service = _inspect(client, service_id, name)
    state = (service.get("UpdateStatus") or {}).get("State")
    if state in _IN_PROGRESS:
        raise RestartError(f"{name or service_id} is already updating ({state.replace('_', ' ')})")
    spec = _sendable(service["Spec"])
    before = replicas_of(spec)
    if before is None:
        raise RestartError(f"{name or service_id} is not a replicated service: only a replicated service can be scaled")
    spec["Mode"] = {"Replicated": {"Replicas": replicas}}
    _post_spec(client, service, spec)
    return before


def rollback(client: Any, service_id: str, name: str | None) -> None:
    """Roll a service back to its previous spec (the engine's PreviousSpec), as `docker service rollback`."""
    service = _inspect(client, service_id, name)
    if not service.get("PreviousSpec"):
        raise RestartError(f"{name or service_id} has no previous spec to roll back to")
    state = (service.get("UpdateStatus") or {}).get("State")
    if state in _IN_PROGRESS:
        raise RestartError(f"{name or service_id} is already updating ({state.replace('_', ' ')})")
    _post_spec(client, service, service["Spec"], rollback="previous")


def _env_keys(spec: dict[str, Any]) -> dict[str, str]:
    env = (((spec.get("TaskTemplate") or {}).get("ContainerSpec") or {}).get("Env")) or []
    pairs = {}
    for item in env if isinstance(env, list) else []:
        if isinstance(item, str):
            key, _, value = item.partition("=")
            pairs[key] = value
    return pairs


def _image(spec: dict[str, Any]) -> str:
    image = ((spec.get("TaskTemplate") or {}).get("ContainerSpec") or {}).get("Image") or ""
    return image.split("@", 1)[0] if isinstance(image, str) else ""


def _names(keys: Iterable[str]) -> str:
    return ", ".join(clean(k, 80) for k in sorted(keys))


def changes(spec: dict[str, Any], previous: dict[str, Any]) -> list[str]:
    """What rolling back from `spec` to `previous` changes: image, replicas, env keys (values never shown)."""
    found = []
    if _image(spec) != _image(previous):
        found.append(f"image: {clean(_image(spec), 200)} -> {clean(_image(previous), 200)}")
    now, then = replicas_of(spec), replicas_of(previous)
    if now != then:
        found.append(f"replicas: {now if now is not None else 'global'} -> {then if then is not None else 'global'}")
    env_now, env_then = _env_keys(spec), _env_keys(previous)
    added = set(env_then) - set(env_now)
    removed = set(env_now) - set(env_then)
    changed = {k for k in set(env_now) & set(env_then) if env_now[k] != env_then[k]}
    if changed:
        found.append(f"env changed (values not shown): {_names(changed)}")
    if added:
        found.append(f"env added back: {_names(added)}")
    if removed:
        found.append(f"env removed: {_names(removed)}")
    if not found:
        found.append("no change of image, replicas or env (other parts of the spec differ)")
    return found


def convergence(client: Any, service_id: str, name: str | None, watch: Any,
                ignore: frozenset[str] = frozenset(), rolling_back: bool = False) -> tuple[bool, str]:
    """(converged, note) after a scale or rollback, by the rule of `dtmon.actions.converge.Watch`.

    Tasks in `ignore` (those that had already ended before the action) are not counted: a scale keeps the spec,
    so the failures of its past would otherwise count. During a rollback the engine's rollback states are its
    progress, not a failed update; a paused rollback still fails the wait.
    """
    service = _inspect(client, service_id, name)
    if rolling_back:
        update = service.get("UpdateStatus") or {}
        if update.get("State") == ROLLING_BACK:
            service = {**service, "UpdateStatus": {**update, "State": "updating"}}
        elif update.get("State") == ROLLED_BACK:
            service = {key: value for key, value in service.items() if key != "UpdateStatus"}
    listed = client.services(filters={"id": service_id}, status=True)
    desired = int(((listed[0] if listed else {}).get("ServiceStatus") or {}).get("DesiredTasks", 0))
    tasks = [t for t in client.tasks(filters={"service": service_id}) if t.get("ID") not in ignore]
    return watch.verdict([watch.observe(service, tasks, desired)])


def ended_tasks(client: Any, service_id: str) -> frozenset[str]:
    """Ids of the service's tasks that are not meant to run any more (their failures are the past)."""
    return frozenset(
        t.get("ID", "") for t in client.tasks(filters={"service": service_id})
        if t.get("DesiredState") != "running" or (t.get("Status") or {}).get("State") in ("failed", "rejected", "complete")
    )
