"""ssh:// sites through a real OpenSSH server on loopback, to a real dockerd whose socket is not at the default path.

The client side is only what `[ssh] config` names (IdentityFile, UserKnownHostsFile in the test's dir):
nothing in ~/.ssh or /etc/ssh is read or changed.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from dtmon.collectors.swarm import SwarmCollector
from dtmon.collectors.tunnel import UP
from dtmon.config import load
from engines import _cmdline, _pids, alive, require_engines, start_all, stop_all
from sshd import Sshd, keygen, require_sshd

pytestmark = pytest.mark.engine

REPO = Path(__file__).resolve().parent.parent
CLIENT_SHORTS = ("replicator", "deletion_healer", "replication_healer", "event_registration", "reattempt_unregistered",
                 "update_canfar_certificates")
CLIENT_SERVICES = {f"datatrail-client_{s}": (1, 1) for s in CLIENT_SHORTS}
#: The client stack's compose file (written by the `remote` fixture).
CLIENT = Path()


def client_compose(names) -> str:
    """A client stack's compose file in the style of tests/world: the test image on the host network."""
    import yaml
    from engines import service_def

    return yaml.safe_dump({"version": "3.8", "services": {n: service_def() for n in names},
                           "networks": {"hostnet": {"external": True, "name": "host"}}}, sort_keys=False)


@pytest.fixture(scope="module")
def remote(tmp_path_factory):
    """A dockerd (socket at DIR/d.sock) running kko's client stack, and an sshd on loopback in front of it."""
    require_engines()
    require_sshd()
    global CLIENT
    CLIENT = tmp_path_factory.mktemp("stacks") / "kko-client.yaml"
    CLIENT.write_text(client_compose(CLIENT_SHORTS))
    engines = start_all(["sshkko"])
    engine = engines["sshkko"]
    server = None
    try:
        engine.stack_deploy(CLIENT, "datatrail-client")
        engine.wait_converged(CLIENT_SERVICES)
        server = Sshd(tmp_path_factory.mktemp("sshd")).start()
        server.trust()
        yield engine, server
    finally:
        try:
            if server is not None:
                server.stop()
        finally:
            stop_all(engines.values())


@pytest.fixture
def server(remote):
    """The sshd, with the client trusting its host key and its key authorized (put back after each test)."""
    _, server = remote
    authorized = server.authorized_keys.read_text()
    server.trust()
    yield server
    server.authorized_keys.write_text(authorized)
    server.trust()


def write_config(tmp_path: Path, engine, server: Sshd, url: str | None = None, socket: str | None = None,
                 extra: str = "", timeout: float = 5.0) -> Path:
    path = tmp_path / "config.toml"
    path.write_text(
        f"refresh = 1.0\ntimeout = {timeout}\n"
        f"[ssh]\nconfig = {json.dumps(str(server.client_config))}\n"
        f"[sites.kko]\ndocker = {json.dumps(url or server.alias_url)}\n"
        f"socket = {json.dumps(socket or str(engine.sock))}\n"
        f"[sites.kko.stacks]\ndatatrail-client = {json.dumps(str(CLIENT))}\n" + extra
    )
    return path


def tunnel_processes(collector: SwarmCollector) -> list[int]:
    """Live ssh processes forwarding this collector's tunnel socket."""
    sockets = [str(e.tunnel.socket) for e in collector.endpoints if e.tunnel is not None]
    return [pid for pid in _pids() if alive(pid) and any(s in _cmdline(pid) for s in sockets)
            and _cmdline(pid).startswith(("ssh ", "/usr/bin/ssh "))]


def poll_until(collector: SwarmCollector, condition, timeout: float = 30.0, what: str = "a condition"):
    deadline = time.monotonic() + timeout
    while True:
        status = collector.poll()
        if condition(status):
            return status
        if time.monotonic() > deadline:
            raise AssertionError(f"gave up waiting for {what}; last: reachable={status.reachable} error={status.error!r}")
        time.sleep(0.2)


