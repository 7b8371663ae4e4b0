"""SIGTERM and SIGHUP end a Textual app the way `q` does, so the terminal is given back as it was found.

Python's default for both is to die on the spot, which leaves the operator's terminal in the alternate screen with
mouse tracking on and the cursor hidden (and, after a dropped SSH session, a dashboard nobody sees). Here the handler
asks the app to exit from another thread (the signal arrives on the event loop's own thread, where
`call_from_thread` may not be used), and Textual's normal shutdown restores the terminal. A second signal while the
app is still ending gets the default action. A shutdown that has not finished within `EXIT_GRACE` seconds (Textual's
writer can block on a terminal that hung up) ends the process with the same status, so a dropped session never
leaves a dashboard running that nobody sees.
"""

from __future__ import annotations

import os
import signal
import threading
from typing import Any

#: The signals that end the dashboard cleanly: a kill, and a closed terminal or SSH session.
ENDING_SIGNALS = (signal.SIGTERM, signal.SIGHUP)

#: Seconds a signalled dashboard has to end cleanly before the process ends without further ado.
EXIT_GRACE = 5.0


def exit_status(signum: int | None) -> int:
    """The exit status of a dashboard ended by `signum` (128 + its number, as a shell reports it), else 0."""
    return 128 + signum if signum else 0


def run_app(app: Any) -> int | None:
    """Run the Textual `app` until it exits; returns the signal that ended it (SIGTERM, SIGHUP) or None."""
    received: list[int] = []
    finished = threading.Event()

    def request_exit() -> None:
        while not finished.is_set():
            try:
                app.call_from_thread(app.exit)
                return
            except RuntimeError:  # not running yet (or any more): try again until run() returns
                finished.wait(0.05)

    def on_signal(signum: int, frame: object) -> None:
        if received:  # still ending after the first: the default action, at once
            signal.signal(signum, signal.SIG_DFL)
            os.kill(os.getpid(), signum)
            return
        received.append(signum)
        threading.Thread(target=request_exit, name="dtmon-signal-exit", daemon=True).start()
        threading.Thread(target=end_late, args=(signum,), name="dtmon-signal-grace", daemon=True).start()

    def end_late(signum: int) -> None:
        if not finished.wait(EXIT_GRACE):
            os._exit(exit_status(signum))

    previous = {signum: signal.signal(signum, on_signal) for signum in ENDING_SIGNALS}
    try:
        app.run()
    finally:
        finished.set()
        for signum, handler in previous.items():
            signal.signal(signum, handler)
    return received[0] if received else None
