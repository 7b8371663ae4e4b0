"""`dtmon status --json` with real swarms (the `world` fixture) and a Buckets service fed by the official
client: counts as the client reads them, consumers linked to the engines' services, problems flagged, and a
slow Buckets service that delays nothing else."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest
from budget import beyond_startup
from buckets_peers import buckets_server, workflow  # noqa: F401 - fixtures

pytestmark = pytest.mark.engine

KKO = "datatrail-replicator-kko-minoc"
CHIME = "datatrail-replicator-chime-minoc"
HEAL = "datatrail-replica-heal"
STATE = "datatrail-state-updater"
STAGER = "datatrail-stager-kko"  # consumed by chime's degraded replication_stager_kko (override)
CANFAR = "datatrail-canfar-certs"  # consumed by chime's missing update_canfar_certificates (override)
REGISTRATION = "datatrail-registration"  # no documented consumer
UNREGISTERED = "datatrail-unregistered-datasets"  # reattempt_unregistered at every site (the operations page)

CONSUMERS = f'''
[buckets.consumers]
"{STAGER}" = "chime/datatrail-daemons_replication_stager_kko"
"datatrail-canfar-*" = "chime/datatrail-client_update_canfar_certificates"
'''


def run_status(config: Path) -> tuple[int, dict, float]:
    env = {k: v for k, v in os.environ.items() if k not in ("DTMON_CONFIG", "DOCKER_HOST")}
    started = time.monotonic()
    proc = subprocess.run([sys.executable, "-m", "dtmon", "status", "--json", "--config", str(config)],
                          capture_output=True, text=True, timeout=60, env=env)
    elapsed = time.monotonic() - started
    assert "Traceback" not in proc.stderr, proc.stderr
    return proc.returncode, json.loads(proc.stdout), elapsed


def world_config(world, url: str, name: str, timeout: float = 3.0) -> Path:
    path = world.write_config(name, timeout=timeout)
    with path.open("a") as out:
        out.write(f'\n[buckets]\nurl = "{url}"\ninclude = ["datatrail-*"]\n{CONSUMERS}')
    return path


def test_status_links_buckets_to_the_engines_services(world, buckets_server, workflow):
    url = buckets_server.url
    workflow.deposit(url, KKO, 4, site="kko")
    workflow.withdraw(url, KKO, 1)
    workflow.deposit(url, CHIME, 2)
    workflow.deposit(url, HEAL, 3, site="kko")
    workflow.deposit(url, STATE, 1)
    workflow.withdraw(url, STATE, 1)  # nothing left waiting
    workflow.deposit(url, STAGER, 2)
    workflow.deposit(url, CANFAR, 1)
    workflow.deposit(url, REGISTRATION, 5)
    workflow.deposit(url, UNREGISTERED, 2)

    code, data, _ = run_status(world_config(world, url, "buckets-world.toml"))

    buckets = {b["name"]: b for b in data["buckets"]}
    assert sorted(buckets) == sorted([KKO, CHIME, HEAL, STATE, STAGER, CANFAR, REGISTRATION, UNREGISTERED])
    for name, entry in buckets.items():
        official = workflow.status(url, name)
        assert {k: entry[k] for k in official} == official, name

    assert (buckets[KKO]["consumer"], buckets[KKO]["consumer_state"]) == ("kko/datatrail-client_replicator", "running")
    assert (buckets[CHIME]["consumer"], buckets[CHIME]["consumer_state"]) == (
        "chime/datatrail-client_replicator", "running")
    assert buckets[STATE]["consumers"] == [{"service": "chime/datatrail-daemons_state_updater", "state": "running"}]
    heal = {c["service"]: c["state"] for c in buckets[HEAL]["consumers"]}
    assert heal == {**{f"{site}/datatrail-client_{s}": "running" for site in ("chime", "kko")
                       for s in ("deletion_healer", "replication_healer")},
                    "kko/datatrail-client_deletion_healer": "stopped"}  # scaled to 0 in the world
    assert buckets[HEAL]["consumer_state"] == "stopped"  # the worst consumer, though three of four run
    assert {c["service"]: c["state"] for c in buckets[UNREGISTERED]["consumers"]} == {
        f"{site}/datatrail-client_reattempt_unregistered": "running" for site in ("chime", "kko")}
    assert (buckets[REGISTRATION]["consumer"], buckets[REGISTRATION]["consumer_state"]) == (None, None)
    for name in (KKO, CHIME, STATE, UNREGISTERED):
        assert buckets[name]["problem"] is None, buckets[name]

    assert buckets[STAGER]["consumer_state"] == "degraded"
    assert buckets[CANFAR]["consumer_state"] == "missing"
    bucket_problems = sorted(p for p in data["problems"] if p.startswith("bucket "))
    assert bucket_problems == [
        f"bucket {CANFAR}: 1 queued, consumer not running: chime/datatrail-client_update_canfar_certificates missing",
        f"bucket {REGISTRATION}: 5 queued, consumer unknown: map it in [buckets.consumers]",
        f"bucket {HEAL}: 3 queued, consumer not running: kko/datatrail-client_deletion_healer stopped",
        f"bucket {STAGER}: 2 queued, consumer not running: chime/datatrail-daemons_replication_stager_kko degraded",
    ]
    assert code == 1
    # The sites are complete beside the buckets.
    assert [s["name"] for s in data["sites"]] == ["chime", "kko"]
    assert all(s["reachable"] and s["stacks"] for s in data["sites"])


@pytest.mark.parametrize(("fault", "error"), [
    ("slow", "timed out after 2s"),
    ("500", "HTTP 500 Internal Server Error"),
    ("garbage", "malformed answer: not JSON ('<html>502 Bad Gateway</html>\\x00{not json')"),
])
def test_failing_buckets_service_delays_nothing_else(world, buckets_server, fault, error):
    buckets_server.store.add(KKO, 3)
    buckets_server.fault = fault
    timeout = 2.0
    code, data, elapsed = run_status(world_config(world, buckets_server.url, f"buckets-{fault}.toml", timeout=timeout))
    assert code == 1
    assert data["buckets_source"]["reachable"] is False
    assert data["buckets_source"]["error"] == f"{buckets_server.url}/status/pipelines: {error}"
    assert data["buckets"] == []
    assert f"buckets: unreachable: {data['buckets_source']['error']}" in data["problems"]
    assert all(s["reachable"] and s["stacks"] for s in data["sites"]), data["sites"]
    kko = next(s for s in data["sites"] if s["name"] == "kko")
    assert {svc["state"] for st in kko["stacks"] for svc in st["services"]} == {"running", "stopped"}  # complete
    assert beyond_startup(elapsed) < timeout + 1.0, elapsed


def test_crash_loops_and_a_stopped_consumer_are_problems_at_every_poll(world, buckets_server, workflow):
    """The fast loop (inventory), the slow one (healing_stager: runs ~12 s, then fails) and the heal queue
    whose consumer is scaled to 0 at kko are in `problems` at every poll, over a whole cycle of the slow
    loop: also at the instants its replica runs."""
    url = buckets_server.url
    workflow.deposit(url, HEAL, 2, site="kko")
    config = world_config(world, url, "buckets-truth.toml")
    chime = world.engines["chime"]
    fast, slow, stopped = world.failing[1], world.slow_loop[1], world.stopped

    def failed_thrice() -> bool:
        return sum(1 for t in chime.tasks(slow) if (t.get("Status") or {}).get("State") == "failed") >= 3

    chime.wait_until(failed_thrice, 120, "the slow loop to fail three times", interval=1.0)
    slow_states, polls = set(), 0
    started = time.monotonic()
    while polls < 6 or time.monotonic() - started < 16:  # longer than one cycle of the slow loop
        code, data, _ = run_status(config)
        polls += 1
        assert code == 1
        problems = data["problems"]
        assert any(p.startswith(f"chime {fast}: crashloop ") for p in problems), problems
        assert any(p.startswith(f"chime {slow}: crashloop ") for p in problems), problems
        assert (f"bucket {HEAL}: 2 queued, consumer not running: {stopped[0]}/{stopped[1]} stopped") in problems
        chime_services = {s["name"]: s for st in data["sites"][0]["stacks"] for s in st["services"]}
        row = chime_services[slow]
        slow_states.add((row["running"], row["state"]))
        assert row["error"] == "task: non-zero exit (1)" and row["looping_since"] is not None
        # The fast loop fills the swarm's task history (5 per slot) within seconds: its count is a lower bound.
        assert chime_services[fast]["failed_capped"] is True and chime_services[fast]["failed_recent"] >= 4
        heal = next(b for b in data["buckets"] if b["name"] == HEAL)
        assert heal["consumer_state"] == "stopped"
    assert (1, "crashloop") in slow_states, slow_states  # flagged while its replica ran