def replicas(status) -> dict[str, tuple[int, int]]:
    return {s.name: (s.running, s.desired) for s in status.services if s.state != "missing"}


def test_ssh_site_shows_what_docker_service_ls_shows_on_its_engine(tmp_path, remote, server):
    engine, _ = remote
    config = load(write_config(tmp_path, engine, server))
    collector = SwarmCollector(config.site("kko"), config.timeout)
    try:
        status = poll_until(collector, lambda s: s.reachable, what="the first poll over ssh")
        assert replicas(status) == engine.service_ls() == CLIENT_SERVICES
        assert status.manager == server.alias_url
        # The tunnel forwards the configured (non-default) remote socket, and ssh read only our config file.
        (pid,) = tunnel_processes(collector)
        command = _cmdline(pid)
        assert f":{engine.sock} " in command and f"-F {server.client_config}" in command
    finally:
        collector.close()
    assert tunnel_processes(collector) == []
    assert not collector.endpoints[0].tunnel.socket.parent.exists()


def test_dtmon_status_over_ssh_with_the_url_port_and_user(tmp_path, remote, server):
    engine, _ = remote
    path = write_config(tmp_path, engine, server, url=server.url)
    env = {k: v for k, v in os.environ.items() if k not in ("DTMON_CONFIG", "DOCKER_HOST")}
    proc = subprocess.run([sys.executable, "-m", "dtmon", "--config", str(path), "status", "--json"],
                          capture_output=True, text=True, env=env, cwd=REPO, timeout=60)
    report = json.loads(proc.stdout)
    (site,) = report["sites"]
    assert site["reachable"], site["error"]
    assert site["manager"] == server.url
    got = {s["name"]: (s["running"], s["desired"]) for st in site["stacks"] for s in st["services"]}
    assert got == engine.service_ls()
    assert proc.returncode == 0, proc.stdout + proc.stderr
    left = [(pid, _cmdline(pid)) for pid in _pids() if str(engine.sock) in _cmdline(pid) and _cmdline(pid).startswith(("ssh ", "/usr/bin/ssh "))]
    assert not left


def test_unknown_host_key_is_refused_with_how_to_add_it(tmp_path, remote, server):
    engine, _ = remote
    server.forget()
    config = load(write_config(tmp_path, engine, server))
    collector = SwarmCollector(config.site("kko"), config.timeout)
    try:
        status = collector.poll()
    finally:
        collector.close()
    assert not status.reachable
    host = f"[127.0.0.1]:{server.port}"
    assert status.error.startswith(f"ssh: unknown host key for {host} (refused: strict checking)"), status.error
    assert f"ssh-keyscan -p {server.port} 127.0.0.1" in status.error and "ssh to it once by hand" in status.error
    assert "\n" not in status.error
    assert server.known_hosts.read_text() == "", "the key was added silently"


def test_changed_host_key_is_refused(tmp_path, remote, server):
    engine, _ = remote
    server.trust(keygen(tmp_path / "impostor", "impostor"))
    config = load(write_config(tmp_path, engine, server))
    collector = SwarmCollector(config.site("kko"), config.timeout)
    try:
        status = collector.poll()
    finally:
        collector.close()
    assert not status.reachable
    assert status.error.startswith(f"ssh: host key for [127.0.0.1]:{server.port} has CHANGED"), status.error
    assert f'-R "[127.0.0.1]:{server.port}"' in status.error and "\n" not in status.error


def test_a_key_the_server_does_not_accept_says_so_in_one_line(tmp_path, remote, server):
    engine, _ = remote
    other = keygen(tmp_path / "other", "other")
    server.authorized_keys.write_text(Path(f"{other}.pub").read_text())
    config = load(write_config(tmp_path, engine, server))
    collector = SwarmCollector(config.site("kko"), config.timeout)
    try:
        status = collector.poll()
    finally:
        collector.close()
    assert status.error == (f"ssh: dtmon-test-sshd (root@127.0.0.1) refused the login: Permission denied (publickey) "
                            "(wrong key, or no key loaded)"), status.error


