"""The audit log: appended JSON lines that survive the writer, and a rendering for people."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import httpx
import pytest

from dtmon.actions import announce
from dtmon.actions.audit import AuditLog, read, render
from dtmon.actions.lock import ActionLock, LockError


def test_each_record_is_one_line_on_disk_when_append_returns(tmp_path):
    log = AuditLog(tmp_path / "state" / "audit.jsonl")
    log.append({"event": "start", "id": "a1", "user": "alice", "host": "ops", "action": "redeploy",
                "site": "kko", "target": "datatrail-client", "plan": ["docker stack rm x"]})
    lines = (tmp_path / "state" / "audit.jsonl").read_text().splitlines()
    assert len(lines) == 1
    record = json.loads(lines[0])
    assert record["event"] == "start" and record["user"] == "alice" and "time" in record


def test_records_written_before_a_crash_are_kept(tmp_path):
    path = tmp_path / "audit.jsonl"
    code = (
        "import os, sys\n"
        "from dtmon.actions.audit import AuditLog\n"
        "log = AuditLog(sys.argv[1])\n"
        "log.append({'event': 'start', 'id': 'c'})\n"
        "log.append({'event': 'step', 'id': 'c', 'number': 1, 'status': 'done'})\n"
        "os._exit(9)  # no cleanup, no flush of Python buffers\n"
    )
    proc = subprocess.run([sys.executable, "-c", code, str(path)])
    assert proc.returncode == 9
    records = read(path)
    assert [r["event"] for r in records] == ["start", "step"]
    assert "no outcome recorded" in render(records)


def test_append_fsyncs_the_record_before_it_returns(tmp_path, monkeypatch):
    path = tmp_path / "audit.jsonl"
    synced: list[tuple[str, str]] = []
    real_fsync = os.fsync

    def fsync(fd: int) -> None:
        synced.append((os.readlink(f"/proc/self/fd/{fd}"), path.read_text()))
        real_fsync(fd)

    monkeypatch.setattr(os, "fsync", fsync)
    AuditLog(path).append({"event": "start", "id": "f1"})
    assert len(synced) == 1
    file, content = synced[0]
    assert file == str(path) and '"id":"f1"' in content  # the record's own file, with the record written


def write_config(tmp_path, audit: str, lock: str) -> str:
    compose = tmp_path / "kko-client.yaml"
    compose.write_text("services:\n  replicator:\n    image: x\n")
    path = tmp_path / "config.toml"
    path.write_text(
        f'[sites.kko]\ndocker = "unix://{tmp_path}/none.sock"\n[sites.kko.stacks]\n"datatrail-client" = "{compose}"\n'
        f'[deploy]\nallow = true\naudit = "{audit}"\nlock = "{lock}"\n'
    )
    return str(path)


def test_an_audit_log_that_cannot_be_written_ends_the_command_with_one_line(tmp_path, capsys, monkeypatch):
    from dtmon.actions import cli
    from dtmon.actions.plan import Plan
    from dtmon.cli import main

    config = write_config(tmp_path, "/dev/null/audit.jsonl", str(tmp_path / "actions.lock"))
    # A refused plan is audited: the refusal cannot be, and the command says so.
    assert main(["--config", config, "restart", "kko", "replicator", "--yes"]) == 1
    err = capsys.readouterr().err
    assert err == "dtmon: cannot write the audit log /dev/null/audit.jsonl: Not a directory: /dev/null/audit.jsonl\n"
    assert main(["--config", config, "audit"]) == 1
    assert "dtmon: cannot read the audit log /dev/null/audit.jsonl" in capsys.readouterr().err
    # A plan that may run never starts unaudited.
    monkeypatch.setattr(cli, "gather_redeploy", lambda *args: Plan("redeploy", "kko", "datatrail-client", steps=()))
    assert main(["--config", config, "redeploy", "kko", "datatrail-client", "--yes"]) == 1
    assert capsys.readouterr().err.startswith("dtmon: cannot write the audit log /dev/null/audit.jsonl")
    assert ActionLock(tmp_path / "actions.lock").acquire("the next one").held  # and the lock was let go


def test_a_lock_that_cannot_be_written_ends_the_command_with_one_line(tmp_path, capsys, monkeypatch):
    from dtmon.actions import cli
    from dtmon.actions.plan import Plan
    from dtmon.cli import main

    config = write_config(tmp_path, str(tmp_path / "audit.jsonl"), "/dev/null/actions.lock")
    monkeypatch.setattr(cli, "gather_redeploy", lambda *args: Plan("redeploy", "kko", "datatrail-client", steps=()))
    assert main(["--config", config, "redeploy", "kko", "datatrail-client", "--yes"]) == 1
    err = capsys.readouterr().err
    assert err == "dtmon: cannot open the action lock /dev/null/actions.lock: Not a directory: /dev/null/actions.lock\n"

    # The holder record cannot be written (a directory is in the way): the flock is let go again.
    path = tmp_path / "actions.lock"
    (tmp_path / "actions.lock.json").mkdir()
    with pytest.raises(LockError, match="cannot write the lock's holder record"):
        ActionLock(path).acquire("x")
    (tmp_path / "actions.lock.json").rmdir()
    assert ActionLock(path).acquire("next").held


def test_render_groups_an_action_with_its_steps_and_outcome(tmp_path):
    log = AuditLog(tmp_path / "audit.jsonl")
    log.append({"event": "start", "id": "x", "user": "bob", "host": "ops", "title": "redeploy datatrail-client at kko",
                "commits": {"datatrail-client@kko": "abcdef1234567890"}})
    log.append({"event": "step", "id": "x", "number": 1, "status": "done", "duration_s": 0.5,
                "command": "docker --host unix:///k stack rm datatrail-client"})
    log.append({"event": "step", "id": "x", "number": 2, "status": "failed", "duration_s": 1.5,
                "command": "docker stack deploy", "error": "exit 1: invalid reference format"})
    log.append({"event": "outcome", "id": "x", "outcome": "failed", "reason": "exit 1: invalid reference format",
                "states": {"datatrail-client@kko": "removed; then deploy failed"}})
    (tmp_path / "audit.jsonl").open("a").write("not json\n")
    text = render(read(tmp_path / "audit.jsonl"))
    assert "bob@ops  redeploy datatrail-client at kko  -> FAILED" in text
    assert "abcdef123456" in text and "invalid reference format" in text
    assert " 1 done      0.5s  docker --host unix:///k stack rm datatrail-client" in text
    assert "left: datatrail-client@kko: removed; then deploy failed" in text
    assert render(read(tmp_path / "audit.jsonl"), last=1).count("\n\n") == 0
    assert render([]) == "audit log is empty"


def test_announce_posts_json_and_fails_on_non_2xx():
    seen = []

    def handler(request: httpx.Request) -> httpx.Response:
        seen.append(json.loads(request.content))
        return httpx.Response(200 if seen[-1]["who"] == "alice" else 500, text="nope")

    transport = httpx.MockTransport(handler)
    assert "200" in announce.post("http://hook.test/x", {"who": "alice"}, transport=transport)
    with pytest.raises(announce.AnnounceError, match="HTTP 500"):
        announce.post("http://hook.test/x", {"who": "bob"}, transport=transport)
    assert [s["who"] for s in seen] == ["alice", "bob"]


def test_announce_to_a_closed_port_fails():
    with pytest.raises(announce.AnnounceError, match="failed"):
        announce.post("http://127.0.0.1:9/hook", {"who": "x"}, timeout=2)
