"""`dtmon logs` against the real test world (a crash-looping service), compared with `docker service logs`."""

from __future__ import annotations

import os
import re
import select
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

pytestmark = pytest.mark.engine

REPO = Path(__file__).resolve().parent.parent
STAMP = re.compile(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d+Z ")
SOURCE = re.compile(r"(?P<task>[\w.-]+\.\d+\.[a-z0-9]{12})@(?P<node>\S+) \| (?P<text>.*)")


def dtmon(world, *args: str, timeout: float = 60) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "dtmon", "--config", str(world.config), *args],
                          capture_output=True, text=True, cwd=REPO, timeout=timeout)


def test_logs_prints_a_crash_looping_services_lines_as_docker_does(world):
    site, name = world.failing
    engine = world.engines[site]
    proc = dtmon(world, "logs", site, "inventory", "--tail", "5")
    assert proc.returncode == 0, proc.stderr
    lines = proc.stdout.splitlines()
    assert lines and all(SOURCE.fullmatch(line) for line in lines), lines
    assert any("inventory: cannot reach the datatrail database" in line for line in lines)
    docker = engine.docker("service", "logs", "--tail", "5", "--no-trunc", name).stdout
    docker_texts = {line.split("| ", 1)[1] for line in docker.splitlines() if "| " in line}
    assert {SOURCE.fullmatch(line)["text"] for line in lines} <= docker_texts | {""}
    node = engine.docker("node", "ls", "--format", "{{.Hostname}}").stdout.strip()
    task_ids = set(engine.docker("service", "ps", "-q", "--no-trunc", name).stdout.split())
    for line in lines:
        match = SOURCE.fullmatch(line)
        assert match["node"] == node
        assert match["task"].startswith(name + ".")
        assert any(t.startswith(match["task"].rsplit(".", 1)[1]) for t in task_ids)


def test_logs_timestamps_and_the_swarm_name_work_too(world):
    site, name = world.failing
    proc = dtmon(world, "logs", site, name, "--tail", "3", "--timestamps")
    assert proc.returncode == 0, proc.stderr
    lines = proc.stdout.splitlines()
    assert lines and all(STAMP.match(line) for line in lines), lines
    assert all(SOURCE.fullmatch(STAMP.sub("", line, count=1)) for line in lines)


def test_logs_of_an_unknown_service_or_site_is_one_line(world):
    proc = dtmon(world, "logs", "chime", "nonesuch")
    assert proc.returncode == 1 and proc.stderr.strip().count("\n") == 0 and "no service nonesuch at chime" in proc.stderr
    proc = dtmon(world, "logs", "nowhere", "inventory")
    assert proc.returncode == 2 and "no site nowhere" in proc.stderr


def test_logs_are_allowed_in_read_only_mode(world):
    assert "allow = true" not in world.config.read_text()
    proc = dtmon(world, "logs", "chime", "server", "--tail", "1")
    assert proc.returncode == 0, proc.stderr


def test_follow_shows_new_lines_within_seconds_and_ends_cleanly_on_sigint(world):
    # A service of its own that writes a line a second (a crash loop's one line per short-lived task is a race
    # with the subscription); labelled as a stack's, so `dtmon logs` finds it by its swarm name. Removed after.
    engine = world.engines["chime"]
    name = "dtmon-logtest_ticker"
    engine.docker("service", "create", "--detach", "--name", name, "--label", "com.docker.stack.namespace=dtmon-logtest",
                  "--network", "host", "--stop-grace-period", "1s", "dtmon-test/busybox:latest",
                  "sh", "-c", "i=0; while true; do i=$((i+1)); echo tick $i; sleep 1; done")
    proc = None
    try:
        engine.wait_converged({name: (1, 1)})
        proc = subprocess.Popen([sys.executable, "-m", "dtmon", "--config", str(world.config), "logs", "chime", name,
                                 "--tail", "0", "--follow"], stdout=subprocess.PIPE, stderr=subprocess.PIPE, cwd=REPO)
        got, deadline = b"", time.monotonic() + 20
        while got.count(b"tick ") < 2 and time.monotonic() < deadline:
            ready, _, _ = select.select([proc.stdout], [], [], 0.2)
            if ready:
                got += os.read(proc.stdout.fileno(), 65536)
        assert got.count(b"tick ") >= 2, (got, proc.poll())
        first = got.decode().splitlines()[0]
        assert SOURCE.fullmatch(first) and first.startswith(name + ".1."), first  # named as docker names it
        proc.send_signal(signal.SIGINT)
        assert proc.wait(10) == 130
        assert b"Traceback" not in proc.stderr.read()
    finally:
        if proc is not None and proc.poll() is None:
            proc.kill()
            proc.wait()
        engine.docker("service", "rm", name, check=False)


def test_a_closed_pipe_ends_logs_quietly(world):
    site, _ = world.failing
    shell = (f"{sys.executable} -m dtmon --config {world.config} logs {site} inventory --tail 50 --follow | head -n 1; "
             "echo \"status ${PIPESTATUS[0]}\"")
    proc = subprocess.run(["bash", "-c", shell], capture_output=True, text=True, cwd=REPO, timeout=60)
    assert proc.stdout.splitlines()[-1] == "status 0", proc
    assert "Traceback" not in proc.stderr and "BrokenPipe" not in proc.stderr
