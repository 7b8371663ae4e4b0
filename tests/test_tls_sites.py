"""tcp:// sites with TLS, against a real dockerd started with --tlsverify on 127.0.0.1 and certificates made here."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from dtmon.collectors.swarm import SwarmCollector
from dtmon.config import load
from engines import Dockerd, EngineError, free_port, require_engines, service_def, stop_all

pytestmark = pytest.mark.engine

STACK = "datatrail-client"
REPO = Path(__file__).resolve().parent.parent


@pytest.fixture(scope="module")
def tls_site(tmp_path_factory):
    """A dockerd listening with --tlsverify on 127.0.0.1:PORT (and its private unix socket), a stack deployed;
    certificate directories: good, wrong CA, no client certificate, expired client certificate."""
    require_engines()
    from tlscerts import Ca, cert_dir, key_pem, pem

    tmp = tmp_path_factory.mktemp("tls")
    ca, stranger = Ca("dtmon test CA"), Ca("another CA")
    server_cert, server_key = ca.issue("127.0.0.1", server=True)
    client_cert, client_key = ca.issue("dtmon", server=False)
    old_cert, old_key = ca.issue("dtmon-expired", server=False, expired=True)
    strange_cert, strange_key = stranger.issue("dtmon", server=False)
    server = tmp / "server"
    server.mkdir()
    (server / "ca.pem").write_bytes(pem(ca.cert))
    (server / "cert.pem").write_bytes(pem(server_cert))
    (server / "key.pem").write_bytes(key_pem(server_key))
    dirs = {
        "good": cert_dir(tmp / "good", ca.cert, client_cert, client_key),
        "wrong-ca": cert_dir(tmp / "wrong-ca", stranger.cert, strange_cert, strange_key),
        "no-client-cert": cert_dir(tmp / "no-client-cert", ca.cert, None),
        "expired": cert_dir(tmp / "expired", ca.cert, old_cert, old_key),
    }
    port = free_port()
    engine = Dockerd("tlsgbo")
    engine.extra_args = [
        f"--host=tcp://127.0.0.1:{port}", "--tlsverify", f"--tlscacert={server / 'ca.pem'}",
        f"--tlscert={server / 'cert.pem'}", f"--tlskey={server / 'key.pem'}",
    ]
    try:
        engine.boot()
        compose = tmp / "client.yaml"
        compose.write_text(yaml.safe_dump({"version": "3.8", "services": {"replicator": service_def()},
                                           "networks": {"hostnet": {"external": True, "name": "host"}}}))
        engine.stack_deploy(compose, STACK)
        engine.wait_converged({f"{STACK}_replicator": (1, 1)})
        yield engine, f"tcp://127.0.0.1:{port}", dirs, compose, tmp
    finally:
        stop_all([engine])


def config_for(tmp: Path, url: str, tls: str, compose: Path, name: str = "config.toml", extra: str = "") -> Path:
    path = tmp / name
    path.write_text(f"timeout = 5.0\n[sites.gbo]\ndocker = {json.dumps(url)}\ntls = {tls}\n"
                    f"[sites.gbo.stacks]\n{json.dumps(STACK)} = {json.dumps(str(compose))}\n" + extra)
    return path


def poll(path: Path):
    collector = SwarmCollector(load(path).site("gbo"), 5.0)
    try:
        return collector.poll()
    finally:
        collector.close()


def test_a_docker_cert_path_directory_reaches_the_tls_engine(tls_site, tmp_path):
    engine, url, dirs, compose, _ = tls_site
    status = poll(config_for(tmp_path, url, json.dumps(str(dirs["good"])), compose))
    assert status.reachable, status.error
    assert {s.name: (s.running, s.desired) for s in status.services} == engine.service_ls()
    assert status.manager == url


def test_the_event_stream_over_tls(tls_site, tmp_path):
    import time

    from dtmon.collectors.events import EventStream

    engine, url, dirs, compose, _ = tls_site

    def stream_for(kind: str, hints: list, states: list) -> tuple[SwarmCollector, EventStream]:
        site = load(config_for(tmp_path, url, json.dumps(str(dirs[kind])), compose, name=f"{kind}.toml")).site("gbo")
        collector = SwarmCollector(site, 5.0)
        stream = EventStream("gbo", collector.endpoint, site.stacks, on_hint=lambda: hints.append(time.monotonic()),
                             on_state=lambda c, e: states.append((c, e)), debounce=0.1, min_gap=0.2)
        return collector, stream.start()

    def until(condition, timeout: float, what: str) -> None:
        deadline = time.monotonic() + timeout
        while not condition():
            assert time.monotonic() < deadline, f"gave up waiting for {what}"
            time.sleep(0.02)

    hints: list[float] = []
    states: list = []
    collector, stream = stream_for("good", hints, states)
    try:
        until(lambda: stream.connected, 20, "the stream over TLS")
        scaled = time.monotonic()
        engine.docker("service", "scale", "-d", f"{STACK}_replicator=2")
        until(lambda: hints, 2, "a hint over TLS")
        assert hints[0] - scaled < 1.5
    finally:
        stream.close()
        collector.close()
        engine.docker("service", "scale", "-d", f"{STACK}_replicator=1")
    assert not stream.alive

    refused: list = []
    collector, stream = stream_for("wrong-ca", [], refused)
    try:
        until(lambda: refused, 10, "the wrong CA to be said")
    finally:
        stream.close()
        collector.close()
    assert refused[0][0] is False and refused[0][1].startswith("TLS: CERTIFICATE_VERIFY_FAILED"), refused
    engine.wait_converged({f"{STACK}_replicator": (1, 1)})


def test_without_tls_the_engine_is_not_reached(tls_site, tmp_path):
    _, url, _, compose, _ = tls_site
    path = tmp_path / "plain.toml"
    path.write_text(f"timeout = 3.0\n[sites.gbo]\ndocker = {json.dumps(url)}\n"
                    f"[sites.gbo.stacks]\n{json.dumps(STACK)} = {json.dumps(str(compose))}\n")
    status = poll(path)
    assert not status.reachable


def test_a_wrong_ca_is_one_clear_line(tls_site, tmp_path):
    _, url, dirs, compose, _ = tls_site
    status = poll(config_for(tmp_path, url, json.dumps(str(dirs["wrong-ca"])), compose))
    assert not status.reachable
    ca = dirs["wrong-ca"] / "ca.pem"
    assert status.error.startswith(f"TLS: the engine's certificate is not signed by our CA ({ca}): refused"), status.error
    assert "\n" not in status.error


def test_a_missing_client_certificate_is_one_clear_line(tls_site, tmp_path):
    _, url, dirs, compose, _ = tls_site
    ca = dirs["no-client-cert"] / "ca.pem"
    status = poll(config_for(tmp_path, url, "{ ca = %s }" % json.dumps(str(ca)), compose))
    assert not status.reachable
    assert status.error.startswith("TLS: the engine requires a client certificate"), status.error


def test_an_expired_client_certificate_is_one_clear_line(tls_site, tmp_path):
    _, url, dirs, compose, _ = tls_site
    status = poll(config_for(tmp_path, url, json.dumps(str(dirs["expired"])), compose))
    assert not status.reachable
    cert = dirs["expired"] / "cert.pem"
    assert status.error.startswith(f"TLS: the engine refused our client certificate ({cert}): it has expired (not after "), status.error
    assert "\\n" not in status.error


def test_restart_over_tls(tls_site, tmp_path):
    """An action reaches the TLS engine with the same certificates (the plan's docker flags and the API client)."""
    engine, url, dirs, compose, _ = tls_site
    audit = tmp_path / "audit.jsonl"
    path = config_for(tmp_path, url, json.dumps(str(dirs["good"])), compose,
                      extra=f"[deploy]\nallow = true\naudit = {json.dumps(str(audit))}\n")
    before = engine.api("GET", f"/services/{STACK}_replicator")["Spec"]["TaskTemplate"].get("ForceUpdate", 0)
    proc = subprocess.run([sys.executable, "-m", "dtmon", "--config", str(path), "restart", "gbo",
                           f"{STACK}_replicator", "--yes", "--wait-timeout", "60"],
                          capture_output=True, text=True, timeout=120, cwd=REPO)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    after = engine.api("GET", f"/services/{STACK}_replicator")["Spec"]["TaskTemplate"]["ForceUpdate"]
    assert after == before + 1
