"""What an unexpected exception prints: the traceback without local variables, clean of control sequences,
with every known secret masked. Used by the dashboard (instead of Textual's traceback with locals) and by
the command line's excepthook. No Textual here."""

from __future__ import annotations

import sys
import traceback
from collections.abc import Iterable
from types import TracebackType

from .redact import scrub
from .sanitize import clean

#: Secrets of the loaded config, masked in any crash report (set once the config is loaded).
SECRETS: list[str] = []


def crash_report(error: BaseException | None, secrets: Iterable[str] = ()) -> str:
    """The traceback of `error` and one closing line saying it is a bug, safe to print to a terminal."""
    lines = traceback.format_exception(error) if error is not None else ["unknown error\n"]
    text = scrub("".join(lines), [*SECRETS, *secrets])
    name = type(error).__name__ if error is not None else "error"
    shown = "\n".join(clean(line, 1000) for line in text.splitlines())
    return f"{shown}\ndtmon: internal error ({name}); this is a bug, please report it with the lines above"


def excepthook(kind: type[BaseException], error: BaseException, tb: TracebackType | None) -> None:
    """sys.excepthook for the command line: the crash report instead of Python's raw traceback (exit 1)."""
    if isinstance(error, KeyboardInterrupt):
        sys.__excepthook__(kind, error, tb)
        return
    print(crash_report(error), file=sys.stderr)
