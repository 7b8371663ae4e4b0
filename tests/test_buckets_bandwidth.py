"""Terminal output is what an SSH link pays for: the buckets pane, polled every half second over data that
does not change, must write (next to) nothing once drawn. The real `dtmon` runs in a pseudo-terminal."""

from __future__ import annotations

import fcntl
import os
import pty
import select
import signal
import struct
import sys
import termios
import time

from buckets_peers import buckets_server  # noqa: F401 - fixture


def _read_for(fd: int, seconds: float) -> int:
    total, end = 0, time.monotonic() + seconds
    while time.monotonic() < end:
        ready, _, _ = select.select([fd], [], [], 0.05)
        if ready:
            try:
                total += len(os.read(fd, 65536))
            except OSError:
                break
    return total


def test_buckets_pane_at_rest_writes_next_to_nothing(buckets_server, tmp_path):
    for index, name in enumerate(("datatrail-replicator-kko-minoc", "datatrail-replica-heal", "datatrail-state-updater")):
        buckets_server.store.add(name, 3 + index)
    config = tmp_path / "c.toml"
    config.write_text(f'refresh = 0.5\ntimeout = 2.0\n[buckets]\nurl = "{buckets_server.url}"\n')
    pid, fd = pty.fork()
    if pid == 0:  # the child: dtmon in a 120x40 terminal
        os.environ.update(TERM="xterm-256color", COLUMNS="120", LINES="40")
        os.execvp(sys.executable, [sys.executable, "-m", "dtmon", "--config", str(config)])
    try:
        fcntl.ioctl(fd, termios.TIOCSWINSZ, struct.pack("HHHH", 40, 120, 0, 0))
        drawn = 0
        deadline = time.monotonic() + 30
        while buckets_server.requests < 4 * 3 and time.monotonic() < deadline:  # three polls of 4 requests
            drawn += _read_for(fd, 0.2)
        assert buckets_server.requests >= 12, "dtmon never polled the Buckets service"
        drawn += _read_for(fd, 1.0)
        assert drawn > 2000, "the dashboard was never drawn"
        before = buckets_server.requests
        at_rest = _read_for(fd, 5.0)
        polls = (buckets_server.requests - before) // 4
        assert polls >= 5, polls
        assert at_rest < 2000, f"{at_rest} bytes in 5 s over {polls} unchanged polls"
    finally:
        os.kill(pid, signal.SIGTERM)
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            done, _ = os.waitpid(pid, os.WNOHANG)
            if done:
                break
            _read_for(fd, 0.1)
        else:
            os.kill(pid, signal.SIGKILL)
            os.waitpid(pid, 0)
        os.close(fd)
