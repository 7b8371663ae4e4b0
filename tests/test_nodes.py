"""The nodes view: what it shows equals `docker node ls` on a real engine; a drained or down node is a problem."""

from __future__ import annotations

import time

import pytest
from tui_fakes import chime, fake_config, frozen_clock, kko, world as fake_world

from dtmon.app import DtmonApp
from dtmon.collectors.swarm import SwarmCollector, node_info
from dtmon.config import load
from dtmon.format import NODE_COLUMNS, node_rows, site_chip, site_problem_count
from dtmon.model import NodeInfo, Snapshot
from dtmon.screens.nodes import NodesScreen

ENGINE_NODE = {
    "ID": "abc123",
    "Spec": {"Role": "manager", "Availability": "drain"},
    "Description": {"Hostname": "aux\x1b]0;x\x07.kko", "Engine": {"EngineVersion": "20.10.24"}},
    "Status": {"State": "ready"},
    "ManagerStatus": {"Leader": True},
}


def test_node_info_reads_the_engine_fields_cleaned():
    node = node_info(ENGINE_NODE, tasks_running=3)
    assert (node.role, node.leader, node.state, node.availability, node.engine_version, node.tasks_running) == (
        "manager", True, "ready", "drain", "20.10.24", 3)
    assert "\x1b" not in node.hostname and "\x07" not in node.hostname
    assert node.problem == "drained"
    assert node_info({**ENGINE_NODE, "ManagerStatus": {"Leader": "yes"}}).leader is False  # only a JSON true


@pytest.mark.parametrize("state,availability,problem", [
    ("ready", "active", None), ("ready", "pause", None), ("ready", "drain", "drained"),
    ("down", "active", "down"), ("disconnected", "drain", "disconnected"), ("", "active", "unknown"),
])
def test_down_or_drained_is_a_problem(state, availability, problem):
    assert NodeInfo("i", "h", "worker", state, availability).problem == problem


def test_a_bad_node_counts_in_the_chip_the_site_row_and_status_problems():
    from dataclasses import replace

    site = replace(chime(), stacks=chime().stacks[:1],
                   nodes=(NodeInfo("n1", "frb-vsop", "manager", "ready", "active", leader=True),
                          NodeInfo("n2", "outrigger", "worker", "down", "active")))
    assert site_problem_count(site) == 1
    assert "▲1" in site_chip(site, frozen_clock()).text
    assert "chime node outrigger: down" in site.problems()
    assert not Snapshot(frozen_clock(), sites=(site,)).healthy
    unreachable = replace(site, reachable=False, error="gone")
    assert unreachable.node_problems == 0  # the site itself is the problem; its old nodes are not counted again


async def test_n_opens_the_nodes_screen_and_esc_goes_back():
    from dataclasses import replace

    sites = [replace(chime(), nodes=(NodeInfo("n1", "frb-vsop", "manager", "ready", "active", True, "20.10.24", 12),
                                     NodeInfo("n2", "outrigger", "worker", "ready", "drain", False, "20.10.24", 0))),
             kko()]
    app = DtmonApp(fake_config(), collectors=fake_world(*sites), clock=frozen_clock)
    async with app.run_test(size=(120, 40)) as pilot:
        while app.polls < 2:
            await pilot.pause(0.02)
        await pilot.press("n")
        assert isinstance(app.screen, NodesScreen)
        table = app.screen.query_one("#nodes")
        assert [r.key for r in table.shown_rows] == ["node:chime/n1", "node:chime/n2"]
        assert [c.text for c in table.shown_rows[1].cells] == ["chime", "outrigger", "worker", "", "ready", "drain",
                                                              "0", "20.10.24"]
        assert "1 down or drained" in str(app.screen.query_one("#nodes-summary").render())
        await pilot.press("escape")
        assert not isinstance(app.screen, NodesScreen)


@pytest.mark.engine
def test_nodes_equal_docker_node_ls(world):
    engine = world.engines["chime"]
    config = load(world.config)
    collector = SwarmCollector(config.sites[0], config.timeout, config.health)

    def running_here() -> int:
        """The watched stacks' running tasks on this node, as `docker node ps` lists them."""
        ps = engine.docker("node", "ps", "self", "--filter", "desired-state=running",
                           "--format", "{{.Name}} {{.CurrentState}}")
        return len([l for l in ps.stdout.splitlines() if l.split(".")[0].split("_")[0] in config.sites[0].stacks
                    and " Running " in f" {l.split(' ', 1)[1]} "])

    try:
        status = collector.poll()
        assert status.reachable, status.error
        ls = engine.docker("node", "ls", "--format",
                           "{{.ID}}\t{{.Hostname}}\t{{.Status}}\t{{.Availability}}\t{{.ManagerStatus}}\t{{.EngineVersion}}")
        expected = []
        for line in ls.stdout.strip().splitlines():
            node_id, hostname, state, availability, manager, version = line.split("\t")
            expected.append((node_id, hostname, state.lower(), availability.lower(), manager == "Leader", version))
        shown = [(n.id[: len(e[0])], n.hostname, n.state, n.availability, n.leader, n.engine_version)
                 for n, e in zip(status.nodes, expected)]
        assert shown == expected and len(status.nodes) == len(expected)
        # The world's crash loops start and end tasks all the time, so a poll and `docker node ps` taken a moment
        # apart may differ by a task: the count must equal the CLI's when both are taken with nothing changing
        # between them (the CLI's count the same before and after the poll).
        seen = []
        deadline = time.monotonic() + 30
        while True:
            before = running_here()
            status = collector.poll()
            after = running_here()
            seen.append((before, status.nodes[0].tasks_running, after))
            if before == after:
                if status.nodes[0].tasks_running == before > 0:
                    break
            assert time.monotonic() < deadline, f"never equal to docker node ps (before, dtmon, after): {seen}"
            time.sleep(0.2)
    finally:
        collector.close()
    rows = node_rows([status])
    assert [c.text for c in rows[0].cells][1:6] == [expected[0][1], "manager", "leader", "ready", "active"]
    assert len(NODE_COLUMNS) == len(rows[0].cells)


@pytest.mark.engine
def test_a_drained_node_is_a_problem_on_a_real_engine(tmp_path):
    from engines import Dockerd, require_engines, write_config

    require_engines()
    engine = Dockerd("nodes")
    try:
        engine.boot()
        node_id = engine.docker("node", "ls", "-q").stdout.strip()
        engine.docker("node", "update", "--availability", "drain", node_id)
        path = write_config(tmp_path / "c.toml", [("lone", engine.url, {})])
        config = load(path)
        collector = SwarmCollector(config.sites[0], config.timeout, config.health)
        try:
            status = collector.poll()
        finally:
            collector.close()
        assert status.reachable, status.error
        assert [n.availability for n in status.nodes] == ["drain"]
        assert status.problems() == [f"lone node {status.nodes[0].hostname}: drained"]
        assert site_problem_count(status) == 1
    finally:
        engine.stop()
