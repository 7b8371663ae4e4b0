"""Checks of single config values: URLs, paths, bounded numbers, and files read with a size cap.

Each check returns the value to use or raises ValueError with what was expected (the loader adds file and key),
so a new key gets the same rules by calling the same function: one URL check for every URL, one path check for
every path, one bound per number.
"""

from __future__ import annotations

import math
import os
import re
import stat
from pathlib import Path
from urllib.parse import urlsplit

#: Largest config file read (bytes): a real one is a few KB.
MAX_CONFIG_BYTES = 1 << 20
#: Largest compose file read (bytes).
MAX_COMPOSE_BYTES = 1 << 20
#: Linux limits: one path component (NAME_MAX) and a whole path (PATH_MAX, less the NUL).
MAX_NAME_BYTES = 255
MAX_PATH_BYTES = 4095
#: sun_path is 108 bytes with the NUL: a longer unix:// socket path cannot be connected to.
MAX_SOCKET_PATH_BYTES = 107

#: (low, high) of every number of seconds in the config, inclusive.
REFRESH_RANGE = (0.1, 86400.0)
TIMEOUT_RANGE = (0.1, 3600.0)
PUSH_AGE_RANGE = (1.0, 366 * 86400.0)
#: [deploy] monitor: 0 (the first sample) to an hour.
MONITOR_RANGE = (0.0, 3600.0)
CRASHLOOP_WINDOW_RANGE = (1.0, 7 * 86400.0)
ERROR_AGE_RANGE = (1.0, 366 * 86400.0)
#: (low, high) of [health] crashloop_failures.
CRASHLOOP_FAILURES_RANGE = (1, 10**6)
DEBOUNCE_RANGE = (0.01, 60.0)
#: A Prometheus `window` from one minute to one year.
WINDOW_RANGE = (60, 365 * 86400)

_WINDOW_UNITS = {"s": 1, "m": 60, "h": 3600, "d": 86400, "w": 7 * 86400, "y": 365 * 86400}
_HOST = re.compile(r"[A-Za-z0-9._~-]+|\[[0-9A-Fa-f:.]+\]")


def shown(value: object, limit: int = 60) -> str:
    """A value for an error message: quoted with escapes (no control character printed raw), cut to `limit`."""
    text = repr(value)
    return text if len(text) <= limit else text[: limit - 1] + "…"


def number(value: float, bounds: tuple[float, float], unit: str = "") -> float:
    """A number within `bounds`, inclusive (NaN and infinities are outside every bound); `unit` names what it
    counts in the message, e.g. "of seconds", "of bytes"."""
    low, high = bounds
    what = f"a number {unit}".rstrip()
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise ValueError(f"expected {what}, got {shown(value)}")
    if isinstance(value, int) and abs(value) > 10 * high:  # compare without converting a 5,000-digit integer
        raise ValueError(f"expected {what} from {low:.10g} to {high:.10g}, got an integer of {value.bit_length()} bits")
    result = float(value)
    if not (math.isfinite(result) and low <= result <= high):
        raise ValueError(f"expected {what} from {low:.10g} to {high:.10g}, got {result:g}")
    return result


def seconds(value: float, bounds: tuple[float, float]) -> float:
    """A number of seconds within `bounds`."""
    return number(value, bounds, "of seconds")


def window(value: str) -> int:
    """Seconds in a Prometheus duration such as "24h", within WINDOW_RANGE."""
    low, high = WINDOW_RANGE
    expected = f"expected a Prometheus duration such as 24h, from 1m to 1y, got {shown(value)}"
    match = re.fullmatch(r"(\d{1,12})([smhdwy])", value)
    if not match:
        raise ValueError(expected)
    total = int(match.group(1)) * _WINDOW_UNITS[match.group(2)]
    if not low <= total <= high:
        raise ValueError(expected)
    return total


_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]{0,62}")


def name(value: str) -> str:
    """A site or stack name: what Docker accepts for a stack (letters, digits, `_.-`, at most 63), so it can
    never be empty, hold a `/` (consumers are "site/stack_service") or a control character."""
    if not _NAME.fullmatch(value):
        raise ValueError(f"expected a name of letters, digits and _.- (at most 63, starting with a letter or digit), "
                         f"got {shown(value)}")
    return value


def _check_path_text(text: str) -> None:
    if "\x00" in text:
        raise ValueError(f"a path cannot contain a NUL character, got {shown(text)}")
    try:
        encoded = os.fsencode(text)
    except UnicodeError:
        raise ValueError(f"a path that cannot be encoded for this system, got {shown(text)}") from None
    if len(encoded) > MAX_PATH_BYTES:
        raise ValueError(f"a path longer than {MAX_PATH_BYTES} bytes ({len(encoded)}), got {shown(text)}")
    for part in encoded.split(b"/"):
        if len(part) > MAX_NAME_BYTES:
            raise ValueError(
                f"a path component longer than {MAX_NAME_BYTES} bytes ({len(part)}), got {shown(os.fsdecode(part))}"
            )


