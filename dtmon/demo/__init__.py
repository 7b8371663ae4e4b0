"""`dtmon demo`: the real app on a simulated Datatrail world served over the real protocols."""

from __future__ import annotations

import atexit
import signal
import sys
import threading
from pathlib import Path

__all__ = ["Demo", "run_demo"]


def __getattr__(name: str):
    # Imported on first use, so `python -m dtmon.demo.buckets_server` does not load itself twice.
    if name == "Demo":
        from .runner import Demo

        return Demo
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def run_demo(serve_dir: Path | None, notice: str | None = None) -> int:
    """Run the dashboard on the simulated world (saying `notice` in it), or with `serve_dir` only serve it."""
    from ..config import ConfigError, load

    if serve_dir is None:
        try:
            from ..app import DtmonApp
        except ImportError as exc:
            print(
                f"dtmon demo: the dashboard cannot start here ({exc}).\n"
                "Serve the simulated world alone with `dtmon demo --serve DIR` and query it with "
                "`dtmon --config DIR/config.toml status`.",
                file=sys.stderr,
            )
            return 2
    from .runner import Demo

    demo = Demo(config_dir=serve_dir.expanduser().resolve() if serve_dir else None)
    stop = threading.Event()
    previous = {}

    def on_signal(signum, frame) -> None:
        stop.set()

    atexit.register(demo.stop)  # a safety net; stop() is idempotent
    try:
        path = demo.start()
        try:
            config = load(path)
        except ConfigError as exc:  # the demo wrote it: a bug, but say so plainly
            print(f"dtmon demo: the demo's own config is invalid: {exc}", file=sys.stderr)
            return 2
        if serve_dir is None:
            from ..signals import exit_status, run_app

            # A closed SSH session or a kill ends the app the normal way: terminal restored, world cleaned up.
            app = DtmonApp(config, title_suffix="demo", notice=notice)
            # An app that died of an unhandled exception exits 1 (Textual's return code), not 0.
            return exit_status(run_app(app)) or app.return_code or 0
        for signum in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP):  # SIGHUP: its SSH session dropped
            previous[signum] = signal.signal(signum, on_signal)
        print(f"dtmon demo: simulated world serving; config at {path}", flush=True)
        print(f"  try: dtmon --config {path} status", flush=True)
        print("  stop with Ctrl-C (SIGINT), SIGTERM or SIGHUP", flush=True)
        while not stop.wait(0.5):
            pass
        return 0
    finally:
        demo.stop()
        atexit.unregister(demo.stop)
        for signum, handler in previous.items():
            signal.signal(signum, handler)
