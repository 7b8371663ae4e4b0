"""A program in a pseudo-terminal of a fixed size, and what it writes: terminal output is what an SSH link
carries, so tests and scripts/bench.py count it. Used as a context manager; leaving it ends the program."""

from __future__ import annotations

import fcntl
import os
import pty
import re
import select
import signal
import struct
import termios
import time

_ESCAPES = re.compile(rb"\x1b(\[[0-9;?<>=]*[ -/]*[@-~]|\][^\x07\x1b]*(\x07|\x1b\\)|[@-_])")


def visible(data: bytes) -> str:
    """The text in terminal output, escape sequences removed (for failure messages)."""
    return _ESCAPES.sub(b" ", data).decode("utf-8", "replace")


class PtyTerminal:
    """`argv` run in a `lines` x `columns` pseudo-terminal with TERM=xterm-256color."""

    def __init__(self, argv: list[str], lines: int = 40, columns: int = 120) -> None:
        pid, fd = pty.fork()
        if pid == 0:  # the child
            os.environ.update(TERM="xterm-256color", COLUMNS=str(columns), LINES=str(lines))
            os.environ.pop("TEXTUAL", None)
            try:
                os.execvp(argv[0], argv)
            finally:
                os._exit(127)
        self.pid, self.fd = pid, fd
        self.returncode: int | None = None  #: the exit code once `wait` reaped the program (-N: killed by signal N)
        fcntl.ioctl(fd, termios.TIOCSWINSZ, struct.pack("HHHH", lines, columns, 0, 0))

    def hang_up(self) -> None:
        """Close the terminal's master side, as a dropped SSH session does: the kernel sends the program SIGHUP."""
        os.close(self.fd)
        self.fd = -1

    def read_for(self, seconds: float) -> bytes:
        """Everything the program writes in the next `seconds` (less if it exits); nothing after `hang_up`."""
        if self.fd < 0:
            time.sleep(seconds)
            return b""
        chunks, end = [], time.monotonic() + seconds
        while time.monotonic() < end:
            ready, _, _ = select.select([self.fd], [], [], 0.05)
            if ready:
                try:
                    chunks.append(os.read(self.fd, 65536))
                except OSError:  # EIO: the program is gone
                    break
        return b"".join(chunks)

    def wait(self, seconds: float) -> tuple[int | None, bytes]:
        """Wait up to `seconds` for the program to exit, reading what it writes meanwhile (a program blocked on a
        full terminal could not exit): (its exit code, or None while it still runs; the bytes read)."""
        chunks, end = [], time.monotonic() + seconds
        while self.returncode is None and time.monotonic() < end:
            done, status = os.waitpid(self.pid, os.WNOHANG)
            if done:
                self.returncode = os.waitstatus_to_exitcode(status)
            chunks.append(self.read_for(0.05))
        chunks.append(self.read_for(0.1) if self.returncode is not None else b"")  # what it wrote just before
        return self.returncode, b"".join(chunks)

    def close(self) -> None:
        """SIGTERM, then SIGKILL after 10 s; reaps the program and closes the terminal."""
        if self.returncode is not None:  # already reaped by wait()
            if self.fd >= 0:
                os.close(self.fd)
            return
        try:
            os.kill(self.pid, signal.SIGTERM)
        except ProcessLookupError:
            pass
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            done, _ = os.waitpid(self.pid, os.WNOHANG)
            if done:
                break
            self.read_for(0.1)  # a program blocked on a full terminal could not exit
        else:
            os.kill(self.pid, signal.SIGKILL)
            os.waitpid(self.pid, 0)
        if self.fd >= 0:
            os.close(self.fd)

    def __enter__(self) -> "PtyTerminal":
        return self

    def __exit__(self, *exc) -> None:
        self.close()
