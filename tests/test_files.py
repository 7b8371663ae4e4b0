"""Files an attacker can't bend: the audit log, the action lock and its holder record refuse planted symlinks,
hard links, FIFOs and directories others can change; they are created 0600 in a directory of the user's own
(0660 in a directory shared on purpose: setgid, group-writable), so operators of one group share them.

The tests run as root (as CI does): other users are spare uids a forked child switches to with os.setuid.
"""

from __future__ import annotations

import grp
import os
import pwd
import shutil
import stat
import tempfile
from pathlib import Path

import pytest

from dtmon import cli
from dtmon.actions.audit import AuditError, AuditLog, read
from dtmon.actions.lock import ActionLock, LockError, read_holder

SECRET = "root:secret-hash:19000:0:99999:7:::\n"

pytestmark = pytest.mark.skipif(os.geteuid() != 0, reason="switches to other uids: needs root (as CI runs)")


def spare_ids(count: int) -> list[int]:
    """Ids that name no user and no group on this machine."""
    found, candidate = [], 4242
    while len(found) < count:
        try:
            pwd.getpwuid(candidate)
        except KeyError:
            try:
                grp.getgrgid(candidate)
            except KeyError:
                found.append(candidate)
        candidate += 1
    return found


def as_user(uid: int, gid: int, action) -> str:
    """Run `action()` in a forked child as `uid` with `gid` as its only group; its result or its error, as text."""
    read_end, write_end = os.pipe()
    pid = os.fork()
    if pid == 0:  # the child: nothing but the action, then _exit (no pytest teardown here)
        code = 1
        try:
            os.close(read_end)
            os.setgroups([gid])
            os.setgid(gid)
            os.setuid(uid)
            os.write(write_end, f"ok: {action()}".encode())
            code = 0
        except BaseException as exc:  # noqa: BLE001 - reported to the parent
            os.write(write_end, f"{type(exc).__name__}: {exc}".encode())
        finally:
            os._exit(code)
    os.close(write_end)
    chunks = []
    while chunk := os.read(read_end, 65536):
        chunks.append(chunk)
    os.close(read_end)
    os.waitpid(pid, 0)
    return b"".join(chunks).decode()


@pytest.fixture
def open_base():
    """A folder under /tmp that other uids can pass through (pytest's tmp_path is root's alone)."""
    base = Path(tempfile.mkdtemp(prefix="dtmon-files-", dir="/tmp"))
    base.chmod(0o755)
    yield base
    shutil.rmtree(base)


@pytest.fixture
def target(tmp_path) -> Path:
    """A file an attacker wants written or read through a planted link."""
    path = tmp_path / "shadow"
    path.write_text(SECRET)
    return path


def test_audit_log_refuses_a_planted_symlink_and_leaves_its_target_alone(tmp_path, target):
    log = tmp_path / "state" / "audit.jsonl"
    log.parent.mkdir(mode=0o700)
    log.symlink_to(target)
    with pytest.raises(AuditError, match=f"{log} is a symlink: dtmon never writes through one"):
        AuditLog(log).append({"event": "start"})
    assert target.read_text() == SECRET
    with pytest.raises(AuditError, match="is a symlink"):  # nor reads through one (root would print the target)
        read(log)


def test_dtmon_audit_does_not_print_what_a_planted_symlink_points_at(tmp_path, target, capsys):
    (tmp_path / "c.yaml").write_text("services:\n  a:\n    image: x\n")
    state = tmp_path / "state"
    state.mkdir(mode=0o700)
    config = tmp_path / "config.toml"
    config.write_text(f'[sites.kko]\ndocker = "unix:///x.sock"\n[deploy]\naudit = "{state}/audit.jsonl"\n')
    (state / "audit.jsonl").symlink_to(target)  # after `config check` would have passed
    code = cli.main(["--config", str(config), "audit"])
    captured = capsys.readouterr()
    # The config refuses it first (a symlink is no regular file); either way nothing of the target is shown.
    assert code in (1, 2)
    assert "secret-hash" not in captured.out + captured.err
    assert "symlink" in captured.err and captured.err.count("\n") == 1


