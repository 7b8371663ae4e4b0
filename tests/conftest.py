"""Shared fixtures. `world`: two real Swarm sites (chime, kko) running Datatrail's stacks.

The world (see tests/world/README.md):

- chime: `datatrail` (server, postgres_exporter, autossh_kko), `datatrail-daemons` (with
  `inventory` failing over and over, `replication_stager_kko` running 1 of 2 replicas, and an
  unexpected `debug_shell`), `datatrail-client` (deployed without `update_canfar_certificates`).
- kko: `datatrail-client`, all healthy.

Tests that change the world (pause or kill an engine) must put it back before they return.
"""

from __future__ import annotations

import signal
import sys
from dataclasses import dataclass, field
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).parent))

from engines import Dockerd, compose_variant, require_engines, service_def, start_all, stop_all, write_config  # noqa: E402

WORLD = Path(__file__).parent / "world"


def _terminated(signum, frame):
    raise KeyboardInterrupt(f"signal {signum}")


# `timeout pytest ...` sends SIGTERM: turn it into an interrupt so fixtures still stop their engines.
if signal.getsignal(signal.SIGTERM) is signal.SIG_DFL:
    signal.signal(signal.SIGTERM, _terminated)

#: site -> stack -> compose file the config names.
COMPOSE = {
    "chime": {
        "datatrail": WORLD / "chime" / "server-compose.yaml",
        "datatrail-daemons": WORLD / "chime" / "daemon-compose.yaml",
        "datatrail-client": WORLD / "chime" / "chime-client.yaml",
    },
    "kko": {"datatrail-client": WORLD / "kko" / "kko-client.yaml"},
}


@dataclass
class World:
    """The running test world: engines, compose files, and the facts tests check against."""

    dir: Path
    engines: dict[str, Dockerd]
    compose: dict[str, dict[str, Path]]
    #: (site, swarm name) of the services built to be in each state.
    failing: tuple[str, str] = ("chime", "datatrail-daemons_inventory")
    degraded: tuple[str, str] = ("chime", "datatrail-daemons_replication_stager_kko")
    missing: tuple[str, str] = ("chime", "datatrail-client_update_canfar_certificates")
    unexpected: tuple[str, str] = ("chime", "datatrail-daemons_debug_shell")
    _configs: int = field(default=0, repr=False)

    @property
    def config(self) -> Path:
        """The full config: every site and stack."""
        return self.write_config("world.toml")

    def write_config(self, filename: str | None = None, sites: dict[str, list[str]] | None = None,
                     timeout: float = 3.0, refresh: float = 1.0, urls: dict[str, str] | None = None) -> Path:
        """A config for some sites and stacks (default: all) in the world's temp dir."""
        if filename is None:
            self._configs += 1
            filename = f"config-{self._configs}.toml"
        chosen = sites or {name: list(stacks) for name, stacks in self.compose.items()}
        urls = urls or {}
        entries = [
            (name, urls.get(name, self.engines[name].url), {s: self.compose[name][s] for s in stacks})
            for name, stacks in chosen.items()
        ]
        return write_config(self.dir / filename, entries, timeout=timeout, refresh=refresh)


def _deploy_world(engines: dict[str, Dockerd], tmp: Path) -> None:
    chime, kko = engines["chime"], engines["kko"]
    chime.stack_deploy(COMPOSE["chime"]["datatrail"], "datatrail")
    daemons = compose_variant(
        COMPOSE["chime"]["datatrail-daemons"], tmp / "deployed" / "chime-daemons.yaml",
        add={"debug_shell": service_def()},
    )
    chime.stack_deploy(daemons, "datatrail-daemons")
    client = compose_variant(
        COMPOSE["chime"]["datatrail-client"], tmp / "deployed" / "chime-client.yaml",
        drop=["update_canfar_certificates"],
    )
    chime.stack_deploy(client, "datatrail-client")
    kko.stack_deploy(COMPOSE["kko"]["datatrail-client"], "datatrail-client")

    healthy_chime = ["datatrail_server", "datatrail_postgres_exporter", "datatrail_autossh_kko"]
    healthy_chime += [f"datatrail-daemons_{s}" for s in
                      ("state_updater", "metric_pusher", "healing_stager", "deletion_stager_kko", "debug_shell")]
    healthy_chime += [f"datatrail-client_{s}" for s in
                      ("replicator", "deletion_healer", "replication_healer", "event_registration",
                       "reattempt_unregistered")]
    expect = {name: (1, 1) for name in healthy_chime}
    expect["datatrail-daemons_replication_stager_kko"] = (1, 2)
    chime.wait_converged(expect)
    kko.wait_converged({f"datatrail-client_{s}": (1, 1) for s in
                        ("replicator", "deletion_healer", "replication_healer", "event_registration",
                         "reattempt_unregistered", "update_canfar_certificates")})

    def inventory_failed() -> bool:
        return any((t.get("Status") or {}).get("Err") for t in chime.tasks("datatrail-daemons_inventory"))

    chime.wait_until(inventory_failed, 30, "inventory to fail once", interval=0.2)


@pytest.fixture(scope="session")
def world(tmp_path_factory: pytest.TempPathFactory):
    """Two real single-node swarms with Datatrail's stacks deployed; stopped and cleaned up at the end."""
    require_engines()
    tmp = tmp_path_factory.mktemp("world")
    engines = start_all(["chime", "kko"])
    try:
        _deploy_world(engines, tmp)
        yield World(tmp, engines, COMPOSE)
    finally:
        stop_all(engines.values())