def test_a_wrong_remote_socket_is_named(tmp_path, remote, server):
    engine, _ = remote
    config = load(write_config(tmp_path, engine, server, socket="/nonexistent/docker.sock"))
    collector = SwarmCollector(config.site("kko"), config.timeout)
    try:
        status = poll_until(collector, lambda s: s.error and "did not answer" in s.error, timeout=15,
                            what="the remote socket's error")
    finally:
        collector.close()
    assert "its Docker socket /nonexistent/docker.sock did not answer" in status.error
    assert status.error.endswith("connect failed: open failed")  # all sshd tells its client


def test_a_killed_tunnel_reconnects_by_itself_without_leaking(tmp_path, remote, server):
    engine, _ = remote
    config = load(write_config(tmp_path, engine, server))
    collector = SwarmCollector(config.site("kko"), config.timeout)
    tunnel = collector.endpoints[0].tunnel
    try:
        poll_until(collector, lambda s: s.reachable, what="the first poll")
        (first,) = tunnel_processes(collector)
        os.kill(first, signal.SIGKILL)
        down = poll_until(collector, lambda s: not s.reachable, timeout=10, what="the site to notice")
        assert down.outage == "reconnecting", down
        assert down.error.startswith("reconnecting") and "SIGKILL" in down.error, down.error
        assert down.stacks, "the last good data is kept"
        back = poll_until(collector, lambda s: s.reachable, timeout=20, what="the tunnel to heal")
        assert replicas(back) == CLIENT_SERVICES
        (second,) = tunnel_processes(collector)
        assert second != first
        assert tunnel.state == UP and tunnel.attempts == 2
    finally:
        collector.close()
    assert tunnel_processes(collector) == []
    assert not tunnel.socket.exists() and not tunnel.socket.parent.exists()


def test_the_event_stream_goes_through_the_tunnel_and_follows_it_when_it_heals(tmp_path, remote, server):
    from dtmon.collectors.events import EventStream

    engine, _ = remote
    config = load(write_config(tmp_path, engine, server))
    collector = SwarmCollector(config.site("kko"), config.timeout)
    hints: list[float] = []
    states: list[tuple[bool, str | None]] = []
    stream = EventStream("kko", collector.endpoint, config.site("kko").stacks, on_hint=lambda: hints.append(time.monotonic()),
                         on_state=lambda c, e: states.append((c, e)), debounce=0.1, min_gap=0.2)

    def until(condition, timeout: float, what: str) -> None:
        deadline = time.monotonic() + timeout
        while not condition():
            assert time.monotonic() < deadline, f"gave up waiting for {what}; states {states}"
            time.sleep(0.02)

    try:
        stream.start()
        until(lambda: stream.connected, 20, "the stream through the tunnel")
        (first,) = tunnel_processes(collector)
        scaled = time.monotonic()
        engine.docker("service", "scale", "-d", "datatrail-client_replicator=2")
        until(lambda: hints, 2, "a hint through the tunnel")
        assert hints[0] - scaled < 1.5

        os.kill(first, signal.SIGKILL)  # the tunnel dies: the stream breaks, then reopens through a new one
        until(lambda: states[-1][0] is False, 10, "the stream to notice")
        until(lambda: stream.connected and stream.connections == 2, 30, "the stream back through a new tunnel")
        (second,) = tunnel_processes(collector)
        assert second != first
        until(lambda: len(hints) >= 2, 2, "a hint on reopening (what changed while the tunnel was down)")
        hinted = len(hints)
        engine.docker("service", "scale", "-d", "datatrail-client_replicator=1")
        until(lambda: len(hints) > hinted, 3, "a hint through the new tunnel")
    finally:
        stream.close()
        collector.close()
        engine.docker("service", "scale", "-d", "datatrail-client_replicator=1")
    assert not stream.alive and tunnel_processes(collector) == []
    engine.wait_converged(CLIENT_SERVICES)


