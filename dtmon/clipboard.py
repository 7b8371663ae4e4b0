"""What the copy keys put on the clipboard: a service's name, or the docker commands equivalent to an action or view.

Pure (no Textual): the app sends the result through the terminal (OSC 52, `App.copy_to_clipboard`), which works
over SSH and in tmux. Everything copied is cleaned of control characters (a name from a hostile engine is already
clean; this is the last line before the terminal) and bounded.
"""

from __future__ import annotations

import shlex
from collections.abc import Sequence
from typing import Any

from .redact import redact_url
from .sanitize import clean, clean_lines

#: Most characters copied at once (an OSC 52 payload is base64 of it; terminals cap it at ~100 KB).
MAX_COPY = 10_000


def safe(text: str) -> str:
    """`text` as it may reach the clipboard: lines kept, every control character shown, at most MAX_COPY."""
    return clean_lines(text, MAX_COPY)


def host_flags(url: str | None) -> list[str]:
    """`--host URL` for the docker CLI to reach a site's first manager (password redacted), or nothing."""
    return ["--host", redact_url(url)] if url else []


def plan_commands(plan: Any) -> str:
    """The docker commands of a plan's steps, one a line (waits and checks are dtmon's own, not commands)."""
    lines = [shlex.join(step.argv) for step in getattr(plan, "steps", ()) if getattr(step, "argv", ())]
    return "\n".join(lines)


def view_command(view: str, service_name: str | None, host: Sequence[str]) -> str | None:
    """The docker command showing what a view shows: `docker … service ps NAME` for a service, and so on."""
    docker = ["docker", *host]
    if view == "nodes":
        return shlex.join([*docker, "node", "ls"])
    if service_name is None:
        return None
    verb = {"detail": ["service", "logs", "--tail", "100"], "inspect": ["service", "inspect"]}.get(view,
                                                                                               ["service", "ps"])
    return shlex.join([*docker, *verb, clean(service_name)])
