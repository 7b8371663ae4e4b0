"""Files an attacker cannot bend: how the audit log, the action lock and its holder record are opened.

- Never through a symlink (`O_NOFOLLOW`): a planted `audit.jsonl -> /etc/passwd` is refused, not appended to.
- Only in a directory nobody else can change: owned by the user or root, not writable by everyone, and
  group-writable only when it is shared on purpose (setgid, so every file in it gets the directory's group).
- Created 0600 (0660 in a shared directory, whatever the umask), in a directory dtmon makes 0700.
- Only a regular file with one link, owned by the user (in a shared directory: of the directory's group).

An operator team that shares one audit log and lock on purpose makes one directory for them, e.g.
`install -d -o root -g datatrail -m 2770 /var/lib/dtmon`, and points `[deploy] audit` there.
"""

from __future__ import annotations

import os
import stat
from pathlib import Path

from ..config_values import file_kind

PRIVATE_FILE_MODE = 0o600
SHARED_FILE_MODE = 0o660
PRIVATE_DIR_MODE = 0o700
SHARED_HOWTO = ("to share one audit log between operators on purpose, use a directory owned by root, of their "
                "group, mode 2770 (setgid, group-writable, no sticky bit)")


class UnsafePath(OSError):
    """A file or directory others could bend (a symlink, a foreign or world-writable directory); the message says
    what was found and what to do."""


def _owner(uid: int) -> str:
    try:
        import pwd

        return f"{pwd.getpwuid(uid).pw_name} (uid {uid})"
    except (KeyError, ImportError):
        return f"uid {uid}"


def check_directory(directory: Path) -> bool:
    """Raise UnsafePath unless only this user (or root), or a group on purpose, can change what is in `directory`
    and the directories above it; returns True when it is a shared directory (group-writable with setgid)."""
    me = os.geteuid()
    info = os.stat(directory)
    if not stat.S_ISDIR(info.st_mode):
        raise NotADirectoryError(20, "Not a directory", str(directory))
    mode = stat.S_IMODE(info.st_mode)
    if info.st_uid not in (me, 0):
        raise UnsafePath(f"the directory {directory} belongs to {_owner(info.st_uid)}, not to you or root: its owner "
                         f"could swap the file; use a directory of your own (mode 700), or {SHARED_HOWTO}")
    if mode & stat.S_IWOTH:
        raise UnsafePath(f"the directory {directory} is writable by everyone (mode {mode:o}): anyone could plant or "
                         f"swap the file; use a directory of your own (mode 700), or {SHARED_HOWTO}")
    shared = bool(mode & stat.S_IWGRP)
    if shared and not mode & stat.S_ISGID:
        raise UnsafePath(f"the directory {directory} is group-writable (mode {mode:o}) but not setgid: {SHARED_HOWTO}; "
                         "else make it yours alone (chmod 700)")
    if shared and mode & stat.S_ISVTX:
        raise UnsafePath(f"the directory {directory} is shared but sticky (mode {mode:o}): operators could not replace "
                         f"each other's lock record; {SHARED_HOWTO}")
    for parent in Path(os.path.realpath(directory)).parents:  # whoever can rename an ancestor can swap the lot
        above = os.stat(parent)
        if above.st_uid not in (me, 0) or (above.st_mode & stat.S_IWOTH and not above.st_mode & stat.S_ISVTX):
            raise UnsafePath(f"the directory {parent} above {directory} can be changed by others "
                             f"(owner {_owner(above.st_uid)}, mode {stat.S_IMODE(above.st_mode):o}): move the file "
                             "to a directory of your own")
    return shared


def prepare_directory(path: Path) -> bool:
    """Make `path`'s directory (0700 when dtmon creates it) and check it; True when it is a shared one."""
    directory = path.parent
    missing = [folder for folder in (directory, *directory.parents) if not folder.exists()]
    for folder in reversed(missing):  # each 0700 (a umask only takes bits away): no world-writable step above
        try:
            folder.mkdir(mode=PRIVATE_DIR_MODE)
        except FileExistsError:
            pass
    return check_directory(directory)


