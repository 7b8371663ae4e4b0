"""Shared fixtures. `world`: two real Swarm sites (chime, kko) running Datatrail's stacks.

The world (see tests/world/README.md):

- chime: `datatrail` (server, postgres_exporter, autossh_kko), `datatrail-daemons` (with
  `inventory` failing over and over at once, `healing_stager` failing after ~12 s of running,
  `replication_stager_kko` running 1 of 2 replicas, and an unexpected `debug_shell`),
  `datatrail-client` (deployed without `update_canfar_certificates`: a partly deployed stack).
- kko: `datatrail-client`, healthy, with `deletion_healer` scaled to 0 (a stopped consumer).

Tests that change the world (pause or kill an engine) must put it back before they return.
"""

from __future__ import annotations

import atexit
import os
import shutil
import signal
import sys
import tempfile
from dataclasses import dataclass, field
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).parent))

# The suite depends on nothing in the host's home and writes nothing there: an operator's
# ~/.config/dtmon/config.toml, $DTMON_CONFIG or $DOCKER_HOST must not change what a test sees, and no
# audit log may land in ~/.local/state. Set before dtmon is imported (its default audit path is
# resolved at import). The real home stays known for pip, whose own config may live there.
os.environ.setdefault("DTMON_TEST_REAL_HOME", os.environ.get("HOME", ""))
_HOME = tempfile.mkdtemp(prefix="dtmon-test-home-")
atexit.register(shutil.rmtree, _HOME, True)
os.environ["HOME"] = _HOME
for _var in ("XDG_CONFIG_HOME", "XDG_STATE_HOME", "XDG_CACHE_HOME", "XDG_DATA_HOME", "DTMON_CONFIG",
             "DOCKER_HOST", "DOCKER_CONTEXT", "DOCKER_CONFIG", "DOCKER_TLS_VERIFY", "DOCKER_CERT_PATH"):
    os.environ.pop(_var, None)

from engines import Dockerd, require_engines, start_all, stop_all, write_config  # noqa: E402
from testworld import COMPOSE, deploy_world  # noqa: E402


def _terminated(signum, frame):
    raise KeyboardInterrupt(f"signal {signum}")


# `timeout pytest ...` sends SIGTERM: turn it into an interrupt so fixtures still stop their engines.
if signal.getsignal(signal.SIGTERM) is signal.SIG_DFL:
    signal.signal(signal.SIGTERM, _terminated)


@dataclass
class World:
    """The running test world: engines, compose files, and the facts tests check against."""

    dir: Path
    engines: dict[str, Dockerd]
    compose: dict[str, dict[str, Path]]
    #: (site, swarm name) of the services built to be in each state.
    failing: tuple[str, str] = ("chime", "datatrail-daemons_inventory")  #: a fast crash loop
    slow_loop: tuple[str, str] = ("chime", "datatrail-daemons_healing_stager")  #: runs ~12 s, then fails
    stopped: tuple[str, str] = ("kko", "datatrail-client_deletion_healer")  #: a consumer scaled to 0
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


@pytest.fixture(scope="session")
def world(tmp_path_factory: pytest.TempPathFactory):
    """Two real single-node swarms with Datatrail's stacks deployed; stopped and cleaned up at the end."""
    require_engines()
    tmp = tmp_path_factory.mktemp("world")
    engines = start_all(["chime", "kko"])
    try:
        deploy_world(engines, tmp)
        yield World(tmp, engines, COMPOSE)
    finally:
        stop_all(engines.values())


@pytest.hookimpl(tryfirst=True)  # before xdist's own hook, which turns the marks into groups
def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """Under pytest-xdist's `--dist loadgroup` (what `make test` runs), keep the tests that share an engine
    fixture on one worker, so each worker does not start its own: every test of the session-wide `world`
    in one group, and the tests of a module-scoped fixture (a module's own engines or Prometheus, whose
    tests may also build on each other in file order) in one group per module. Everything else spreads."""
    for item in items:
        info = getattr(item, "_fixtureinfo", None)
        if info is None:
            continue
        if "world" in info.names_closure:
            item.add_marker(pytest.mark.xdist_group("world"))
            continue
        scopes = {d.scope for defs in info.name2fixturedefs.values() for d in defs}
        if "module" in scopes:
            item.add_marker(pytest.mark.xdist_group(item.module.__name__ if item.module else item.nodeid))
