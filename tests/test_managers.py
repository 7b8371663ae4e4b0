"""Several managers per site, against one real swarm of three managers on loopback.

The first manager listed answers while it can; a worker or a dead manager is passed over for the next;
when too few managers are left to elect a leader, the site says the swarm lost its quorum.
Tests run in file order: the last ones kill managers.
"""

from __future__ import annotations

import json
import time
from pathlib import Path

import pytest
import yaml

from dtmon.collectors.swarm import SwarmCollector
from dtmon.config import load
from engines import Dockerd, require_engines, service_def, start_all, stop_all

pytestmark = pytest.mark.engine

STACK = "datatrail-client"


@pytest.fixture(scope="module")
def swarm(tmp_path_factory):
    """Three dockerds, one swarm: m1 inits it, m2 and m3 join as managers; a client stack deployed."""
    require_engines()
    tmp = tmp_path_factory.mktemp("managers")
    engines = start_all(["mgr1", "mgr2", "mgr3"])  # three single-node swarms...
    try:
        m1, m2, m3 = engines["mgr1"], engines["mgr2"], engines["mgr3"]
        for other in (m2, m3):  # ...two of which leave theirs to join m1's as managers
            other.docker("swarm", "leave", "--force")
            other.swarm_join(m1, "manager")
        compose = tmp / "client.yaml"
        compose.write_text(yaml.safe_dump(
            {"version": "3.8", "services": {"replicator": service_def(deploy={"placement": {
                "constraints": [f"node.id == {m1.node_id()}"]}})},
             "networks": {"hostnet": {"external": True, "name": "host"}}}, sort_keys=False))
        m1.stack_deploy(compose, STACK)
        m1.wait_converged({f"{STACK}_replicator": (1, 1)})
        config = tmp / "config.toml"
        config.write_text(
            "refresh = 1.0\ntimeout = 3.0\n[sites.chime]\n"
            f"docker = {json.dumps([m1.url, m2.url, m3.url])}\n"
            f"[sites.chime.stacks]\n{json.dumps(STACK)} = {json.dumps(str(compose))}\n"
        )
        yield engines, config
    finally:
        stop_all(engines.values())


def poll_until(collector: SwarmCollector, condition, timeout: float = 60.0, what: str = "a condition"):
    deadline = time.monotonic() + timeout
    while True:
        status = collector.poll()
        if condition(status):
            return status
        if time.monotonic() > deadline:
            raise AssertionError(f"gave up waiting for {what}; last: reachable={status.reachable} "
                                 f"manager={status.manager} error={status.error!r}")
        time.sleep(0.3)


def test_the_first_manager_answers_while_it_can(swarm):
    engines, config = swarm
    collector = SwarmCollector(load(config).site("chime"), 3.0)
    try:
        status = poll_until(collector, lambda s: s.reachable, what="a first answer")
    finally:
        collector.close()
    assert status.manager == engines["mgr1"].url and status.manager_index == 0 and status.manager_notes == ()
    assert {s.name: (s.running, s.desired) for s in status.services} == engines["mgr1"].service_ls()
    assert sorted(n.role for n in status.nodes) == ["manager"] * 3


def test_a_worker_is_passed_over_and_named(swarm):
    engines, config = swarm
    m1, m2 = engines["mgr1"], engines["mgr2"]
    collector = SwarmCollector(load(config).site("chime"), 3.0)
    m2.docker("node", "demote", m1.node_id())
    try:
        # While the demotion settles m1 may say something else for a moment; then it answers as a worker.
        worker = (f"{m1.url}: a worker, not a manager",)
        status = poll_until(collector, lambda s: s.reachable and s.manager_notes == worker, what="m1 to be passed over")
        assert status.manager == m2.url and status.manager_index == 1
    finally:
        m2.docker("node", "promote", m1.node_id())
        try:
            poll_until(collector, lambda s: s.reachable and s.manager_index == 0, what="m1 to answer again")
        finally:
            collector.close()


