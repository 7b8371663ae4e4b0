"""SIGTERM, SIGHUP and a dropped session end the dashboard as `q` does: the terminal is given back as it was
found (main screen, no mouse tracking, cursor shown), and the exit code says which signal ended it.

Read on the bytes dtmon writes to a pseudo-terminal: what an operator's terminal would be left with.
"""

from __future__ import annotations

import os
import re
import signal
import sys
import time
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).parent))
from ptyterm import PtyTerminal, visible  # noqa: E402

#: Each DEC private mode Textual touches, and the state a terminal is in when no application holds it:
#: 1049 alternate screen, 1000/1003/1006/1015 mouse tracking and its encodings, 1004 focus events,
#: 2004 bracketed paste (all off), 25 cursor (shown), 7 autowrap (on).
TERMINAL_DEFAULTS = {"1049": "l", "1000": "l", "1002": "l", "1003": "l", "1006": "l", "1015": "l", "1004": "l",
                     "2004": "l", "25": "h", "7": "h"}
_MODE = re.compile(rb"\x1b\[\?([\d;]+)([hl])")


def final_modes(data: bytes) -> dict[str, str]:
    """The last state each DEC private mode was set to in `data`."""
    state: dict[str, str] = {}
    for numbers, flag in _MODE.findall(data):
        for number in numbers.split(b";"):
            state[number.decode()] = flag.decode()
    return state


@pytest.fixture
def dashboard(tmp_path):
    """`dtmon` in an 80x24 pseudo-terminal on a site whose socket nobody serves (drawn unreachable)."""
    config = tmp_path / "config.toml"
    config.write_text(f'[sites.kko]\ndocker = "unix://{tmp_path}/nobody.sock"\n')
    env_config = os.environ.pop("DTMON_CONFIG", None)
    try:
        with PtyTerminal([sys.executable, "-m", "dtmon", "--config", str(config)], lines=24, columns=80) as term:
            drawn, deadline = b"", time.monotonic() + 30
            while b"kko" not in drawn and time.monotonic() < deadline:
                drawn += term.read_for(0.1)
            assert b"kko" in drawn, visible(drawn)
            yield term, drawn
    finally:
        if env_config is not None:
            os.environ["DTMON_CONFIG"] = env_config


@pytest.mark.parametrize("signum", [signal.SIGTERM, signal.SIGHUP], ids=["SIGTERM", "SIGHUP"])
def test_a_signal_ends_the_dashboard_and_restores_the_terminal(dashboard, signum):
    term, drawn = dashboard
    held = final_modes(drawn)
    assert held["1049"] == "h" and held["1000"] == "h" and held["25"] == "l"  # alternate screen, mouse, no cursor
    os.kill(term.pid, signum)
    code, after = term.wait(15)
    assert code == 128 + signum, visible(after)
    left = final_modes(drawn + after)
    assert set(left) <= set(TERMINAL_DEFAULTS), f"a mode this test does not know: {set(left) - set(TERMINAL_DEFAULTS)}"
    assert left == {mode: TERMINAL_DEFAULTS[mode] for mode in left}
    assert final_modes(after)["1049"] == "l"  # left the alternate screen after the signal, not before


def test_a_dropped_ssh_session_ends_the_dashboard(dashboard):
    """The terminal hangs up (the master side closes): dtmon exits 129 at once instead of dying unseen or
    lingering on a terminal nobody reads."""
    term, _ = dashboard
    term.hang_up()
    code, _ = term.wait(15)
    assert code == 128 + signal.SIGHUP


def test_a_served_demo_world_is_cleaned_up_when_its_session_drops(tmp_path):
    """`dtmon demo --serve DIR` in an SSH session that drops: SIGHUP stops the world and removes what it wrote."""
    with PtyTerminal([sys.executable, "-m", "dtmon", "demo", "--serve", str(tmp_path)], lines=24, columns=80) as term:
        said, deadline = b"", time.monotonic() + 30
        while b"stop with" not in said and time.monotonic() < deadline:  # its last line: nothing more to write
            said += term.read_for(0.1)
        assert b"serving" in said and (tmp_path / "config.toml").exists()
        term.hang_up()
        code, _ = term.wait(15)
    assert code == 0
    assert not (tmp_path / "config.toml").exists()


def test_a_dashboard_that_cannot_end_cleanly_is_ended_after_the_grace(tmp_path):
    """An app whose shutdown hangs (Textual's writer blocked on a terminal that hung up) still ends, with the
    signal's status, once EXIT_GRACE has passed: a dropped session never leaves a dashboard nobody sees."""
    import subprocess

    script = tmp_path / "stuck.py"
    script.write_text(
        "import sys, threading\n"
        "from dtmon import signals\n"
        "signals.EXIT_GRACE = 1.0\n"
        "class Stuck:\n"
        "    def call_from_thread(self, fn):\n"
        "        pass  # the exit request is taken, but the shutdown never finishes\n"
        "    def run(self):\n"
        "        print('running', flush=True)\n"
        "        threading.Event().wait()\n"
        "signals.run_app(Stuck())\n"
    )
    proc = subprocess.Popen([sys.executable, str(script)], stdout=subprocess.PIPE, text=True)
    try:
        assert proc.stdout.readline().strip() == "running"
        started = time.monotonic()
        os.kill(proc.pid, signal.SIGHUP)
        code = proc.wait(timeout=30)
        took = time.monotonic() - started
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    assert code == 128 + signal.SIGHUP
    assert took >= 1.0  # the clean way was given its grace first
