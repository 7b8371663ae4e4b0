#!/usr/bin/env python3
"""Measure dtmon against real engines and print figures, with ratios against the docker CLI.

Runs on the test world (tests/testworld.py: two private dockerd instances, `chime` with three
stacks and `kko` with one), started here and stopped at the end. Needs root and the Debian
packages the tests need (`make test` installs them). Nothing here asserts a target: it prints.

    python scripts/bench.py [--repeat N] [--tui-seconds S]

Figures:

- one poll of one site, warm (dtmon's collector in-process) against `docker service ls` on the
  same engine, and how many HTTP requests a poll makes;
- `dtmon status --json` from a cold start against the docker CLI commands an operator runs for
  the same picture (`service ls` and `stack ps` per stack, site after site);
- `dtmon status --json` while one manager is hung (SIGSTOP), against the configured timeout;
- terminal output of the dashboard per minute (what an SSH session carries), on the test world
  and on the demo world, at 120x40.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "tests"))
sys.path.insert(0, str(ROOT))

from engines import DOCKER_CLI, missing_requirements, start_all, stop_all, write_config  # noqa: E402
from ptyterm import PtyTerminal  # noqa: E402
from testworld import COMPOSE, deploy_world  # noqa: E402

from dtmon.collectors.swarm import SwarmCollector  # noqa: E402
from dtmon.config import load  # noqa: E402


def timed(fn: Callable[[], object], repeat: int) -> list[float]:
    """Wall times of `repeat` calls, in milliseconds."""
    times = []
    for _ in range(repeat):
        started = time.perf_counter()
        fn()
        times.append((time.perf_counter() - started) * 1000)
    return times


def summary(times: list[float]) -> str:
    return f"median {statistics.median(times):7.1f} ms   min {min(times):7.1f} ms"


def ratio(ours: list[float], theirs: list[float]) -> str:
    return f"{statistics.median(ours) / statistics.median(theirs):.2f}x the docker CLI"


def run(cmd: list[str], env: dict[str, str] | None = None, check: bool = True) -> subprocess.CompletedProcess:
    result = subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=120)
    if check and result.returncode not in (0, 1):  # dtmon status exits 1 on problems: the world has some
        raise SystemExit(f"bench: {' '.join(cmd)} exited {result.returncode}: {result.stderr.strip()}")
    return result


def count_requests(fn: Callable[[], object]) -> int:
    """How many HTTP requests `fn` sends through httpx (the collectors' transport)."""
    import httpx

    sent = 0
    original = httpx.Client.send

    def counting(self, request, **kwargs):
        nonlocal sent
        sent += 1
        return original(self, request, **kwargs)

    httpx.Client.send = counting
    try:
        fn()
    finally:
        httpx.Client.send = original
    return sent


def tui_bytes(cmd: list[str], seconds: float, settle: float = 5.0) -> tuple[int, int]:
    """(bytes in the first `settle` seconds, bytes per minute after) written by the dashboard at 120x40."""
    with PtyTerminal(cmd, lines=40, columns=120) as term:
        first = len(term.read_for(settle))
        later = len(term.read_for(seconds))
        os.write(term.fd, b"q")  # quit as an operator does; leaving the block ends it either way
        term.read_for(2.0)
    return first, round(later * 60 / seconds)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--repeat", type=int, default=20, help="samples per in-process figure (default 20)")
    parser.add_argument("--tui-seconds", type=float, default=30.0, help="seconds of dashboard output measured (default 30)")
    args = parser.parse_args()
    if why := missing_requirements():
        print(f"bench: cannot start engines: {why}", file=sys.stderr)
        return 2

    dtmon = [sys.executable, "-m", "dtmon"]
    work = Path(tempfile.mkdtemp(prefix="dtmon-bench-"))
    print("starting the test world (2 engines)...", flush=True)
    engines = start_all(["chime", "kko"])
    try:
        deploy_world(engines, work)
        entries = [(name, engines[name].url, COMPOSE[name]) for name in ("chime", "kko")]
        config_path = write_config(work / "bench.toml", entries, timeout=2.0, refresh=2.0)
        config = load(config_path)
        services = {name: len(e.service_ls()) for name, e in engines.items()}
        print(f"world: {', '.join(f'{n} {c} services' for n, c in services.items())}; python {sys.version.split()[0]}\n")

        print("one poll of one site, warm (in-process collector vs `docker service ls`):")
        for site in config.sites:
            collector = SwarmCollector(site, config.timeout, config.health)
            collector.fetch()  # connect and negotiate the API version once, as the dashboard does
            requests = count_requests(collector.fetch)
            ours = timed(collector.fetch, args.repeat)
            cli = timed(lambda: run([DOCKER_CLI, "-H", site.docker, "service", "ls"]), max(5, args.repeat // 2))
            collector.close()
            print(f"  {site.name:6} dtmon  {summary(ours)}   ({requests} HTTP requests per poll)")
            print(f"  {'':6} docker {summary(cli)}   dtmon is {ratio(ours, cli)}")

        repeat = max(3, args.repeat // 4)
        print("\nthe whole picture from a cold start (`dtmon status --json` vs the CLI an operator types):")
        status = timed(lambda: run(dtmon + ["--config", str(config_path), "status", "--json"]), repeat)

        def cli_picture() -> None:
            for site in config.sites:
                run([DOCKER_CLI, "-H", site.docker, "service", "ls"])
                for stack in site.stacks:
                    run([DOCKER_CLI, "-H", site.docker, "stack", "ps", stack], check=False)

        cli = timed(cli_picture, repeat)
        calls = sum(1 + len(site.stacks) for site in config.sites)
        print(f"  dtmon status --json      {summary(status)}")
        print(f"  docker CLI ({calls} commands)  {summary(cli)}   dtmon is {ratio(status, cli)}")

        print(f"\none manager hung (kko under SIGSTOP), timeout {config.timeout:g}s:")
        engines["kko"].pause()
        try:
            started = time.perf_counter()
            result = run(dtmon + ["--config", str(config_path), "status", "--json"])
            elapsed = time.perf_counter() - started
        finally:
            engines["kko"].resume()
        report = json.loads(result.stdout)
        kko = next(s for s in report["sites"] if s["name"] == "kko")
        chime = next(s for s in report["sites"] if s["name"] == "chime")
        print(f"  dtmon status --json answered in {elapsed:.2f} s (budget: timeout + 1 s = {config.timeout + 1:g} s)")
        print(f"  kko reachable={kko['reachable']} error={kko['error']!r}; "
              f"chime reachable={chime['reachable']} with {sum(len(s['services']) for s in chime['stacks'])} services")
        print("  docker CLI: `docker service ls` against a hung manager waits with no timeout of its own")

        print(f"\ndashboard output at 120x40 (bytes an SSH session carries), {args.tui_seconds:g}s after a 5s start:")
        first, per_minute = tui_bytes(dtmon + ["--config", str(config_path)], args.tui_seconds)
        print(f"  test world (services)        first paint {first / 1024:6.1f} KB   then {per_minute / 1024:6.1f} KB/min")
        first, per_minute = tui_bytes(dtmon + ["demo"], args.tui_seconds)
        print(f"  demo world (all three panes) first paint {first / 1024:6.1f} KB   then {per_minute / 1024:6.1f} KB/min")
    finally:
        stop_all(engines.values())
        shutil.rmtree(work, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
