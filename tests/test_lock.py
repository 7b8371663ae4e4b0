"""One action at a time across processes: the holder is named, a dead holder does not block."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from dtmon.actions.lock import ActionLock, LockHeld, current_holder, read_holder

HOLDER = textwrap.dedent(
    """
    import sys, time
    from dtmon.actions.lock import ActionLock
    lock = ActionLock(sys.argv[1]).acquire(sys.argv[2])
    print("held", flush=True)
    time.sleep(60)
    """
)


def start_holder(path: Path, what: str) -> subprocess.Popen[str]:
    proc = subprocess.Popen([sys.executable, "-c", HOLDER, str(path), what], stdout=subprocess.PIPE, text=True)
    assert proc.stdout is not None
    assert proc.stdout.readline().strip() == "held"
    return proc


@pytest.fixture
def holder(tmp_path):
    procs: list[subprocess.Popen[str]] = []

    def start(what: str) -> subprocess.Popen[str]:
        proc = start_holder(tmp_path / "actions.lock", what)
        procs.append(proc)
        return proc

    yield start
    for proc in procs:
        if proc.poll() is None:
            proc.kill()
        proc.wait()


def test_second_process_is_told_who_since_when_and_what(tmp_path, holder):
    proc = holder("redeploy datatrail-client at kko")
    with pytest.raises(LockHeld) as caught:
        ActionLock(tmp_path / "actions.lock").acquire("restart x")
    held = caught.value.holder
    assert held is not None
    assert held.pid == proc.pid
    assert held.what == "redeploy datatrail-client at kko"
    assert held.host and held.user and held.since
    assert "redeploy datatrail-client at kko" in str(caught.value) and str(proc.pid) in str(caught.value)
    assert current_holder(tmp_path / "actions.lock") == held


def test_a_killed_holder_does_not_block(tmp_path, holder):
    proc = holder("core redeploy")
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    # The stale record is still there, but the kernel dropped the flock with the process.
    assert read_holder(tmp_path / "actions.lock") is not None
    assert current_holder(tmp_path / "actions.lock") is None
    with ActionLock(tmp_path / "actions.lock", "next") as lock:
        assert lock.held
        assert read_holder(tmp_path / "actions.lock").pid == os.getpid()


def test_release_lets_the_next_one_in_and_removes_the_record(tmp_path):
    path = tmp_path / "sub" / "actions.lock"
    first = ActionLock(path).acquire("first")
    with pytest.raises(LockHeld):
        ActionLock(path).acquire("second")  # same process, another open: still exclusive
    first.release()
    assert read_holder(path) is None
    second = ActionLock(path).acquire("second")
    assert read_holder(path).what == "second"
    second.release()


CRASHING_HOLDER = textwrap.dedent(
    """
    import subprocess, sys, time
    from dtmon.actions.lock import ActionLock
    lock = ActionLock(sys.argv[1]).acquire("redeploy that runs a long docker command")
    # A step's command, spawned the least careful way: every inheritable descriptor goes along.
    child = subprocess.Popen(["sleep", "30"], close_fds=False)
    print(child.pid, flush=True)
    time.sleep(60)
    """
)


def test_a_command_outliving_its_killed_holder_does_not_keep_the_lock(tmp_path):
    path = tmp_path / "actions.lock"
    proc = subprocess.Popen([sys.executable, "-c", CRASHING_HOLDER, str(path)], stdout=subprocess.PIPE, text=True)
    assert proc.stdout is not None
    child = int(proc.stdout.readline())
    try:
        with pytest.raises(LockHeld):
            ActionLock(path).acquire("while the holder lives")
        proc.kill()
        proc.wait()
        assert Path(f"/proc/{child}").exists()  # its command is still running
        # The lock's descriptor was close-on-exec, so the orphaned command never had it: the lock is free.
        assert current_holder(path) is None
        ActionLock(path).acquire("after").release()
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        os.kill(child, signal.SIGKILL)


def test_the_lock_descriptor_is_close_on_exec(tmp_path):
    import fcntl

    with ActionLock(tmp_path / "actions.lock", "x") as lock:
        assert lock._fd is not None
        assert fcntl.fcntl(lock._fd, fcntl.F_GETFD) & fcntl.FD_CLOEXEC
