"""The demo's Buckets service: the project's Buckets-compatible server with the simulated world's counts."""

from __future__ import annotations

from typing import Any

from .buckets_server import STATUSES, BucketsServer, BucketsStore
from .flow import Flow


class SimulatedBuckets(BucketsStore):
    """Counts that follow the simulated services, plus any work deposited through the API."""

    def __init__(self, flow: Flow) -> None:
        super().__init__()
        self.flow = flow

    def pipelines(self) -> list[str]:
        return sorted(set(super().pipelines()) | set(self.flow.buckets()))

    def details(self, pipeline: str | None = None) -> dict[str, int]:
        counts: dict[str, Any] = super().details(pipeline)
        now = self.flow.world.now()
        simulated = self.flow.buckets() if pipeline is None else [b for b in self.flow.buckets() if b == pipeline]
        for bucket in simulated:
            extra = self.flow.counts(bucket, now).as_json()
            for key in ("total", *STATUSES):
                counts[key] += extra[key]
        return counts


def buckets_server(flow: Flow) -> BucketsServer:
    """A Buckets server on 127.0.0.1 at a port the OS picks, not yet started."""
    return BucketsServer(store=SimulatedBuckets(flow))