async def test_the_dashboards_event_stream_follows_the_manager_that_answers(swarm):
    import dataclasses

    from dtmon.app import DtmonApp

    engines, config = swarm
    m1, m2 = engines["mgr1"], engines["mgr2"]
    loaded = load(config)
    # Polled every second even while live: demoting a node makes no service or container event.
    app = DtmonApp(dataclasses.replace(loaded, events=dataclasses.replace(loaded.events, refresh=1.0)))
    replicator = f"{STACK}_replicator"

    async with app.run_test(size=(120, 30)) as pilot:
        async def until(condition, what: str, timeout: float = 60.0) -> None:
            deadline = time.monotonic() + timeout
            while not condition():
                assert time.monotonic() < deadline, f"gave up waiting for {what}"
                await pilot.pause(0.05)

        stream = app.streams["chime"]
        await until(lambda: "chime" in app.live and stream.base_url == m1.url, "events from m1")
        m2.docker("node", "demote", m1.node_id())
        try:
            await until(lambda: app.sites["chime"].manager == m2.url, "m1 passed over")
            await until(lambda: stream.base_url == m2.url and stream.connected, "events from m2", timeout=10)
            assert "chime" in app.live
            polls = app.polls
            m2.docker("service", "scale", "-d", f"{replicator}=0")
            await until(lambda: app.sites["chime"].services[0].desired == 0, "the scale on screen", timeout=2)
            assert app.polls - polls <= 3
        finally:
            m2.docker("service", "scale", "-d", f"{replicator}=1")
            m2.docker("node", "promote", m1.node_id())
        await until(lambda: app.sites["chime"].manager == m1.url, "m1 answering again")
        await until(lambda: stream.base_url == m1.url and stream.connected, "events from m1 again", timeout=10)
    assert not stream.alive
    m1.wait_converged({replicator: (1, 1)})


def test_first_manager_dead_the_next_answers_then_no_quorum_said_plainly(swarm, tmp_path):
    import subprocess
    import sys

    engines, config = swarm
    m1, m2, m3 = engines["mgr1"], engines["mgr2"], engines["mgr3"]
    collector = SwarmCollector(load(config).site("chime"), 3.0)
    try:
        poll_until(collector, lambda s: s.reachable and s.manager_index == 0, what="m1 to answer")
        m1.kill()
        # The others elect a new leader (seconds), then one of them answers: the site stays reachable.
        status = poll_until(collector, lambda s: s.reachable, what="another manager to answer")
        assert status.manager in (m2.url, m3.url)
        assert status.manager_notes[0].startswith(f"{m1.url}: connection failed")
        assert {s.name: (s.running, s.desired) for s in status.services}.keys() == {f"{STACK}_replicator"}
        report = json.loads(subprocess.run([sys.executable, "-m", "dtmon", "--config", str(config), "status", "--json"],
                                           capture_output=True, text=True, timeout=60).stdout)
        (site,) = report["sites"]
        assert site["reachable"] and site["manager"] in (m2.url, m3.url) and site["outage"] is None
        assert site["managers_passed_over"][0].startswith(f"{m1.url}: ")

        m2.kill()
        # One manager of three is left: it answers, but only to say there is no leader. That is the
        # swarm's own outage, said as such, not "unreachable".
        lost = poll_until(collector, lambda s: s.outage == "no quorum", timeout=60, what="the quorum to be lost")
        assert not lost.reachable
        assert lost.error.startswith("the swarm has lost its quorum: 1 of 3 managers up, too few to elect a leader"), lost.error
        assert f"{m3.url}: no leader" in lost.error
        assert lost.problems()[0].startswith("chime: no quorum: the swarm has lost its quorum")
        proc = subprocess.run([sys.executable, "-m", "dtmon", "--config", str(config), "status", "--json"],
                              capture_output=True, text=True, timeout=60)
        (site,) = json.loads(proc.stdout)["sites"]
        assert proc.returncode == 1
        assert site["outage"] == "no quorum" and not site["reachable"]
    finally:
        collector.close()  # the killed engines are cleaned up by the fixture's stop
