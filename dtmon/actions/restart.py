"""Rolling restart through the Engine API, as `docker service update --force` does it: ForceUpdate + 1."""

from __future__ import annotations

from typing import Any

_IN_PROGRESS = {"updating", "rollback_started"}


class RestartError(Exception):
    """The restart was refused or did not converge; the message says why."""


def _inspect(client: Any, service_id: str, name: str | None) -> dict[str, Any]:
    import docker.errors

    try:
        service = client.inspect_service(service_id)
    except docker.errors.NotFound:
        raise RestartError(f"{name or service_id} was removed or replaced since the plan was made") from None
    actual = (service.get("Spec") or {}).get("Name")
    if name and actual != name:
        raise RestartError(f"service {service_id[:12]} is now named {actual!r}, not {name!r}")
    return service


def force_update(client: Any, service_id: str, name: str | None = None) -> int:
    """Bump the task template's ForceUpdate of the service the operator saw; returns the new value.

    Refused while the service is already updating (or rolling back).
    """
    service = _inspect(client, service_id, name)
    state = (service.get("UpdateStatus") or {}).get("State")
    if state in _IN_PROGRESS:
        raise RestartError(f"{name or service_id} is already updating ({state.replace('_', ' ')})")
    spec = service["Spec"]
    template = dict(spec.get("TaskTemplate") or {})
    force = int(template.get("ForceUpdate") or 0) + 1
    template["ForceUpdate"] = force
    # docker-py sends only what it is given (fetch_current_spec is off, so the version checked above is the
    # spec sent): every part of the inspected spec goes back. Networks still in the deprecated top-level
    # field move into the task template, as `docker service update` does; left out, they would be dropped.
    networks = template.get("Networks") or spec.get("Networks")
    client.update_service(
        service["ID"],
        version=service["Version"]["Index"],
        task_template=template,
        name=spec.get("Name"),
        labels=spec.get("Labels"),
        mode=spec.get("Mode"),
        update_config=spec.get("UpdateConfig"),
        rollback_config=spec.get("RollbackConfig"),
        networks=networks,
        endpoint_spec=spec.get("EndpointSpec"),
    )
    return force


def convergence(client: Any, service_id: str, name: str | None, watch: Any) -> tuple[bool, str]:
    """(converged, note) of a restarted service by the rule of `dtmon.actions.converge.Watch`.

    Raises RestartError when the service was removed, and NotConverging when its update failed or its new
    tasks keep failing.
    """
    service = _inspect(client, service_id, name)
    listed = client.services(filters={"id": service_id}, status=True)
    desired = int(((listed[0] if listed else {}).get("ServiceStatus") or {}).get("DesiredTasks", 0))
    tasks = client.tasks(filters={"service": service_id})
    return watch.verdict([watch.observe(service, tasks, desired)])
