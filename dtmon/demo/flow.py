"""Work flowing through the simulated world: bucket counts and Prometheus series, pure functions of time.

The numbers follow the simulated services: a replicator that is stopped lets its queue grow, a degraded
one drains slower than work arrives, running ones drain their backlog. Prometheus's replication
numbers are the replicator buckets' counts in files, so both sources tell the same story.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass

from .world import SITES, World, _rng

#: Files per replication work (a dataset chunk).
FILES_PER_WORK = 25

HOUR = 3600.0


@dataclass(frozen=True)
class Counts:
    queued: int
    running: int
    success: int
    failure: int

    @property
    def total(self) -> int:
        return self.queued + self.running + self.success + self.failure

    def as_json(self) -> dict[str, int]:
        """In the order the Buckets API gives them."""
        return {"total": self.total, "queued": self.queued, "running": self.running,
                "success": self.success, "failure": self.failure}


@dataclass(frozen=True)
class Series:
    """One Prometheus series: name, labels, and its value at any time (None: absent)."""

    name: str
    labels: tuple[tuple[str, str], ...]
    value: Callable[[float], float | None]

    @property
    def metric(self) -> dict[str, str]:
        return {"__name__": self.name, **dict(self.labels)}


def replicator_bucket(site: str) -> str:
    return f"datatrail-replicator-{site}-minoc"


HEAL_BUCKET = "datatrail-replica-heal"
STATE_BUCKET = "datatrail-state-updater"
#: A bucket of another pipeline: the default `datatrail-*` include leaves it out.
OTHER_BUCKET = "baseband-conversion"


class Flow:
    """Bucket counts and metric values of the world at any moment."""

    #: Works arriving per hour in each site's replicator bucket.
    ARRIVALS = {"chime": 120.0, "kko": 60.0, "gbo": 100.0, "hco": 40.0}
    #: Works one replicator replica finishes per hour.
    PER_REPLICA = 70.0

    def __init__(self, world: World) -> None:
        self.world = world

    # -- buckets ----------------------------------------------------------------

    def buckets(self) -> list[str]:
        return [*(replicator_bucket(site) for site in SITES), HEAL_BUCKET, STATE_BUCKET, OTHER_BUCKET]

    def _wave(self, name: str, t: float, size: float, period: float = 600.0) -> float:
        phase = _rng(self.world.seed, "wave", name).random() * 2 * math.pi
        return size * (1 + math.sin(2 * math.pi * t / period + phase)) / 2

    def _replicator(self, site: str):
        return self.world.service(site, "datatrail-client_replicator")

    def queued(self, bucket: str, t: float) -> int:
        start = self.world.start
        if bucket.startswith("datatrail-replicator-"):
            site = bucket.split("-")[2]
            svc = self._replicator(site)
            arrivals = self.ARRIVALS[site] / HOUR
            if svc.behaviour.kind == "stopped":
                # Nothing withdraws since the replicator was scaled to zero: every arrival stays queued.
                stopped_at = self.stopped_at(bucket)
                return 12 + max(0, round(self._arrivals(bucket, t)) - round(self._arrivals(bucket, stopped_at)))
            if svc.behaviour.kind == "pending":
                # One replica of two: it finishes fewer works than arrive since the second was lost.
                lost_at = self.world.pending_since(svc)
                net = arrivals - self.PER_REPLICA / HOUR
                return round(30 + net * max(0.0, t - lost_at) + self._wave(bucket, t, 6))
            capacity = self.PER_REPLICA * svc.replicas / HOUR
            backlog = 900 if site == "chime" else 150
            drained = backlog - (capacity - arrivals) * (t - start)
            return round(max(8.0, drained) + self._wave(bucket, t, 8))
        if bucket == HEAL_BUCKET:
            return round(max(40.0, 5200 - 150 * (t - start + 6 * HOUR) / HOUR) + self._wave(bucket, t, 20))
        if bucket == STATE_BUCKET:
            return round(self._wave(bucket, t, 24, period=300))
        return round(200 + self._wave(bucket, t, 50, period=1800))

    def _arrivals(self, bucket: str, t: float) -> float:
        """Works ever deposited in `bucket` by `t` (the first ones a year before the world started)."""
        rate = {HEAL_BUCKET: 60.0, STATE_BUCKET: 400.0, OTHER_BUCKET: 30.0}.get(bucket)
        if rate is None:
            rate = self.ARRIVALS[bucket.split("-")[2]]
        return rate * (t - (self.world.start - 365 * 86400)) / HOUR

    def running(self, bucket: str, t: float, queued: int) -> int:
        if queued <= 0:
            return 0
        if bucket.startswith("datatrail-replicator-"):
            return min(queued, self.world.running(self._replicator(bucket.split("-")[2]), t))
        if bucket == HEAL_BUCKET:
            healers = [s for s in self.world.all_services if s.deployed and s.service.endswith("_healer")]
            return min(queued, sum(self.world.running(s, t) for s in healers))
        if bucket == STATE_BUCKET:
            return min(queued, self.world.running(self.world.service("chime", "datatrail-daemons_state_updater"), t))
        return min(queued, 4)

    def stopped_at(self, bucket: str) -> float | None:
        """When the consumer of `bucket` was scaled to zero (None: it was not)."""
        if not bucket.startswith("datatrail-replicator-"):
            return None
        svc = self._replicator(bucket.split("-")[2])
        return self.world.times(svc, self.world.start).updated if svc.behaviour.kind == "stopped" else None

    def counts(self, bucket: str, t: float) -> Counts:
        queued = self.queued(bucket, t)
        running = self.running(bucket, t, queued)
        stopped_at = self.stopped_at(bucket)
        until = t if stopped_at is None else min(t, stopped_at)
        processed = max(0, round(self._arrivals(bucket, until)) - (12 if stopped_at is not None else queued) - running)
        failure = processed // 125
        return Counts(queued, running, processed - failure, failure)

    # -- Prometheus series -----------------------------------------------------------

    def _deletion_pending(self, site: str, t: float) -> float:
        backlog, rate = {"chime": (180_000, 9000), "kko": (24_000, 2000), "gbo": (40_000, 2500),
                         "hco": (6_000, 300)}[site]
        return max(0.0, backlog - rate * (t - self.world.start) / HOUR)

    def _deletion_done(self, site: str, t: float) -> float:
        backlog, rate = {"chime": (180_000, 9000), "kko": (24_000, 2000), "gbo": (40_000, 2500),
                         "hco": (6_000, 300)}[site]
        empty_at = self.world.start + backlog / rate * HOUR
        return 5_000_000 + rate * (min(t, empty_at) - (self.world.start - 90 * 86400)) / HOUR

    def _last_push(self, t: float) -> float | None:
        """When metric_pusher last pushed (every minute, while it runs)."""
        pusher = self.world.service("chime", "datatrail-daemons_metric_pusher")
        push = math.floor(t / 60.0) * 60.0 + 7.0
        if push > t:
            push -= 60.0
        for _ in range(240):
            if self.world.running(pusher, push) > 0:
                return push
            push -= 60.0
        return None

    def series(self) -> list[Series]:
        """Every series the simulated Prometheus holds."""
        out: list[Series] = []

        def add(name: str, fn: Callable[[float], float | None], **labels: str) -> None:
            out.append(Series(name, tuple(sorted(labels.items())), fn))

        pushed = {"job": "metric_pusher", "instance": ""}
        for site in SITES:
            bucket = replicator_bucket(site)
            add("datatrail_replication_pending_files",
                lambda t, b=bucket: float(self.queued(b, t) * FILES_PER_WORK), site=site, **pushed)
            add("datatrail_replication_completed_files_total",
                lambda t, b=bucket: float(self.counts(b, t).success * FILES_PER_WORK), site=site, **pushed)
            add("datatrail_replication_failed_files_total",
                lambda t, b=bucket: float(self.counts(b, t).failure * FILES_PER_WORK), site=site, **pushed)
            add("datatrail_deletion_pending_files", lambda t, s=site: self._deletion_pending(s, t), site=site, **pushed)
            add("datatrail_deletion_completed_files_total", lambda t, s=site: self._deletion_done(s, t),
                site=site, **pushed)
            add("datatrail_deletion_failed_files_total",
                lambda t, s=site: float(math.floor(self._deletion_done(s, t) / 4000)), site=site, **pushed)
        add("push_time_seconds", self._last_push, job="metric_pusher", instance="frb-vsop")
        exporter = self.world.service("chime", "datatrail_postgres_exporter")
        add("up", lambda t: 1.0, job="prometheus", instance="localhost:9090")
        add("up", lambda t: 1.0, job="pushgateway", instance="frb-vsop:9091")
        add("up", lambda t: float(self.world.running(exporter, t) > 0), job="postgres_exporter",
            instance="frb-vsop:9187")
        # hco is being set up: its node exporter is listed in the scrape config but not answering yet.
        add("up", lambda t: 0.0, job="node", instance="ha1.hco:9100")
        add("pg_up", lambda t: 1.0, job="postgres_exporter", instance="frb-vsop:9187")
        return out