def _refuse_odd_file(path: Path, exc: OSError) -> None:
    """Turn a failed open of an existing path into its reason: a symlink, a FIFO, a device."""
    try:
        mode = os.lstat(path).st_mode
    except OSError:
        return
    if stat.S_ISLNK(mode):
        raise UnsafePath(f"{path} is a symlink: dtmon never writes through one (it may have been planted); "
                         "remove it") from exc
    if not stat.S_ISREG(mode):
        raise UnsafePath(f"{path} is not a regular file ({file_kind(mode)})") from exc


def open_file(path: Path, flags: int) -> int:
    """Open (creating when missing) the file at `path` with `flags` | O_NOFOLLOW, after checking its directory;
    raises UnsafePath for what others could bend, OSError for what cannot be opened."""
    path = Path(path)
    shared = prepare_directory(path)
    mode = SHARED_FILE_MODE if shared else PRIVATE_FILE_MODE
    common = os.O_NOFOLLOW | os.O_CLOEXEC | os.O_NOCTTY | os.O_NONBLOCK  # O_NONBLOCK: a planted FIFO never blocks
    try:
        fd = os.open(path, flags | common | os.O_CREAT | os.O_EXCL, mode)  # O_EXCL: never through a symlink
        created = True
    except FileExistsError:
        try:
            fd = os.open(path, flags | common)
        except OSError as exc:
            _refuse_odd_file(path, exc)
            if shared and isinstance(exc, PermissionError):  # e.g. a lock an older dtmon created 0644
                raise PermissionError(exc.errno, f"Permission denied: a file in a shared directory must be "
                                      f"group-writable (chmod 660 {path})", None) from exc
            raise
        created = False
    try:
        if created:
            os.fchmod(fd, mode)  # the umask may have taken bits a shared file needs
        else:
            check_opened(path, fd, shared)
    except BaseException:
        os.close(fd)
        raise
    return fd


def check_opened(path: Path, fd: int, shared: bool) -> None:
    """Refuse an existing file that is not a regular one, has other links, or belongs to someone it should not."""
    info = os.fstat(fd)
    if not stat.S_ISREG(info.st_mode):
        raise UnsafePath(f"{path} is not a regular file ({file_kind(info.st_mode)})")
    if info.st_nlink != 1:
        raise UnsafePath(f"{path} has {info.st_nlink} links (a hard link may have been planted): remove it")
    if info.st_mode & stat.S_IWOTH:
        raise UnsafePath(f"{path} is writable by everyone (mode {stat.S_IMODE(info.st_mode):o}): chmod 600 it")
    if shared:
        if info.st_gid != os.stat(path.parent).st_gid:
            raise UnsafePath(f"{path} is not of its shared directory's group: chgrp it")
    elif info.st_uid != os.geteuid():
        raise UnsafePath(f"{path} belongs to {_owner(info.st_uid)}, not to you: it is not yours to write; "
                         f"{SHARED_HOWTO}")


def read_regular(path: Path, limit: int, tail: bool = False) -> bytes | None:
    """The bytes of the regular file at `path`, not through a symlink: at most `limit` (with `tail`, of a larger
    file the last `limit` bytes from the first whole line on; else ValueError); None when there is no such file."""
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC | os.O_NOCTTY | os.O_NONBLOCK)
    except FileNotFoundError:
        return None
    except OSError as exc:
        _refuse_odd_file(Path(path), exc)
        raise
    try:
        info = os.fstat(fd)
        if not stat.S_ISREG(info.st_mode):
            raise UnsafePath(f"{path} is not a regular file ({file_kind(info.st_mode)})")
        cut = info.st_size > limit
        if cut:
            if not tail:
                raise ValueError(f"{path} is larger than {limit} bytes")
            os.lseek(fd, info.st_size - limit, os.SEEK_SET)
        chunks, size = [], 0
        while size < limit:
            chunk = os.read(fd, min(1 << 20, limit - size))
            if not chunk:
                break
            chunks.append(chunk)
            size += len(chunk)
        data = b"".join(chunks)
        return data[data.find(b"\n") + 1:] if cut else data  # a cut line is no record
    finally:
        os.close(fd)
