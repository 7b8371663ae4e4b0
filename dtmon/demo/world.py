"""The simulated Datatrail world: which services run where, and how each behaves over time.

Everything here is a pure function of (seed, start, now): the same seed and start give the same
services, task histories and log lines at the same moment, so tests can check what they see.
"""

from __future__ import annotations

import hashlib
import math
import random
import time
from dataclasses import dataclass, field

SITES = ("chime", "kko", "gbo", "hco")
OUTRIGGERS = ("kko", "gbo", "hco")

#: Node hostnames per site; the first is the manager that leads.
NODES: dict[str, tuple[str, ...]] = {
    "chime": ("frb-vsop", "outrigger_buffer"),
    "kko": ("aux",),
    "gbo": ("aux",),
    "hco": ("ha1",),
}

STACKS: dict[str, tuple[str, ...]] = {
    "chime": ("datatrail", "datatrail-daemons", "datatrail-client"),
    "kko": ("datatrail-client",),
    "gbo": ("datatrail-client",),
    "hco": ("datatrail-client",),
}

#: File names the operations page uses for each stack's compose file.
COMPOSE_FILES: dict[tuple[str, str], str] = {
    ("chime", "datatrail"): "server-compose.yaml",
    ("chime", "datatrail-daemons"): "daemon-compose.yaml",
    **{(site, "datatrail-client"): f"{site}-client.yaml" for site in SITES},
}

SERVER_IMAGE = "chimefrb/maestro-datatrail:latest"
CLIENT_IMAGE = "chimefrb/maestro-datatrail-client:latest"
EXPORTER_IMAGE = "prometheuscommunity/postgres-exporter:v0.15.0"
AUTOSSH_IMAGE = "chimefrb/autossh:latest"

CLIENT_SERVICES = (
    "deletion_healer",
    "event_registration",
    "reattempt_unregistered",
    "replication_healer",
    "replicator",
    "update_canfar_certificates",
)

#: Swarm keeps this many tasks per slot (the engine's TaskHistoryRetentionLimit default).
TASK_HISTORY = 5
#: Seconds a failed task waits before its replacement starts (swarm's default restart delay).
RESTART_DELAY = 5.0

DEFAULT_SEED = 2026

# The scenario: (site, swarm name) of the services that misbehave. Tests import these.
FLAPPING = (("chime", "datatrail-daemons_inventory"), ("kko", "datatrail-client_event_registration"))
DEGRADED = ("gbo", "datatrail-client_replicator")
UPDATING = ("chime", "datatrail-daemons_metric_pusher")
MISSING = ("hco", "datatrail-client_update_canfar_certificates")
UNEXPECTED = ("kko", "datatrail-client_debug_shell")
STOPPED = ("hco", "datatrail-client_replicator")

PENDING_ERROR = "no suitable node (insufficient resources on 1 node)"

#: The site whose manager now and then stops answering (hco is still being set up), and when:
#: OUTAGE_LENGTH seconds every OUTAGE_EVERY, the first OUTAGE_FIRST seconds after the world starts.
OUTAGE_SITE = "hco"
OUTAGE_FIRST, OUTAGE_EVERY, OUTAGE_LENGTH = 150.0, 360.0, 40.0


@dataclass(frozen=True)
class Behaviour:
    """How a service behaves over time."""

    kind: str = "steady"  #: steady, flapping, pending, updating or stopped
    period: float = 0.0  #: flapping: seconds per restart cycle; updating: seconds between updates
    duration: float = 0.0  #: updating: seconds an update stays in progress


@dataclass(frozen=True)
class SimService:
    """One service of the simulated world."""

    site: str
    stack: str
    service: str  #: short name, as the compose file names it
    image: str
    replicas: int  #: desired replicas
    command: tuple[str, ...]
    nodes: tuple[str, ...]  #: hostnames its slots are placed on, round robin
    behaviour: Behaviour = field(default_factory=Behaviour)
    in_compose: bool = True  #: named by the stack's compose file
    deployed: bool = True  #: present in the swarm

    @property
    def name(self) -> str:
        return f"{self.stack}_{self.service}"

    @property
    def key(self) -> tuple[str, str]:
        return (self.site, self.name)


