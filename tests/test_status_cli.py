"""`dtmon status` as a command, without engines: exit codes, the JSON contract, timeouts, imports."""

from __future__ import annotations

import json
import os
import re
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest
from budget import beyond_startup

REPO = Path(__file__).resolve().parent.parent


def run(*args: str, env_extra: dict[str, str] | None = None, timeout: float = 60) -> tuple[subprocess.CompletedProcess[str], float]:
    env = {k: v for k, v in os.environ.items() if k not in ("DTMON_CONFIG", "XDG_CONFIG_HOME")}
    env.update(env_extra or {})
    started = time.monotonic()
    proc = subprocess.run([sys.executable, *args], capture_output=True, text=True, env=env, cwd=REPO, timeout=timeout)
    return proc, time.monotonic() - started


@pytest.fixture
def silent_socket(tmp_path: Path):
    """A unix socket that accepts connections and never answers: a hung manager without an engine."""
    path = tmp_path / "hung.sock"
    server = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    server.bind(str(path))
    server.listen(16)
    yield path
    server.close()


def config(tmp_path: Path, sites: dict[str, str], timeout: float = 1.5) -> Path:
    lines = ["refresh = 1.0", f"timeout = {timeout}", ""]
    for name, url in sites.items():
        lines += [f"[sites.{name}]", f'docker = "{url}"', ""]
    path = tmp_path / "config.toml"
    path.write_text("\n".join(lines))
    return path


def test_unreachable_sites_give_exit_1_and_the_json_contract(tmp_path, silent_socket):
    timeout = 1.5
    path = config(tmp_path, {"chime": f"unix://{silent_socket}", "kko": f"unix://{tmp_path}/absent.sock"}, timeout)
    proc, elapsed = run("-m", "dtmon", "--config", str(path), "status", "--json")
    assert proc.returncode == 1, proc.stderr
    assert beyond_startup(elapsed) < timeout + 1.0, f"{elapsed:.2f}s"
    report = json.loads(proc.stdout)
    assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ", report["generated_at"])
    assert [s["name"] for s in report["sites"]] == ["chime", "kko"]
    hung, absent = report["sites"]
    for site in (hung, absent):
        assert {"name", "reachable", "error", "latency_ms", "stacks"} <= set(site)
        assert site["reachable"] is False and site["stacks"] == []
    assert hung["error"] in ("timed out", f"timed out after {timeout:g}s")
    assert absent["error"] == "connection failed: no such file or directory"
    assert report["problems"][:2] == [
        f"chime: unreachable: {hung['error']}",
        "kko: unreachable: connection failed: no such file or directory",
    ]


def test_human_output_names_unreachable_sites(tmp_path):
    path = config(tmp_path, {"gbo": f"unix://{tmp_path}/absent.sock"})
    proc, _ = run("-m", "dtmon", "--config", str(path), "status")
    assert proc.returncode == 1
    assert "gbo: UNREACHABLE (connection failed: no such file or directory)" in proc.stdout
    assert "gbo: unreachable: connection failed: no such file or directory" in proc.stdout


def test_a_config_watching_nothing_is_a_config_error_not_all_healthy(tmp_path):
    path = config(tmp_path, {})
    proc, _ = run("-m", "dtmon", "--config", str(path), "status", "--json")
    assert (proc.returncode, proc.stdout) == (2, "")
    assert proc.stderr == (f"dtmon: config error: {path}: (top level): nothing to watch: expected at least one "
                           "[sites.NAME] table (or [buckets] / [prometheus])\n")


def test_no_config_anywhere_says_how_to_write_one_and_exits_2(tmp_path):
    proc, _ = run("-m", "dtmon", "status", env_extra={"XDG_CONFIG_HOME": str(tmp_path), "HOME": str(tmp_path)})
    assert proc.returncode == 2
    assert "no configuration found" in proc.stderr
    assert "dtmon demo" in proc.stderr
    assert "Traceback" not in proc.stderr


def test_usage_error_exits_2():
    proc, _ = run("-m", "dtmon", "status", "--no-such-flag")
    assert proc.returncode == 2
    assert "Traceback" not in proc.stderr and "--no-such-flag" in proc.stderr


