"""One poll of every site at once, each in its own thread, none waiting for another."""

from __future__ import annotations

import threading
import time
from dataclasses import replace
from datetime import datetime, timezone

from ..config import Config
from ..model import SiteStatus, Snapshot
from .swarm import SwarmCollector


def poll_sites(config: Config, collectors: list[SwarmCollector] | None = None) -> tuple[SiteStatus, ...]:
    """Every site's status; a site that has not answered within the timeout is reported unreachable.

    Collectors made here are closed before returning (an ssh:// site's tunnel is a process and a
    directory); collectors passed in belong to the caller, which keeps them across polls.
    """
    owned = not collectors
    collectors = collectors or [
        SwarmCollector(site, config.timeout, config.health, max_bytes=config.max_bytes) for site in config.sites
    ]
    try:
        return _poll_all(config, collectors)
    finally:
        if owned:
            for collector in collectors:
                collector.close()


def _poll_all(config: Config, collectors: list[SwarmCollector]) -> tuple[SiteStatus, ...]:
    results: dict[str, SiteStatus] = {}

    def run(collector: SwarmCollector) -> None:
        results[collector.site.name] = collector.poll()

    threads = [threading.Thread(target=run, args=(c,), daemon=True, name=f"poll-{c.site.name}") for c in collectors]
    deadline = time.monotonic() + config.timeout + 0.5
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(max(0.0, deadline - time.monotonic()))
    now = datetime.now(timezone.utc)
    out = []
    for collector in collectors:
        status = results.get(collector.site.name)
        if status is None:
            status = replace(
                collector.last, reachable=False, error=f"timed out after {config.timeout:g}s", error_since=now
            )
        out.append(status)
    return tuple(out)


def snapshot(config: Config) -> Snapshot:
    """A one-shot snapshot of the whole world (used by `dtmon status`)."""
    from .buckets import link_consumers, start_poll
    from .prometheus import start_poll as start_progress

    deadline = time.monotonic() + config.timeout + 0.5
    wait_buckets = start_poll(config)  # runs while the sites are polled
    wait_progress = start_progress(config)  # so does Prometheus
    sites = poll_sites(config)
    buckets = wait_buckets(deadline - time.monotonic())
    if buckets is not None:
        buckets = link_consumers(buckets, sites)
    progress = wait_progress(deadline - time.monotonic())
    return Snapshot(generated_at=datetime.now(timezone.utc), sites=sites, buckets=buckets, progress=progress)