@dataclass(frozen=True)
class SimNode:
    id: str
    hostname: str
    role: str
    leader: bool
    addr: str
    created: float


@dataclass(frozen=True)
class SimTask:
    """One task of a service at one moment."""

    id: str
    slot: int
    node: str | None  #: hostname (None while not scheduled)
    state: str
    desired_state: str
    message: str
    err: str | None
    since: float  #: when it entered `state`
    created: float
    exit_code: int | None
    container_id: str | None
    force_update: int = 0


@dataclass(frozen=True)
class ServiceTimes:
    """When a service was created and last updated, and its update status (None: never updated)."""

    created: float
    updated: float
    force_update: int
    update_state: str | None = None
    update_started: float | None = None
    update_completed: float | None = None


@dataclass(frozen=True)
class LogLine:
    when: float
    stream: int  #: 1 stdout, 2 stderr
    text: str
    task_id: str
    node: str


# ---------------------------------------------------------------------------
# Deterministic randomness.
# ---------------------------------------------------------------------------


def _digest(*parts: object) -> bytes:
    return hashlib.sha256("|".join(str(p) for p in parts).encode()).digest()


def _rng(*parts: object) -> random.Random:
    return random.Random(int.from_bytes(_digest(*parts)[:8], "big"))


_ID_ALPHABET = "0123456789abcdefghijklmnopqrstuvwxyz"


def swarm_id(*parts: object) -> str:
    """A 25-character lowercase id, like swarm's object ids."""
    number = int.from_bytes(_digest("id", *parts), "big")
    chars = []
    for _ in range(25):
        number, rest = divmod(number, 36)
        chars.append(_ID_ALPHABET[rest])
    return "".join(chars)


def hex_id(*parts: object) -> str:
    """A 64-character hex id, like a container id or an image digest."""
    return hashlib.sha256("|".join(str(p) for p in ("hex", *parts)).encode()).hexdigest()


# ---------------------------------------------------------------------------
# The catalogue: real site, stack and service names (see DESIGN.md).
# ---------------------------------------------------------------------------


def _behaviours() -> dict[tuple[str, str], Behaviour]:
    return {
        FLAPPING[0]: Behaviour("flapping", period=90.0),
        FLAPPING[1]: Behaviour("flapping", period=300.0),
        DEGRADED: Behaviour("pending"),
        UPDATING: Behaviour("updating", period=420.0, duration=40.0),
        STOPPED: Behaviour("stopped"),
    }


def catalogue() -> tuple[SimService, ...]:
    """Every service of the world: deployed ones, the missing one and the unexpected one."""
    special = _behaviours()
    out: list[SimService] = []

    def add(site: str, stack: str, short: str, image: str, command: tuple[str, ...], replicas: int = 1,
            nodes: tuple[str, ...] | None = None, **extra) -> None:
        name = f"{stack}_{short}"
        behaviour = special.get((site, name), Behaviour())
        if behaviour.kind == "stopped":
            replicas = 0
        out.append(SimService(site, stack, short, image, replicas, command, nodes or NODES[site][:1], behaviour, **extra))

    add("chime", "datatrail", "server", SERVER_IMAGE, ("datatrail", "server", "--port", "8080"))
    add("chime", "datatrail", "postgres_exporter", EXPORTER_IMAGE, ())
    for site in OUTRIGGERS:
        add("chime", "datatrail", f"autossh_{site}", AUTOSSH_IMAGE, ("autossh", "-M", "0", "-N", f"scout.{site}"))
    daemons = ["deletion_notification"]
    daemons += [f"deletion_stager_{site}" for site in SITES]
    daemons += ["healing_stager", "inventory", "metric_pusher"]
    daemons += [f"replication_stager_{site}" for site in OUTRIGGERS]
    daemons += ["state_updater"]
    for short in daemons:
        add("chime", "datatrail-daemons", short, SERVER_IMAGE, ("datatrail", "daemon", short.replace("_", "-")))
    for site in SITES:
        for short in CLIENT_SERVICES:
            replicas = 2 if short == "replicator" and site in ("chime", "gbo") else 1
            nodes = NODES[site] if short == "replicator" else None
            deployed = (site, f"datatrail-client_{short}") != MISSING
            add(site, "datatrail-client", short, CLIENT_IMAGE,
                ("datatrail-client", short.replace("_", "-"), "--site", site),
                replicas=replicas, nodes=nodes, deployed=deployed)
    site, name = UNEXPECTED
    stack, short = name.split("_", 1)
    add(site, stack, short, "busybox:1.36", ("sleep", "infinity"), in_compose=False)
    return tuple(out)