def test_lock_and_holder_record_refuse_planted_symlinks(tmp_path, target):
    state = tmp_path / "state"
    state.mkdir(mode=0o700)
    lock = state / "actions.lock"
    lock.symlink_to(target)
    with pytest.raises(LockError, match="is a symlink"):
        ActionLock(lock).acquire("x")
    lock.unlink()
    # The record and every name it was once written through: replaced, never written through.
    record = state / "actions.lock.json"
    record.symlink_to(target)
    for pid in range(os.getpid() - 2, os.getpid() + 3):
        (state / f"actions.lock.json.{pid}.tmp").symlink_to(target)
    held = ActionLock(lock).acquire("redeploy")
    assert not record.is_symlink() and read_holder(lock).what == "redeploy"
    held.release()
    assert target.read_text() == SECRET
    record.symlink_to(target)  # read_holder does not read through one either
    assert read_holder(lock) is None


def test_files_are_created_0600_in_a_0700_directory_whatever_the_umask(tmp_path):
    old = os.umask(0)
    try:
        log = tmp_path / "new" / "state" / "audit.jsonl"
        AuditLog(log).append({"event": "start"})
        with ActionLock(log.with_name("actions.lock"), "x"):
            record_mode = stat.S_IMODE(os.stat(log.with_name("actions.lock.json")).st_mode)
    finally:
        os.umask(old)
    assert stat.S_IMODE(log.parent.stat().st_mode) == 0o700
    assert stat.S_IMODE(log.stat().st_mode) == 0o600
    assert stat.S_IMODE(log.with_name("actions.lock").stat().st_mode) == 0o600
    assert record_mode == 0o600


@pytest.mark.parametrize(
    "setup, expected",
    [
        (lambda d, ids: d.chmod(0o777), "is writable by everyone (mode 777): anyone could plant or swap the file"),
        (lambda d, ids: os.chown(d, ids[0], -1), "belongs to uid {uid}, not to you or root"),
        (lambda d, ids: d.chmod(0o770), "is group-writable (mode 770) but not setgid: to share one audit log"),
        (lambda d, ids: d.chmod(0o3770), "is shared but sticky"),
        (lambda d, ids: d.parent.chmod(0o777), "above"),
    ],
    ids=["world-writable", "foreign owner", "group-writable without setgid", "sticky shared", "ancestor world-writable"],
)
def test_a_directory_others_can_change_is_refused_with_what_to_do(tmp_path, setup, expected):
    uid = spare_ids(1)[0]
    folder = tmp_path / "outer" / "state"
    folder.mkdir(parents=True, mode=0o700)
    folder.parent.chmod(0o755)
    setup(folder, [uid])
    with pytest.raises(AuditError) as caught:
        AuditLog(folder / "audit.jsonl").append({"event": "start"})
    assert expected.format(uid=uid) in str(caught.value)
    with pytest.raises(LockError, match="cannot open the action lock"):
        ActionLock(folder / "actions.lock").acquire("x")
    assert not (folder / "audit.jsonl").exists() and not (folder / "actions.lock").exists()


@pytest.mark.parametrize("plant", ["fifo", "hard link", "foreign file", "world-writable file"])
def test_an_existing_file_that_is_not_plainly_ours_is_refused(tmp_path, plant):
    uid = spare_ids(1)[0]
    folder = tmp_path / "state"
    folder.mkdir(mode=0o700)
    log = folder / "audit.jsonl"
    if plant == "fifo":
        os.mkfifo(log)
    elif plant == "hard link":
        (folder / "other").write_text(SECRET)
        os.link(folder / "other", log)
    else:
        log.write_text("")
        os.chown(log, uid, -1) if plant == "foreign file" else log.chmod(0o666)
    message = {"fifo": "is not a regular file", "hard link": "has 2 links", "foreign file": f"belongs to uid {uid}",
               "world-writable file": "is writable by everyone"}[plant]
    with pytest.raises(AuditError, match=message):
        AuditLog(log).append({"event": "start"})


