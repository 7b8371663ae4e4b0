"""A service's spec as the engine holds it (`docker service inspect`), and its drift from the compose file.

Pure: engine JSON and compose YAML in, frozen dataclasses out; no Textual. Env values are never kept (only
their keys, the value masked), every text is cleaned and bounded.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from .. import sanitize
from ..model import ServiceStatus

#: How an env value is shown: never the value itself.
MASK = "••••••"
#: At most this many entries of one list (env, mounts, labels, constraints) are kept; the rest are counted.
MAX_ITEMS = 200


def _dict(value: object) -> dict[str, Any]:
    return value if isinstance(value, dict) else {}


def _list(value: object) -> list[Any]:
    return value if isinstance(value, list) else []


def _nanoseconds(value: object) -> str:
    """A Go duration in nanoseconds as "5s", "1m30s"; "" when absent or not a number."""
    if isinstance(value, bool) or not isinstance(value, int) or value < 0 or value > 10**18:
        return ""
    seconds = value / 1e9
    if seconds < 60:
        return f"{seconds:g}s"
    minutes, secs = divmod(int(seconds), 60)
    hours, minutes = divmod(minutes, 60)
    return (f"{hours}h" if hours else "") + (f"{minutes}m" if minutes else "") + (f"{secs}s" if secs else "")


def _policy(raw: dict[str, Any], fields: tuple[tuple[str, str], ...]) -> tuple[tuple[str, str], ...]:
    out = []
    for key, word in fields:
        value = raw.get(key)
        if value is None:
            continue
        if key in ("Delay", "Monitor", "Window"):
            text = _nanoseconds(value)
        elif isinstance(value, (int, float)) and not isinstance(value, bool):
            text = sanitize.describe_number(value)
        else:
            text = sanitize.name(value)
        if text:
            out.append((word, text))
    return tuple(out)


def _pairs(raw: object) -> tuple[tuple[str, str], ...]:
    items = sorted(_dict(raw).items(), key=lambda kv: str(kv[0]))[:MAX_ITEMS]
    return tuple((sanitize.name(k), sanitize.clean(v if isinstance(v, str) else sanitize.describe_number(v)
                                                   if isinstance(v, (int, float)) else "")) for k, v in items)


@dataclass(frozen=True)
class ServiceSpec:
    """What `docker service inspect` says of one service, cleaned; env values masked."""

    id: str
    name: str
    image: str  #: as the engine holds it, with its digest when pinned (repo:tag@sha256:…)
    mode: str  #: replicated, global, …
    replicas: int | None  #: None for a global service
    env_keys: tuple[str, ...]  #: KEY only; values are never kept
    mounts: tuple[str, ...]  #: "type source -> target (ro)"
    constraints: tuple[str, ...]
    update_policy: tuple[tuple[str, str], ...]
    rollback_policy: tuple[tuple[str, str], ...]
    restart_policy: tuple[tuple[str, str], ...]
    labels: tuple[tuple[str, str], ...]  #: the service's labels
    container_labels: tuple[tuple[str, str], ...]
    command: str  #: command and args, as one line
    created: str
    updated: str
    has_previous: bool  #: the engine keeps a previous spec (what `docker service rollback` would return to)


def service_spec(raw: object) -> ServiceSpec:
    """A ServiceSpec from `GET /services/{id}`: every field read defensively, every text cleaned."""
    svc = _dict(raw)
    spec = _dict(svc.get("Spec"))
    task = _dict(spec.get("TaskTemplate"))
    container = _dict(task.get("ContainerSpec"))
    mode_raw = _dict(spec.get("Mode"))
    from .swarm import service_mode

    mode = service_mode(mode_raw)
    replicas = None
    if "Replicated" in mode_raw:
        value = _dict(mode_raw["Replicated"]).get("Replicas")
        replicas = sanitize.count(value, "replicas", limit=10**6) if value is not None else 1
    env_keys = []
    for item in _list(container.get("Env"))[:MAX_ITEMS]:
        if isinstance(item, str):
            env_keys.append(sanitize.name(item.split("=", 1)[0]))
    mounts = []
    for mount in _list(container.get("Mounts"))[:MAX_ITEMS]:
        mount = _dict(mount)
        text = f"{sanitize.name(mount.get('Type') or '?')} {sanitize.clean(mount.get('Source') or '-', 300)} -> " \
               f"{sanitize.clean(mount.get('Target') or '?', 300)}"
        mounts.append(text + (" (ro)" if mount.get("ReadOnly") is True else ""))
    constraints = tuple(sanitize.clean(c, 300) for c in _list(_dict(task.get("Placement")).get("Constraints"))[:MAX_ITEMS]
                        if isinstance(c, str))
    policy_fields = (("Parallelism", "parallelism"), ("Delay", "delay"), ("FailureAction", "failure action"),
                     ("Monitor", "monitor"), ("MaxFailureRatio", "max failure ratio"), ("Order", "order"))
    restart = _policy(_dict(task.get("RestartPolicy")), (("Condition", "condition"), ("Delay", "delay"),
                                                         ("MaxAttempts", "max attempts"), ("Window", "window")))
    words = [w for w in [*_list(container.get("Command")), *_list(container.get("Args"))] if isinstance(w, str)]
    return ServiceSpec(
        id=sanitize.name(svc.get("ID") or ""),
        name=sanitize.name(spec.get("Name") or ""),
        image=sanitize.clean(container.get("Image") or "", 400),
        mode=mode,
        replicas=replicas,
        env_keys=tuple(env_keys),
        mounts=tuple(mounts),
        constraints=constraints,
        update_policy=_policy(_dict(spec.get("UpdateConfig")), policy_fields),
        rollback_policy=_policy(_dict(spec.get("RollbackConfig")), policy_fields),
        restart_policy=restart,
        labels=_pairs(spec.get("Labels")),
        container_labels=_pairs(container.get("Labels")),
        command=sanitize.clean(" ".join(words), 1000),
        created=sanitize.clean(svc.get("CreatedAt") or "", 40),
        updated=sanitize.clean(svc.get("UpdatedAt") or "", 40),
        has_previous=isinstance(svc.get("PreviousSpec"), dict),
    )


def spec_lines(spec: ServiceSpec) -> list[tuple[str, str]]:
    """(section, line) for the inspect screen and tests, in the order an operator reads them."""
    out: list[tuple[str, str]] = [
        ("service", f"{spec.name}  (id {spec.id[:12]})"),
        ("service", f"image {spec.image}"),
        ("service", f"mode {spec.mode}" + (f", {spec.replicas} replicas" if spec.replicas is not None else "")),
        ("service", f"command {spec.command or '(the image default)'}"),
        ("service", f"created {spec.created} · updated {spec.updated}"
         + (" · a previous spec is kept (rollback possible)" if spec.has_previous else "")),
    ]
    out += [("env", f"{key}={MASK}") for key in spec.env_keys] or [("env", "(none)")]
    out += [("mounts", m) for m in spec.mounts] or [("mounts", "(none)")]
    out += [("placement", c) for c in spec.constraints] or [("placement", "(no constraints)")]
    for section, policy in (("update policy", spec.update_policy), ("rollback policy", spec.rollback_policy),
                            ("restart policy", spec.restart_policy)):
        out.append((section, ", ".join(f"{k} {v}" for k, v in policy) or "(engine defaults)"))
    out += [("labels", f"{k}={v}") for k, v in spec.labels] or [("labels", "(none)")]
    out += [("container labels", f"{k}={v}") for k, v in spec.container_labels]
    return out


# ---------------------------------------------------------------------------
# Drift: the engine's spec against the compose file.
# ---------------------------------------------------------------------------


def compose_images(path: Path) -> dict[str, str | None]:
    """Service short name -> the image the compose file names (None when it names none); ValueError otherwise."""
    import yaml

    from .. import config_values as values

    try:
        data = yaml.safe_load(values.read_capped(path, values.MAX_COMPOSE_BYTES).decode("utf-8"))
    except (OSError, UnicodeDecodeError, yaml.YAMLError, RecursionError) as exc:
        raise ValueError(f"cannot read {path}: {type(exc).__name__}") from None
    services = _dict(_dict(data).get("services"))
    return {str(name): (str(_dict(spec).get("image")) if _dict(spec).get("image") is not None else None)
            for name, spec in services.items()}


def normal_image(image: str) -> str:
    """repository:tag without digest or docker.io/library prefix ("busybox" -> "busybox:latest")."""
    image = image.split("@", 1)[0]
    for prefix in ("docker.io/library/", "docker.io/", "index.docker.io/library/"):
        if image.startswith(prefix):
            image = image[len(prefix):]
            break
    last = image.rsplit("/", 1)[-1]
    return image if ":" in last else f"{image}:latest"


@dataclass(frozen=True)
class DriftItem:
    """One difference between the compose file and the engine."""

    what: str  #: image, replicas, missing, extra
    service: str  #: short name
    declared: str  #: what the compose file says
    running: str  #: what the engine has

    def text(self) -> str:
        if self.what == "missing":
            return f"{self.service}: in the compose file, not deployed"
        if self.what == "extra":
            return f"{self.service}: deployed, not in the compose file"
        return f"{self.service}: {self.what} {self.declared} in the compose file, {self.running} deployed"


def service_drift(short: str, spec: ServiceSpec, images: dict[str, str | None],
                  replicas: dict[str, int]) -> list[DriftItem]:
    """How one deployed service differs from its compose file (image, replicas), or that the file lacks it."""
    if short not in replicas and short not in images:
        return [DriftItem("extra", short, "", spec.name)]
    out = []
    declared = images.get(short)
    if declared and "$" not in declared and normal_image(declared) != normal_image(spec.image):
        out.append(DriftItem("image", short, sanitize.clean(declared, 400), normal_image(spec.image)))
    if spec.replicas is not None and short in replicas and replicas[short] != spec.replicas:
        out.append(DriftItem("replicas", short, str(replicas[short]), str(spec.replicas)))
    return out


def stack_drift(services: list[ServiceStatus]) -> list[DriftItem]:
    """Missing and extra services of one stack, from the snapshot (its rows already say which are which)."""
    out = []
    for s in services:
        if s.state == "missing":
            out.append(DriftItem("missing", s.service, "declared", ""))
        elif not s.expected:
            out.append(DriftItem("extra", s.service, "", s.name))
    return out