def test_a_connection_dropped_by_the_server_reconnects_with_ssh_reason(tmp_path, remote, server):
    engine, _ = remote
    config = load(write_config(tmp_path, engine, server))
    collector = SwarmCollector(config.site("kko"), config.timeout)
    try:
        poll_until(collector, lambda s: s.reachable, what="the first poll")
        before = server.sessions()
        assert before
        for pid in before:
            os.kill(pid, signal.SIGTERM)
        down = poll_until(collector, lambda s: not s.reachable, timeout=10, what="the drop to show")
        assert down.outage == "reconnecting", down.error
        # ssh's own words, whichever it noticed first: the server's close, or its next write failing.
        assert down.error.startswith("reconnecting (next try in ") and (
            "closed by remote host" in down.error or "Broken pipe" in down.error), down.error
        poll_until(collector, lambda s: s.reachable, timeout=20, what="the tunnel to heal")
        assert len(tunnel_processes(collector)) == 1
    finally:
        collector.close()
    assert tunnel_processes(collector) == []


def test_backoff_grows_while_the_server_is_gone(tmp_path, remote, server):
    """With sshd refusing connections, ssh is not restarted in a tight loop."""
    engine, _ = remote
    config = load(write_config(tmp_path, engine, server, url=f"ssh://root@127.0.0.1:{server.port + 0}"))
    collector = SwarmCollector(config.site("kko"), config.timeout)
    tunnel = collector.endpoints[0].tunnel
    try:
        poll_until(collector, lambda s: s.reachable, what="the first poll")
        server.stop()
        try:
            started = time.monotonic()
            poll_until(collector, lambda s: not s.reachable, timeout=10, what="the site to notice")
            time.sleep(4)
            tries = tunnel.attempts
            elapsed = time.monotonic() - started
            # 1 s, 2 s, 4 s ... between tries: at most a few in ~4 s, never one per poll or per 50 ms.
            assert tries <= 4, (tries, elapsed)
            status = collector.poll()
            assert status.outage == "reconnecting" and "Connection refused" in status.error, status.error
        finally:
            server.start()
        poll_until(collector, lambda s: s.reachable, timeout=40, what="the tunnel to heal after sshd is back")
    finally:
        collector.close()
    assert tunnel_processes(collector) == []


def ssh_for(engine) -> list[tuple[int, str]]:
    """Live ssh processes forwarding to this engine's socket: (pid, the local socket they listen on)."""
    found = []
    for pid in _pids():
        command = _cmdline(pid)
        if alive(pid) and command.startswith(("ssh ", "/usr/bin/ssh ")) and f":{engine.sock} " in command:
            local = command.split(" -L ", 1)[1].split(f":{engine.sock}", 1)[0]
            found.append((pid, local))
    return found


@pytest.mark.parametrize("how", ["q", "SIGKILL"])
def test_closing_the_dashboard_ends_its_tunnel(tmp_path, remote, server, how):
    """q ends every ssh the dashboard started and removes its socket; even a killed dtmon leaves no ssh behind."""
    from ptyterm import PtyTerminal

    engine, _ = remote
    path = write_config(tmp_path, engine, server)
    assert ssh_for(engine) == []
    with PtyTerminal([sys.executable, "-m", "dtmon", "--config", str(path)], lines=24, columns=80) as term:
        deadline = time.monotonic() + 30
        while not ssh_for(engine) and time.monotonic() < deadline:
            term.read_for(0.2)
        (pid, local), = ssh_for(engine)
        term.read_for(1.0)
        started = time.monotonic()
        if how == "q":
            os.write(term.fd, b"q")
            code, _ = term.wait(15)
            assert code == 0
        else:
            os.kill(term.pid, signal.SIGKILL)
            term.wait(15)
        while ssh_for(engine) and time.monotonic() - started < 10:
            time.sleep(0.05)
        assert ssh_for(engine) == [], f"ssh outlived dtmon ({how})"
    if how == "q":
        assert not Path(local).exists() and not Path(local).parent.exists()
    else:  # nobody was left to remove the tunnel's directory: the next tunnel started removes it
        from dtmon.collectors.tunnel import SshTunnel

        assert Path(local).parent.exists()
        SshTunnel(server.url).close()
        assert not Path(local).parent.exists()