# ---------------------------------------------------------------------------
# The world over time.
# ---------------------------------------------------------------------------


class World:
    """The simulated world: deterministic given `seed` and `start`, read at `clock()`."""

    def __init__(self, seed: int = DEFAULT_SEED, start: float | None = None, clock=time.time) -> None:
        self.seed = seed
        self.clock = clock
        self.start = clock() if start is None else start
        self.all_services = catalogue()

    def now(self) -> float:
        return self.clock()

    # -- what exists ----------------------------------------------------------

    def services(self, site: str) -> list[SimService]:
        """The services deployed at `site`."""
        return [s for s in self.all_services if s.site == site and s.deployed]

    def compose(self, site: str, stack: str) -> list[SimService]:
        """The services the compose file of `stack` at `site` names."""
        return [s for s in self.all_services if s.site == site and s.stack == stack and s.in_compose]

    def service(self, site: str, name: str) -> SimService:
        for svc in self.all_services:
            if svc.site == site and svc.name == name:
                return svc
        raise KeyError((site, name))

    def service_id(self, svc: SimService) -> str:
        return swarm_id(self.seed, "service", svc.site, svc.name)

    def nodes(self, site: str) -> list[SimNode]:
        out = []
        for index, hostname in enumerate(NODES[site]):
            out.append(
                SimNode(
                    id=swarm_id(self.seed, "node", site, hostname),
                    hostname=hostname,
                    role="manager",
                    leader=index == 0,
                    addr=f"10.{10 + SITES.index(site)}.0.{11 + index}",
                    created=self.start - 400 * 86400 + index * 3600,
                )
            )
        return out

    def outage_end(self, site: str, now: float) -> float | None:
        """When the current outage of `site`'s manager ends, or None when it answers at `now`."""
        if site != OUTAGE_SITE or now < self.start + OUTAGE_FIRST:
            return None
        into = (now - self.start - OUTAGE_FIRST) % OUTAGE_EVERY
        return now + (OUTAGE_LENGTH - into) if into < OUTAGE_LENGTH else None

    def node_id(self, site: str, hostname: str | None) -> str | None:
        return swarm_id(self.seed, "node", site, hostname) if hostname else None

    # -- time ----------------------------------------------------------------

    def _deployed_at(self, svc: SimService) -> tuple[float, float]:
        """When the service's stack was first deployed, and last redeployed."""
        rng = _rng(self.seed, "deploy", svc.site, svc.stack)
        created = self.start - 86400 * (30 + rng.random() * 60)
        updated = self.start - 3600 * (3 + rng.random() * 27)
        if not svc.in_compose:
            updated = self.start - 3600 * 2.5
            created = updated
        return created, updated

    def times(self, svc: SimService, now: float) -> ServiceTimes:
        created, updated = self._deployed_at(svc)
        b = svc.behaviour
        if b.kind != "updating":
            return ServiceTimes(created, updated, 0)
        anchor = self._update_anchor(svc)
        m = math.floor((now - anchor) / b.period)
        if m < 1:
            return ServiceTimes(created, updated, 0)
        started = anchor + m * b.period
        if now < started + b.duration:
            return ServiceTimes(created, started, m, "updating", started, None)
        return ServiceTimes(created, started + b.duration, m, "completed", started, started + b.duration)

    def _update_anchor(self, svc: SimService) -> float:
        # The first update comes half a minute after the world starts, then every `period`.
        return self.start + 30.0 - svc.behaviour.period

    # -- tasks ---------------------------------------------------------------

    def _task(self, svc: SimService, slot: int, generation: object, **kw) -> SimTask:
        task_id = swarm_id(self.seed, "task", svc.site, svc.name, slot, generation)
        container = hex_id(self.seed, "container", task_id) if kw.get("state") not in ("pending", "new") else None
        kw.setdefault("node", svc.nodes[(slot - 1) % len(svc.nodes)])
        return SimTask(id=task_id, slot=slot, container_id=container, **kw)

    def _running(self, svc: SimService, slot: int, generation: object, since: float, **kw) -> SimTask:
        return self._task(svc, slot, generation, state="running", desired_state="running", message="started",
                          err=None, since=since, created=since - 1.2, exit_code=0, **kw)

    def _shutdown(self, svc: SimService, slot: int, generation: object, started: float, ended: float, **kw) -> SimTask:
        return self._task(svc, slot, generation, state="shutdown", desired_state="shutdown", message="shutdown",
                          err=None, since=ended, created=started - 1.2, exit_code=0, **kw)

    def tasks(self, svc: SimService, now: float) -> list[SimTask]:
        """The tasks the engine would list for `svc` at `now` (history included)."""
        if not svc.deployed:
            return []
        created, updated = self._deployed_at(svc)
        kind = svc.behaviour.kind
        out: list[SimTask] = []
        if kind == "stopped":
            for slot in (1,):
                out.append(self._shutdown(svc, slot, "stopped", created + 5, updated))
            return out
        for slot in range(1, svc.replicas + 1):
            if kind == "flapping":
                out.extend(self._flapping_slot(svc, slot, now))
            elif kind == "updating":
                out.extend(self._updating_slot(svc, slot, now))
            elif kind == "pending" and slot == svc.replicas:
                out.extend(self._pending_slot(svc, slot, updated))
            else:
                out.append(self._running(svc, slot, "deploy", updated + 3 + slot))
                if svc.in_compose:
                    out.append(self._shutdown(svc, slot, "previous", created + 3, updated))
        return out

    def _flap_start(self, svc: SimService, k: int) -> float:
        """When task generation k of a flapping service started running."""
        _, updated = self._deployed_at(svc)
        period = svc.behaviour.period
        jitter = _rng(self.seed, "flap", svc.site, svc.name, k).random() * period * 0.4
        return updated + 5 + k * period + jitter

    def flap_cycle(self, svc: SimService, now: float) -> tuple[int, float, float]:
        """(generation, its start, its failure time) of the flapping task current at `now`."""
        _, updated = self._deployed_at(svc)
        k = max(0, math.floor((now - updated - 5) / svc.behaviour.period))
        while k > 0 and self._flap_start(svc, k) > now:
            k -= 1
        return k, self._flap_start(svc, k), self._flap_start(svc, k + 1) - RESTART_DELAY

    def _flap_error(self, svc: SimService, k: int) -> tuple[str, int]:
        code = 137 if _rng(self.seed, "exit", svc.site, svc.name, k).random() < 0.15 else 1
        return f"task: non-zero exit ({code})", code

    def _flapping_slot(self, svc: SimService, slot: int, now: float) -> list[SimTask]:
        k, started, fails = self.flap_cycle(svc, now)
        out = []
        if now < fails:
            out.append(self._running(svc, slot, k, started))
            first_failed = k - 1
        else:
            # Failed; its replacement waits out the restart delay.
            err, code = self._flap_error(svc, k)
            out.append(self._task(svc, slot, k + 1, state="ready", desired_state="ready", message="prepared",
                                  err=None, since=fails + 0.2, created=fails + 0.1, exit_code=None))
            out.append(self._task(svc, slot, k, state="failed", desired_state="shutdown", message="started",
                                  err=err, since=fails, created=started - 1.2, exit_code=code))
            first_failed = k - 1
        for j in range(first_failed, first_failed - (TASK_HISTORY - len(out)), -1):
            if j < 0:
                break
            err, code = self._flap_error(svc, j)
            fail_at = self._flap_start(svc, j + 1) - RESTART_DELAY
            out.append(self._task(svc, slot, j, state="failed", desired_state="shutdown", message="started",
                                  err=err, since=fail_at, created=self._flap_start(svc, j) - 1.2, exit_code=code))
        return out

    def _updating_slot(self, svc: SimService, slot: int, now: float) -> list[SimTask]:
        times = self.times(svc, now)
        b = svc.behaviour
        anchor = self._update_anchor(svc)
        _, updated = self._deployed_at(svc)
        out = []
        m = times.force_update
        if times.update_state == "updating":
            started = times.update_started or now
            old_start = anchor + (m - 1) * b.period + b.duration / 2 if m > 1 else updated + 3
            if now < started + 2:
                out.append(self._task(svc, slot, m - 1, state="running", desired_state="shutdown",
                                      message="started", err=None, since=old_start, created=old_start - 1.2,
                                      exit_code=0, force_update=m - 1))
            else:
                out.append(self._shutdown(svc, slot, m - 1, old_start, started + 2, force_update=m - 1))
                if now < started + b.duration / 2:
                    out.append(self._task(svc, slot, m, state="preparing", desired_state="running",
                                          message="preparing", err=None, since=started + 2.1,
                                          created=started + 2, exit_code=None, force_update=m))
                else:
                    out.append(self._running(svc, slot, m, started + b.duration / 2, force_update=m))
            history_from = m - 2
        else:
            since = anchor + m * b.period + b.duration / 2 if m >= 1 else updated + 3
            out.append(self._running(svc, slot, m, since, force_update=m))
            history_from = m - 1
        for j in range(history_from, history_from - (TASK_HISTORY - len(out)), -1):
            if j < 0:
                break
            start_j = anchor + j * b.period + b.duration / 2 if j >= 1 else updated + 3
            end_j = anchor + (j + 1) * b.period + 2
            out.append(self._shutdown(svc, slot, j, start_j, end_j, force_update=j))
        return out

    def pending_since(self, svc: SimService) -> float:
        return self.start - 60 * (35 + _rng(self.seed, "pending", svc.site, svc.name).random() * 20)

    def _pending_slot(self, svc: SimService, slot: int, updated: float) -> list[SimTask]:
        since = self.pending_since(svc)
        out = [self._task(svc, slot, "pending", node=None, state="pending", desired_state="running",
                          message="pending task scheduling", err=PENDING_ERROR, since=since, created=since - 0.5,
                          exit_code=None)]
        # Before it could not be placed any more, the slot was killed for using too much memory.
        for j in range(3):
            fail_at = since - 1 - j * 95
            out.append(self._task(svc, slot, f"oom{j}", state="failed", desired_state="shutdown",
                                  message="started", err="task: non-zero exit (137)", since=fail_at,
                                  created=fail_at - 90, exit_code=137))
        return out

    def running(self, svc: SimService, now: float) -> int:
        return sum(1 for t in self.tasks(svc, now) if t.state == "running" and t.desired_state == "running")

    # -- logs ----------------------------------------------------------------

    def logs(self, svc: SimService, now: float, tail: int | None = 100) -> list[LogLine]:
        """The service's log lines up to `now`, oldest first, the last `tail` of them (None: an hour's)."""
        want = tail if tail is not None else 10_000
        interval = 4.0 + _rng(self.seed, "log-interval", svc.name).random() * 8
        horizon = now - (3600 if tail is None else max(want * interval * 1.5, 120))
        lines: list[LogLine] = []
        for task in self.tasks(svc, now):
            if task.container_id is None or task.state in ("preparing", "ready"):
                continue
            begin = task.since if task.state == "running" else task.created + 1.2
            end = now if task.state == "running" else task.since
            if end < horizon:
                continue
            node = task.node or ""
            lines.append(LogLine(begin + 0.05, 1, self._line(svc, begin, "start"), task.id, node))
            first = max(math.ceil(max(begin, horizon) / interval), math.ceil(begin / interval))
            n = first
            while n * interval < end:
                when = n * interval + (_digest(self.seed, task.id, n)[0] / 255) * interval * 0.9
                if begin < when < end:
                    lines.append(LogLine(when, 1, self._line(svc, f"{task.id}/{n}", "work"), task.id, node))
                n += 1
            if task.state == "failed":
                for offset, text in enumerate(self._crash(svc, task)):
                    lines.append(LogLine(end - 0.05 + offset * 0.001, 2, text, task.id, node))
        lines.sort(key=lambda line: line.when)
        return lines[-want:] if want else []

    def _line(self, svc: SimService, n: object, kind: str) -> str:
        rng = _rng(self.seed, "line", svc.site, svc.name, n)
        short = svc.service
        site = svc.site
        if kind == "start":
            if short == "postgres_exporter":
                return 'level=info msg="Listening on address" address=:9187'
            if short.startswith("autossh"):
                return "autossh[1]: starting ssh (count 1)"
            return f"INFO datatrail.{short}: starting {short} (datatrail 2026.11.2) at {site}"
        event = 400_000_000 + rng.randrange(2_000_000)
        files = rng.randrange(2, 900)
        gib = rng.random() * 40
        dataset = rng.choice(["chime.event.baseband.raw", "chime.event.intensity.raw", "kko.event.baseband.raw"])
        if short == "server":
            path = rng.choice(["/query/dataset/find", "/commit/dataset/transformation-status", "/query/file/info",
                               "/commit/file/replica", "/query/dataset/scopes"])
            return f'INFO datatrail.server: 10.10.0.{rng.randrange(2, 60)} "POST {path} HTTP/1.1" 200 {rng.random() * 80:.1f}ms'
        if short == "postgres_exporter":
            return f'level=info msg="collected metrics" duration_seconds={rng.random() * 0.3:.3f} server=frb-l4:5432'
        if short.startswith("autossh"):
            return f"autossh[1]: ssh child pid is {rng.randrange(20, 9000)}"
        if short == "replicator":
            return (f"INFO datatrail.replicator: replicated {files} files of {dataset}/{event} to minoc "
                    f"({gib:.1f} GiB in {rng.randrange(20, 600)}s), work from datatrail-replicator-{site}-minoc")
        if short in ("deletion_healer", "replication_healer"):
            tag = short.split("_")[0]
            return f"INFO datatrail.{short}: healed {tag} of {dataset}/{event} at {site} (datatrail-replica-heal)"
        if short == "event_registration":
            return f"INFO datatrail.event_registration: registered {files} files of event {event} at {site}"
        if short == "reattempt_unregistered":
            return f"INFO datatrail.reattempt_unregistered: {rng.randrange(0, 5)} datasets left in datatrail-unregistered-datasets"
        if short == "update_canfar_certificates":
            return "INFO datatrail.update_canfar_certificates: certificate valid for 9 more days, next check in 3600s"
        if short.startswith("replication_stager_") or short.startswith("deletion_stager_"):
            target = short.rsplit("_", 1)[1]
            bucket = f"datatrail-replicator-{target}-minoc" if short.startswith("replication") else "datatrail-replica-heal"
            return f"INFO datatrail.{short}: staged {rng.randrange(0, 40)} works for {target} into {bucket}"
        if short == "healing_stager":
            return f"INFO datatrail.healing_stager: staged {rng.randrange(0, 12)} works into datatrail-replica-heal"
        if short == "inventory":
            return f"INFO datatrail.inventory: {dataset} holds {files * 1000} files, {gib:.1f} TiB"
        if short == "metric_pusher":
            return f"INFO datatrail.metric_pusher: pushed {rng.randrange(150, 260)} metrics to prometheus"
        if short == "state_updater":
            return f"INFO datatrail.state_updater: updated state of {rng.randrange(1, 50)} datasets (datatrail-state-updater)"
        if short == "deletion_notification":
            return "INFO datatrail.deletion_notification: next monthly report on the 1st; 0 last-replica deletions upcoming"
        return f"heartbeat {n}"

    def _crash(self, svc: SimService, task: SimTask) -> list[str]:
        if task.exit_code == 137:
            return [f"WARNING datatrail.{svc.service}: memory at 98% of limit"]
        return [
            "Traceback (most recent call last):",
            f'  File "/usr/local/lib/python3.11/site-packages/datatrail/{svc.service}.py", line 212, in run',
            "    self.session.query(Dataset).filter_by(scope=scope).all()",
            "sqlalchemy.exc.OperationalError: (psycopg2.OperationalError) connection to server at "
            '"frb-l4.chime" (10.10.0.4), port 5432 failed: server closed the connection unexpectedly',
        ]
