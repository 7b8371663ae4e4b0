"""`make run`'s command, `dtmon --or-demo`: with no config anywhere it opens the demo world and says why in the
app itself (a line printed before the app starts would be hidden behind it)."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

from ptyterm import PtyTerminal, visible

ROOT = Path(__file__).resolve().parent.parent


def test_or_demo_without_a_config_opens_the_demo_world_with_a_notice_on_screen(tmp_path):
    env = ["env", "-u", "DTMON_CONFIG", f"HOME={tmp_path}", f"XDG_CONFIG_HOME={tmp_path / 'xdg'}"]
    term = PtyTerminal([*env, sys.executable, "-m", "dtmon", "--or-demo"], lines=30, columns=120)
    done, status = 0, 0
    try:
        screen = b""
        for _ in range(100):  # up to 20 s on a loaded machine
            screen += term.read_for(0.2)
            if b"No dtmon config found" in screen and b"datatrail" in screen:
                break
        text = visible(screen)
        assert "No dtmon config found" in text and "demo" in text, text[-2000:]
        assert "config.toml" in text  # where it looked
        os.write(term.fd, b"q")
        deadline = time.monotonic() + 15  # the demo world is stopped on the way out
        while not done and time.monotonic() < deadline:
            term.read_for(0.1)
            done, status = os.waitpid(term.pid, os.WNOHANG)
            time.sleep(0.05)
    finally:
        if done:
            os.close(term.fd)
        else:
            term.close()
    assert done and os.WIFEXITED(status) and os.WEXITSTATUS(status) == 0


def test_or_demo_with_a_config_is_plain_dtmon(tmp_path):
    """A config that exists is used (here a broken one: the one-line config error, not the demo)."""
    config = tmp_path / "config.toml"
    config.write_text("refresh = 'soon'\n")
    proc = subprocess.run([sys.executable, "-m", "dtmon", "--config", str(config), "--or-demo"], capture_output=True,
                          text=True, timeout=60, cwd=ROOT)
    assert proc.returncode == 2
    assert proc.stderr.startswith("dtmon: config error:") and "refresh" in proc.stderr