# ---------------------------------------------------------------------------
# Actions over the same tunnel (last in this module: they change the remote's stack).
# ---------------------------------------------------------------------------


def test_restart_and_redeploy_of_a_client_stack_go_through_the_tunnel(tmp_path, remote, server, monkeypatch, capsys):
    """The plan's docker commands reach the remote engine (socket at a non-default path) through dtmon's tunnel."""
    from engines import DOCKER_CLI
    from gitworld import Repo

    from dtmon.actions.audit import read
    from dtmon.cli import main

    engine, _ = remote
    docker_config = tmp_path / "docker-cli"
    docker_config.mkdir()
    monkeypatch.setenv("DTMON_DOCKER", DOCKER_CLI)
    monkeypatch.setenv("DOCKER_CONFIG", str(docker_config))
    monkeypatch.delenv("DOCKER_HOST", raising=False)

    compose = client_compose
    shorts = list(CLIENT_SHORTS)
    repo = Repo(tmp_path / "git", "datatrail-admin", {"stacks/kko-client.yaml": compose(shorts)})
    audit = tmp_path / "audit.jsonl"
    path = tmp_path / "config.toml"
    path.write_text(
        f"refresh = 1.0\ntimeout = 5.0\n[ssh]\nconfig = {json.dumps(str(server.client_config))}\n"
        f"[sites.kko]\ndocker = {json.dumps(server.alias_url)}\nsocket = {json.dumps(str(engine.sock))}\n"
        f"[sites.kko.stacks]\ndatatrail-client = {json.dumps(str(repo.clone / 'stacks/kko-client.yaml'))}\n"
        f"[deploy]\nallow = true\naudit = {json.dumps(str(audit))}\n"
    )
    before = {s["Spec"]["Name"]: s["ID"] for s in engine.api("GET", "/services")}

    # A restart goes through the Engine API client on the tunnel.
    force_before = engine.api("GET", "/services/datatrail-client_replicator")["Spec"]["TaskTemplate"].get("ForceUpdate", 0)
    assert main(["--config", str(path), "restart", "kko", "datatrail-client_replicator", "--yes",
                 "--wait-timeout", "60"]) == 0, capsys.readouterr().out
    after = engine.api("GET", "/services/datatrail-client_replicator")
    assert after["Spec"]["TaskTemplate"]["ForceUpdate"] == force_before + 1

    # A colleague adds a service; the redeploy pulls it, removes and deploys the stack over ssh.
    pushed = repo.push_change("stacks/kko-client.yaml", compose([*shorts, "extra_worker"]), "kko: add extra_worker")
    capsys.readouterr()
    code = main(["--config", str(path), "redeploy", "kko", "datatrail-client", "--yes", "--wait-timeout", "90"])
    out = capsys.readouterr().out
    assert code == 0, out
    assert repo.head() == pushed
    now = {s["Spec"]["Name"]: s["ID"] for s in engine.api("GET", "/services")}
    assert set(now) == set(before) | {"datatrail-client_extra_worker"}
    assert now["datatrail-client_replicator"] != before["datatrail-client_replicator"]  # removed and created again
    assert engine.service_ls()["datatrail-client_extra_worker"] == (1, 1)
    steps = [r for r in read(audit) if r.get("event") == "step" and r.get("kind") in ("remove", "deploy")]
    assert [r["status"] for r in steps] == ["done", "done"]
    assert all(r["output"].startswith(f"via {server.alias_url} (ssh tunnel)") for r in steps), steps
    deploy = steps[-1]["command"]
    assert deploy.startswith(f"docker --host {server.alias_url} stack deploy") and "--with-registry-auth" in deploy
    # Nothing of the tunnel outlives the commands.
    assert not [pid for pid in _pids() if str(engine.sock) in _cmdline(pid)
                and _cmdline(pid).startswith(("ssh ", "/usr/bin/ssh "))]