@pytest.mark.parametrize("command", [[], ["status"], ["demo"], ["config"], ["config", "check"]])
def test_help_for_every_command(command):
    proc, _ = run("-m", "dtmon", *command, "--help")
    assert proc.returncode == 0
    assert proc.stdout.startswith("usage: dtmon")


def test_status_does_not_import_textual(tmp_path):
    path = config(tmp_path, {"gbo": f"unix://{tmp_path}/absent.sock"})
    proc, _ = run("-X", "importtime", "-m", "dtmon", "--config", str(path), "status", "--json")
    assert proc.returncode == 1
    imported = [line.split("|")[-1].strip() for line in proc.stderr.splitlines() if line.startswith("import time:")]
    assert "dtmon.cli" in imported and "httpx" in imported  # the trace is real
    assert not [m for m in imported if m.split(".")[0] == "textual"], "status imported Textual"
    # The Engine API is read with httpx: docker-py and requests (~0.1 s of imports) are for actions only.
    assert not [m for m in imported if m.split(".")[0] in ("docker", "requests")], "status imported docker-py"


FAKE_SSH = """#!/bin/sh
# A stand-in for ssh: records its pid, makes the forwarded socket's path exist, and stays up like `ssh -N`.
echo $$ >> "{pids}"
previous=""
for arg in "$@"; do
    if [ "$previous" = "-L" ]; then touch "${{arg%%:*}}"; fi
    previous="$arg"
done
exec sleep 60
"""


def _alive(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except OSError:
        return False
    return state != "Z"


def test_one_shot_status_leaves_no_ssh_tunnel_behind(tmp_path, monkeypatch):
    import tempfile

    from dtmon.collectors.poll import snapshot
    from dtmon.config import load

    bin_dir, scratch, pids = tmp_path / "bin", tmp_path / "tmp", tmp_path / "ssh.pids"
    bin_dir.mkdir()
    scratch.mkdir()
    (bin_dir / "ssh").write_text(FAKE_SSH.format(pids=pids))
    (bin_dir / "ssh").chmod(0o755)
    monkeypatch.setenv("PATH", f"{bin_dir}:{os.environ['PATH']}")
    monkeypatch.setattr(tempfile, "tempdir", str(scratch))
    path = config(tmp_path, {"gbo": "ssh://frbadmin@aux.gbo"}, timeout=2.0)
    try:
        snap = snapshot(load(path))
        started = [int(line) for line in pids.read_text().split()]
        assert started, "the fake ssh never ran"
        assert not snap.sites[0].reachable  # the socket is a plain file: no engine answers
        assert [pid for pid in started if _alive(pid)] == [], "an ssh process outlived the status run"
        assert list(scratch.glob("dtmon-ssh-*")) == [], "a tunnel directory outlived the status run"
    finally:
        for pid in (int(line) for line in pids.read_text().split()) if pids.exists() else ():
            if _alive(pid):
                os.kill(pid, 9)


def test_ssh_stderr_is_kept_in_a_file_and_its_tail_named_in_the_error(tmp_path, monkeypatch):
    from dtmon.collectors.tunnel import SshTunnel

    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    # More than a pipe holds, then the line that matters; ssh keeps running and the socket never appears.
    (bin_dir / "ssh").write_text(
        "#!/bin/sh\nhead -c 200000 /dev/zero | tr '\\0' 'x' >&2\necho >&2\n"
        "echo 'Permission denied (publickey).' >&2\nexec sleep 60\n"
    )
    (bin_dir / "ssh").chmod(0o755)
    monkeypatch.setenv("PATH", f"{bin_dir}:{os.environ['PATH']}")
    tunnel = SshTunnel("ssh://frbadmin@aux.gbo")
    try:
        with pytest.raises(OSError) as info:
            tunnel.ensure(1.0)
        assert str(info.value).startswith("ssh to frbadmin@aux.gbo: not connected after 1s (still trying): ")
        assert "refused the login: Permission denied (publickey)" in str(info.value)
        assert len(str(info.value)) < 400
    finally:
        tunnel.close()
