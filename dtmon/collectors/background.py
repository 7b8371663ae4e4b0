"""One poll of a source in a thread of its own, so that `dtmon status` waits for it no longer than it may."""

from __future__ import annotations

import threading
from collections.abc import Callable
from typing import TypeVar

R = TypeVar("R")


def in_background(poll: Callable[[], R], failed: Callable[[str], R], late: Callable[[], R], name: str) -> Callable[[float], R]:
    """Start `poll` in a daemon thread; the returned `wait(seconds)` gives its report.

    When `poll` raises (a collector never should), the report is `failed("poll failed: …")`: a bug must
    read as a failed poll, not as a timeout. When it has not finished within the seconds given, `late()`.
    """
    result: list[R] = []

    def run() -> None:
        try:
            report = poll()
        except Exception as exc:  # noqa: BLE001 - see above
            report = failed(f"poll failed: {type(exc).__name__}: {exc}")
        result.append(report)

    thread = threading.Thread(target=run, daemon=True, name=name)
    thread.start()

    def wait(seconds: float) -> R:
        thread.join(max(0.0, seconds))
        return result[0] if result else late()

    return wait
