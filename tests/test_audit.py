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
    assert err == "dtmon: cannot write the audit log /dev/null/audit.jsonl: Not a directory: /dev/null\n"
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
    assert err == "dtmon: cannot open the action lock /dev/null/actions.lock: Not a directory: /dev/null\n"

    # The holder record cannot be written (a directory is in the way): the flock is let go again.
    path = tmp_path / "actions.lock"
    (tmp_path / "actions.lock.json").mkdir()
    with pytest.raises(LockError, match="cannot write the lock's holder record"):
        ActionLock(path).acquire("x")
    (tmp_path / "actions.lock.json").rmdir()
    assert ActionLock(path).acquire("next").held


def failed_then_interrupted(log: AuditLog, interrupted_outcome: bool) -> None:
    request = {"action": "redeploy", "site": "kko", "target": "datatrail-client"}
    plan = ["docker stack rm datatrail-client", "wait until gone", "docker stack deploy", "wait until running"]
    log.append({"event": "start", "id": "old", **request, "plan": plan})
    log.append({"event": "step", "id": "old", "number": 1, "status": "done"})
    log.append({"event": "step", "id": "old", "number": 2, "status": "done"})
    log.append({"event": "step", "id": "old", "number": 3, "status": "failed"})
    log.append({"event": "outcome", "id": "old", **request, "outcome": "failed", "failed_step": 3,
                "resume_key": ["deploy", "kko", "datatrail-client", None], "resume_title": "deploy"})
    log.append({"event": "start", "id": "new", **request, "plan": plan})
    log.append({"event": "step", "id": "new", "number": 1, "status": "done"})
    if interrupted_outcome:
        log.append({"event": "step", "id": "new", "number": 2, "status": "interrupted"})
        log.append({"event": "outcome", "id": "new", **request, "outcome": "interrupted", "failed_step": 2,
                    "resume_key": None})
    # A refusal after it (say, the lock was held) is no run: it changes nothing.
    log.append({"event": "outcome", "id": "refused", **request, "outcome": "refused", "reason": "lock held"})


@pytest.mark.parametrize("interrupted_outcome", [False, True], ids=["killed", "ctrl-c"])
def test_resume_is_refused_when_the_latest_run_was_interrupted(tmp_path, capsys, interrupted_outcome):
    from dtmon.cli import main

    config = write_config(tmp_path, str(tmp_path / "audit.jsonl"), str(tmp_path / "actions.lock"))
    failed_then_interrupted(AuditLog(tmp_path / "audit.jsonl"), interrupted_outcome)
    # The older failed run's point (step 3, the deploy) would skip the removal the newer run may have half done.
    assert main(["--config", config, "redeploy", "kko", "datatrail-client", "--resume", "--yes"]) == 1
    captured = capsys.readouterr()
    assert "the last run of this redeploy was interrupted" in captured.err
    assert "at step 2 (wait until gone)" in captured.err and "without --resume, which converges" in captured.err
    assert "resuming from" not in captured.out


def test_resume_picks_the_latest_run_when_it_failed(tmp_path):
    from dtmon.actions.execute import last_failure
    from dtmon.config import Config, DeployConfig

    config = Config(None, deploy=DeployConfig(allow=True, audit=tmp_path / "audit.jsonl"))
    assert last_failure(config, "redeploy", "kko", "datatrail-client") is None
    log = AuditLog(tmp_path / "audit.jsonl")
    failed_then_interrupted(log, interrupted_outcome=True)
    request = {"action": "redeploy", "site": "kko", "target": "datatrail-client"}
    log.append({"event": "start", "id": "newest", **request, "plan": ["x"]})
    log.append({"event": "outcome", "id": "newest", **request, "outcome": "stopped", "resume_key": ["wait-gone"]})
    assert last_failure(config, "redeploy", "kko", "datatrail-client")["id"] == "newest"
    log.append({"event": "start", "id": "done", **request, "plan": ["x"]})
    log.append({"event": "outcome", "id": "done", **request, "outcome": "done"})
    assert last_failure(config, "redeploy", "kko", "datatrail-client") is None


INTERRUPTED_RUN = """
import sys
from dtmon.actions import cli
from dtmon.actions.plan import ANNOUNCE, Plan, Step
from dtmon.cli import main

config, url = sys.argv[1], sys.argv[2]
announce = Step(ANNOUNCE, "announce", f"POST {url}", "kko", "datatrail-client", payload="{}", url=url)
cli.gather_redeploy = lambda *args: Plan("redeploy", "kko", "datatrail-client", steps=(announce, announce))
sys.exit(main(["--config", config, "redeploy", "kko", "datatrail-client", "--yes"]))
"""


def test_ctrl_c_during_a_run_is_audited_exits_130_and_lets_the_lock_go(tmp_path):
    import signal
    import threading
    import time
    from http.server import BaseHTTPRequestHandler, HTTPServer

    posted, release = threading.Event(), threading.Event()

    class Hanging(BaseHTTPRequestHandler):
        def do_POST(self) -> None:  # noqa: N802
            posted.set()  # the announcement is in flight: the client now blocks reading the answer
            release.wait(30)
            self.send_response(204)
            self.end_headers()

        def log_message(self, *args) -> None:
            pass

    server = HTTPServer(("127.0.0.1", 0), Hanging)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    config = write_config(tmp_path, str(tmp_path / "audit.jsonl"), str(tmp_path / "actions.lock"))
    url = f"http://127.0.0.1:{server.server_port}/hook"
    proc = subprocess.Popen([sys.executable, "-c", INTERRUPTED_RUN, config, url], stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, text=True)
    try:
        assert proc.stdout is not None
        # Interrupt in the middle of the HTTP call, whatever the load: once the server holds the request.
        assert posted.wait(60), "the announcement never reached the server"
        proc.send_signal(signal.SIGINT)
        interrupted_at = time.monotonic()
        code = proc.wait(timeout=60)
        took = time.monotonic() - interrupted_at
        out = proc.stdout.read()
        assert code == 130, out
        # At once: not after the POST's 10 s timeout (the run would then have failed with exit 1).
        assert took < 5, f"exit {took:.1f}s after SIGINT\n{out}"
    finally:
        release.set()
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        server.shutdown()
    assert "Traceback" not in out and "interrupted at step 1" in out and "without --resume" in out
    records = read(tmp_path / "audit.jsonl")
    assert [(r["event"], r.get("status") or r.get("outcome")) for r in records] == [
        ("start", None), ("step", "interrupted"), ("outcome", "interrupted")
    ]
    assert records[-1]["failed_step"] == 1 and records[-1]["resume_key"] is None
    assert ActionLock(tmp_path / "actions.lock").acquire("the next one").held


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
