"""One action at a time across dtmon processes: an flock on a lock file plus a record of its holder.

The kernel drops an flock when its holder exits (however it dies), so a dead holder never blocks;
the JSON record beside the lock only tells the next comer who holds it, since when and what for.
"""

from __future__ import annotations

import fcntl
import json
import os
import socket
from dataclasses import asdict, dataclass
from datetime import datetime, timezone
from pathlib import Path

from ..config import Config
from . import files
from .audit import os_reason


@dataclass(frozen=True)
class Holder:
    """Who runs an action now."""

    user: str
    host: str
    pid: int
    since: str  #: ISO 8601, UTC
    what: str

    def describe(self) -> str:
        return f"{self.user}@{self.host} (pid {self.pid}) since {self.since}: {self.what}"


class LockHeld(Exception):
    """Another dtmon process is running an action."""

    def __init__(self, holder: Holder | None, path: Path) -> None:
        self.holder = holder
        self.path = path
        who = holder.describe() if holder else "another process (no record of who)"
        super().__init__(f"another action is running: {who} [lock {path}]")


class LockError(OSError):
    """The lock file (or its holder record) cannot be written; the message names the file and why."""


def who() -> tuple[str, str]:
    """(user, host) of this process."""
    user = os.environ.get("USER") or os.environ.get("LOGNAME")
    if not user:
        try:
            import pwd

            user = pwd.getpwuid(os.getuid()).pw_name
        except (KeyError, ImportError):
            user = str(os.getuid())
    return user, socket.gethostname()


def lock_path(config: Config) -> Path:
    """The configured lock file, else `actions.lock` beside the audit log."""
    return config.deploy.lock or config.deploy.audit.with_name("actions.lock")


class ActionLock:
    """`with ActionLock(path, "redeploy datatrail-client at kko"):` or acquire()/release()."""

    def __init__(self, path: Path, what: str = "") -> None:
        self.path = Path(path)
        self.record = self.path.with_name(self.path.name + ".json")
        self.what = what
        self._fd: int | None = None

    @property
    def held(self) -> bool:
        return self._fd is not None

    def acquire(self, what: str | None = None) -> "ActionLock":
        """Take the lock without waiting; raises LockHeld naming the holder."""
        if self._fd is not None:
            raise RuntimeError("lock already acquired by this object")
        try:
            fd = files.open_file(self.path, os.O_RDWR)  # no symlink, a safe directory; 0600, or 0660 when shared
        except OSError as exc:
            raise LockError(f"cannot open the action lock {self.path}: {os_reason(exc)}") from exc
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(fd)
            raise LockHeld(read_holder(self.path), self.path) from None
        self._fd = fd
        user, host = who()
        holder = Holder(user, host, os.getpid(), datetime.now(timezone.utc).isoformat(timespec="seconds"),
                        what if what is not None else self.what)
        try:
            _write_record(self.record, json.dumps(asdict(holder)) + "\n")
        except OSError as exc:
            self.release()  # nobody could be told who holds it: do not hold it
            raise LockError(f"cannot write the lock's holder record {self.record}: {os_reason(exc)}") from exc
        return self

    def release(self) -> None:
        """Drop the lock (and the holder record) if this object holds it."""
        if self._fd is None:
            return
        try:
            self.record.unlink(missing_ok=True)
        except OSError:
            pass  # a stale record misleads nobody: the next comer probes the flock, not the record
        finally:
            fcntl.flock(self._fd, fcntl.LOCK_UN)
            os.close(self._fd)
            self._fd = None

    def __enter__(self) -> "ActionLock":
        return self.acquire()

    def __exit__(self, *exc: object) -> None:
        self.release()


def _write_record(record: Path, text: str) -> None:
    """Replace the holder record: written to a new file of a random name (O_EXCL: no planted symlink is followed),
    then renamed over the old one (a rename replaces a symlink, never writes through it)."""
    import tempfile

    shared = files.check_directory(record.parent)
    fd, tmp = tempfile.mkstemp(prefix=record.name + ".", suffix=".tmp", dir=record.parent)
    try:
        if shared:
            os.fchmod(fd, files.SHARED_FILE_MODE)
        os.write(fd, text.encode())
        os.close(fd)
        fd = -1
        os.replace(tmp, record)
    except BaseException:
        if fd >= 0:
            os.close(fd)
        Path(tmp).unlink(missing_ok=True)
        raise


def read_holder(path: Path) -> Holder | None:
    """The holder record beside lock `path`, if any and readable (never through a symlink, at most 4 KiB)."""
    record = Path(path).with_name(Path(path).name + ".json")
    try:
        data = json.loads(files.read_regular(record, 4096) or b"")
        return Holder(str(data["user"]), str(data["host"]), int(data["pid"]), str(data["since"]), str(data["what"]))
    except (OSError, ValueError, KeyError, TypeError):
        return None


def current_holder(path: Path) -> Holder | None:
    """Who holds the lock now (None when nobody does): probes the flock, not just the record."""
    probe = ActionLock(path)
    try:
        probe.acquire("probe")
    except LockHeld as held:
        return held.holder or Holder("?", "?", 0, "?", "unknown")
    probe.release()  # nobody held it: drop it again (a dead holder's stale record goes too)
    return None