def path(value: str, base: Path) -> Path:
    """A path from the file: `$VARS` and `~` expanded, a relative one taken from `base` (the config's folder)."""
    if not isinstance(value, str) or not value:
        raise ValueError("expected a path, got an empty string")
    _check_path_text(value)
    expanded = os.path.expandvars(value)
    _check_path_text(expanded)
    if expanded.startswith("~"):
        user = expanded[1:].split("/", 1)[0]
        try:
            expanded = os.fspath(Path(expanded).expanduser())
        except RuntimeError:  # pathlib: "Could not determine home directory."
            raise ValueError(f"{'~' + user}: no such user (in {shown(value)})" if user else "~: no home directory") from None
        if expanded.startswith("~"):  # os.path.expanduser leaves an unknown ~user alone
            raise ValueError(f"~{user}: no such user (in {shown(value)})")
    result = Path(expanded)
    if not result.is_absolute():
        try:
            result = (base / result).resolve()
        except (OSError, RuntimeError) as exc:  # a symlink loop, an unreadable folder
            raise ValueError(f"cannot resolve {shown(value)}: {getattr(exc, 'strerror', None) or exc}") from None
    _check_path_text(os.fspath(result))
    return result


def _port(parts, value: str) -> int | None:
    try:
        port = parts.port
    except ValueError:
        raise ValueError(f"expected a port from 1 to 65535, got {shown(value)}") from None
    if port == 0:
        raise ValueError(f"expected a port from 1 to 65535, got {shown(value)}")
    return port


def url(value: str, schemes: tuple[str, ...], *, port_required: tuple[str, ...] = (), query: bool = False) -> str:
    """`value` as a URL of one of `schemes`: a host (and a port from 1 to 65535 when one is given, or required
    for `port_required` schemes), or for unix:// an absolute socket path. Returns it as written."""
    expected = " or ".join(
        "unix:///path" if s == "unix" else "ssh://user@host" if s == "ssh" else f"{s}://host:port" if s in port_required
        else f"{s}://host" for s in schemes
    )
    if not isinstance(value, str) or not value or any(ch.isspace() or ord(ch) < 0x20 or ord(ch) == 0x7F for ch in value):
        raise ValueError(f"expected a URL ({expected}), got {shown(value)}")
    try:
        parts = urlsplit(value)
        parts.hostname  # noqa: B018 - raises ValueError for a broken [IPv6] literal
    except ValueError:
        raise ValueError(f"expected a URL ({expected}), got {shown(value)}") from None
    scheme = parts.scheme.lower()
    if scheme not in schemes or not value.lower().startswith(f"{scheme}://"):
        raise ValueError(f"expected a URL ({expected}), got {shown(value)}")
    if scheme == "unix":
        socket_path = value[len("unix://"):]
        if parts.netloc or not socket_path.startswith("/") or parts.query or parts.fragment:
            raise ValueError(f"expected unix:///path with an absolute socket path, got {shown(value)}")
        _check_path_text(socket_path)
        if len(os.fsencode(socket_path)) > MAX_SOCKET_PATH_BYTES:
            raise ValueError(f"a unix socket path is at most {MAX_SOCKET_PATH_BYTES} bytes, got {shown(value)}")
        return value
    hostport = parts.netloc.rpartition("@")[2]
    host = hostport[: hostport.find("]") + 1] if hostport.startswith("[") else hostport.split(":", 1)[0]
    if not host or not _HOST.fullmatch(host):
        raise ValueError(f"expected a URL with a host ({expected}), got {shown(value)}")
    port = _port(parts, value)
    if port is None and scheme in port_required:
        raise ValueError(f"expected {scheme}://host:port with a port, got {shown(value)}")
    if parts.fragment or (parts.query and not query):
        raise ValueError(f"expected a URL without a {'fragment' if parts.fragment else 'query'}, got {shown(value)}")
    if scheme not in ("http", "https", "ssh") and (parts.username or parts.password):
        raise ValueError(f"expected {scheme}://host:port without a user, got {shown(value)}")
    if scheme == "ssh" and parts.path not in ("", "/"):
        raise ValueError(f"expected ssh://user@host without a path, got {shown(value)}")
    if scheme == "ssh" and parts.password is not None:
        raise ValueError("expected ssh://user@host without a password: ssh logs in with a key (an ssh-agent, or IdentityFile in the ssh config)")
    if scheme == "ssh" and (host.startswith("-") or (parts.username or "").startswith("-")):
        raise ValueError(f"expected ssh://user@host, got a user or host that ssh would read as an option: {shown(value)}")
    if scheme == "tcp" and parts.path not in ("", "/"):
        raise ValueError(f"expected tcp://host:port without a path, got {shown(value)}")
    return value


def read_capped(file: Path, limit: int) -> bytes:
    """The bytes of a regular file of at most `limit` bytes; ValueError for anything else (a FIFO is not waited
    on, /dev/zero not read without end), OSError when it cannot be opened."""
    fd = os.open(file, os.O_RDONLY | os.O_NONBLOCK | os.O_NOCTTY | os.O_CLOEXEC)
    try:
        info = os.fstat(fd)
        if not stat.S_ISREG(info.st_mode):
            raise ValueError(f"not a regular file ({file_kind(info.st_mode)})")
        chunks, size = [], 0
        while size <= limit:
            chunk = os.read(fd, min(1 << 16, limit + 1 - size))
            if not chunk:
                break
            chunks.append(chunk)
            size += len(chunk)
        if size > limit:
            raise ValueError(f"larger than {limit // 1024} KiB")
        return b"".join(chunks)
    finally:
        os.close(fd)


def file_kind(mode: int) -> str:
    """What a non-regular file is, in words."""
    for test, word in ((stat.S_ISDIR, "a directory"), (stat.S_ISFIFO, "a FIFO"), (stat.S_ISCHR, "a character device"),
                       (stat.S_ISBLK, "a block device"), (stat.S_ISSOCK, "a socket"), (stat.S_ISLNK, "a symlink")):
        if test(mode):
            return word
    return "not a regular file"