def test_operators_share_one_audit_log_and_lock_in_a_setgid_group_directory(open_base):
    """Alice (uid A) creates the lock and the log; Bob (uid B), of the same group, takes the lock and appends.
    Before, the lock was created 0644 and Bob got "Permission denied"."""
    alice, bob, group = spare_ids(3)
    shared = open_base / "dtmon"
    shared.mkdir()
    os.chown(shared, 0, group)
    shared.chmod(0o2770)
    log, lock = shared / "audit.jsonl", shared / "actions.lock"

    def act(name: str):
        def run() -> str:
            os.umask(0o022)  # a common umask: the files must still come out group-writable
            with ActionLock(lock, f"{name}'s restart"):
                AuditLog(log).append({"event": "start", "user": name})
            return "done"
        return run

    assert as_user(alice, group, act("alice")) == "ok: done"
    assert (lock.stat().st_uid, lock.stat().st_gid, stat.S_IMODE(lock.stat().st_mode)) == (alice, group, 0o660)
    assert (log.stat().st_uid, log.stat().st_gid, stat.S_IMODE(log.stat().st_mode)) == (alice, group, 0o660)
    assert as_user(bob, group, act("bob")) == "ok: done"
    assert [r["user"] for r in read(log)] == ["alice", "bob"]
    # A lock an older dtmon left 0644: the next operator is told what to change, not only "Permission denied".
    lock.chmod(0o644)
    assert "a file in a shared directory must be group-writable (chmod 660" in as_user(bob, group, act("bob"))
    lock.chmod(0o660)
    # Someone outside the group gets a plain refusal, not the operators' files.
    assert "Permission denied" in as_user(spare_ids(4)[3], spare_ids(4)[3], act("mallory"))


def test_another_users_private_directory_is_refused_by_name_not_permission_denied(open_base):
    alice, bob = spare_ids(2)
    private = open_base / "alice"
    private.mkdir(mode=0o755)
    os.chown(private, alice, alice)
    lock = private / "actions.lock"
    assert as_user(alice, alice, lambda: ActionLock(lock).acquire("x").release()) == "ok: None"
    outcome = as_user(bob, bob, lambda: ActionLock(lock).acquire("x"))
    assert outcome.startswith("LockError: cannot open the action lock")
    assert f"belongs to uid {alice}, not to you or root" in outcome and "2770" in outcome


def test_reading_the_audit_log_is_bounded_and_survives_any_line(tmp_path, monkeypatch, capsys):
    from dtmon.actions import audit

    with pytest.raises(AuditError, match="is not a regular file \\(a character device\\)"):
        read(Path("/dev/full"))  # was read without end (OOM-killed at ~24 GB)
    log = tmp_path / "audit.jsonl"
    lines = [f'{{"event":"outcome","id":"a{n}","outcome":"done"}}' for n in range(100)]
    log.write_text("\n".join(lines) + "\n")
    monkeypatch.setattr(audit, "MAX_READ", 1000)  # the newest 1000 bytes, from the first whole line
    records = read(log)
    assert records[-1]["id"] == "a99" and len(records) < 100
    assert all(r["event"] == "outcome" for r in records)  # no half line read as an unreadable record
    monkeypatch.setattr(audit, "MAX_READ", 64 << 20)
    log.write_text("[" * 100_000 + "\n" + '{"event":"outcome","id":"n","outcome":"done","duration_s":NaN}\n')
    records = read(log)
    assert records[0]["event"] == "unreadable" and records[1]["id"] == "n"
    config = tmp_path / "config.toml"
    config.write_text(f'[sites.kko]\ndocker = "unix:///x.sock"\n[deploy]\naudit = "{log}"\n')
    assert cli.main(["--config", str(config), "audit", "--json"]) == 0
    out = capsys.readouterr().out
    assert "NaN" not in out and '"duration_s": null' in out
