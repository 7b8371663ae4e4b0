"""Start and stop the simulated world: one engine per site, compose files, and a config that points at them."""

from __future__ import annotations

import shutil
import tempfile
import threading
import time
from pathlib import Path

from .buckets_server import BucketsServer
from .buckets import buckets_server
from .engine import EngineServer, SiteApi
from .flow import Flow
from .prometheus import PrometheusServer
from .world import COMPOSE_FILES, DEFAULT_SEED, SITES, STACKS, World


def compose_text(world: World, site: str, stack: str) -> str:
    """A compose file for `stack` at `site` with the real service names (the unexpected one left out)."""
    lines = [
        f"# Simulated {stack} stack at {site}, written by `dtmon demo`.",
        'version: "3.8"',
        "services:",
    ]
    for svc in world.compose(site, stack):
        lines.append(f"  {svc.service}:")
        lines.append(f"    image: {svc.image}")
        if svc.command:
            lines.append("    command: [" + ", ".join(f'"{part}"' for part in svc.command) + "]")
        lines.append("    environment:")
        lines.append(f"      DATATRAIL_SITE: {site}")
        lines.append("    networks: [host]")
        lines.append("    deploy:")
        lines.append(f"      replicas: {svc.replicas}")
        if len(svc.nodes) == 1:
            lines.append(f'      placement: {{constraints: ["node.hostname == {svc.nodes[0]}"]}}')
    lines += ["networks:", "  host:", "    external: true", "    name: host", ""]
    return "\n".join(lines)


def config_text(demo: "Demo") -> str:
    """The demo's config.toml: every site's socket and compose files, the Buckets service and Prometheus."""
    lines = [
        "# Simulated Datatrail world, written by `dtmon demo`; it lives as long as the demo runs.",
        f"refresh = {demo.refresh:g}",
        f"timeout = {demo.timeout:g}",
        "",
    ]
    for site in demo.sites:
        lines.append(f"[sites.{site}]")
        lines.append(f'docker = "{demo.engines[site].url}"')
        lines.append(f"[sites.{site}.stacks]")
        for stack in STACKS[site]:
            lines.append(f'{stack} = "{demo.compose_paths[(site, stack)]}"')
        lines.append("")
    if demo.buckets is not None:
        lines += ["[buckets]", f'url = "{demo.buckets.url}"', 'include = ["datatrail-*"]', ""]
    if demo.prometheus is not None:
        lines += ["[prometheus]", f'url = "{demo.prometheus.url}"', 'window = "24h"', ""]
    return "\n".join(lines)


class Demo:
    """The running simulated world. Use as a context manager, or call `start()` and `stop()`."""

    def __init__(
        self,
        seed: int = DEFAULT_SEED,
        start: float | None = None,
        clock=time.time,
        config_dir: Path | None = None,
        refresh: float = 2.0,
        timeout: float = 3.0,
        sites: tuple[str, ...] = SITES,
        sources: bool = True,
    ) -> None:
        self.world = World(seed=seed, start=start, clock=clock)
        self.flow = Flow(self.world)
        self.sources = sources  #: also serve the Buckets service and Prometheus
        self.buckets: BucketsServer | None = None
        self.prometheus: PrometheusServer | None = None
        self.sites = sites
        self.refresh = refresh
        self.timeout = timeout
        self.config_dir = config_dir
        self.base: Path | None = None
        self.engines: dict[str, EngineServer] = {}
        self.compose_paths: dict[tuple[str, str], Path] = {}
        self.config_path: Path | None = None
        self._wrote_config = False

    def start(self) -> Path:
        """Serve every site (and the Buckets service and Prometheus), write compose files and the config; returns the config path."""
        # Under /tmp with a short name: unix socket paths are limited to 108 bytes.
        self.base = Path(tempfile.mkdtemp(prefix="dtmon-demo-", dir="/tmp"))
        try:
            for site in self.sites:
                self.engines[site] = EngineServer(SiteApi(self.world, site), str(self.base / f"{site}.sock")).start()
                stacks_dir = self.base / "stacks" / site
                stacks_dir.mkdir(parents=True, exist_ok=True)
                for stack in STACKS[site]:
                    path = stacks_dir / COMPOSE_FILES[(site, stack)]
                    path.write_text(compose_text(self.world, site, stack))
                    self.compose_paths[(site, stack)] = path
            if self.sources:
                self.buckets = buckets_server(self.flow).start()
                self.prometheus = PrometheusServer(self.flow).start()
            directory = self.config_dir or self.base
            directory.mkdir(parents=True, exist_ok=True)
            self.config_path = directory / "config.toml"
            self.config_path.write_text(config_text(self))
            self._wrote_config = True
        except BaseException:
            self.stop()
            raise
        return self.config_path

    def stop(self) -> None:
        """Stop every engine and source; remove sockets, compose files, the temp dir and the config written."""
        stoppers = [threading.Thread(target=engine.stop) for engine in self.engines.values()]
        for thread in stoppers:  # in parallel: each waits out its serve loop's poll interval
            thread.start()
        for thread in stoppers:
            thread.join()
        self.engines.clear()
        for source in (self.buckets, self.prometheus):
            if source is not None:
                source.stop()
        self.buckets = self.prometheus = None
        if self._wrote_config and self.config_path is not None:
            self.config_path.unlink(missing_ok=True)
            self._wrote_config = False
        if self.base is not None:
            shutil.rmtree(self.base, ignore_errors=True)
            self.base = None

    def __enter__(self) -> "Demo":
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()
