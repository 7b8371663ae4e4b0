"""The audit log: JSON lines, one per action start, step result and outcome, each fsync'd before going on."""

from __future__ import annotations

import json
import os
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from ..sanitize import clean
from . import files

START, STEP, OUTCOME = "start", "step", "outcome"
#: The most of the audit log read (its newest part): `dtmon audit` and --resume need only the latest actions.
MAX_READ = 64 << 20


class AuditError(OSError):
    """The audit log cannot be written or read; the message names the file and why."""


def os_reason(exc: OSError) -> str:
    """An OSError in words, with the file it is about: e.g. "Not a directory: /dev/null/audit.jsonl"."""
    return f"{exc.strerror}: {exc.filename}" if exc.strerror and exc.filename else (exc.strerror or str(exc))


def now_iso() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="milliseconds")


class AuditLog:
    """Appends records to one JSON-lines file; a record is on disk before `append` returns."""

    def __init__(self, path: Path) -> None:
        self.path = Path(path).expanduser()

    def append(self, record: dict[str, Any]) -> None:
        """Write one line, flush and fsync it (a crash after this loses nothing of it); AuditError if it cannot."""
        record = {"time": now_iso(), **record}
        line = json.dumps(record, default=str, separators=(",", ":")) + "\n"
        try:
            fd = files.open_file(self.path, os.O_WRONLY | os.O_APPEND)  # no symlink, a safe directory, 0600
            try:
                data = line.encode("utf-8")
                written = 0
                while written < len(data):
                    written += os.write(fd, data[written:])
                os.fsync(fd)
            finally:
                os.close(fd)
        except OSError as exc:
            raise AuditError(f"cannot write the audit log {self.path}: {os_reason(exc)}") from exc


def read(path: Path) -> list[dict[str, Any]]:
    """Every record of the log, in order; a line that is not JSON becomes {"event": "unreadable", ...}.

    No file yet is an empty log; a file that cannot be read (or is a symlink, a FIFO, a device) raises AuditError.
    Of a log larger than MAX_READ only the newest MAX_READ bytes are read, from the first whole line.
    """
    records = []
    try:
        data = files.read_regular(Path(path).expanduser(), MAX_READ, tail=True)
    except OSError as exc:
        raise AuditError(f"cannot read the audit log {path}: {os_reason(exc)}") from exc
    if data is None:
        return []
    text = data.decode("utf-8", errors="replace")
    for number, line in enumerate(text.splitlines(), 1):
        if not line.strip():
            continue
        try:
            value = json.loads(line)
            records.append(value if isinstance(value, dict) else {"event": "unreadable", "line": number})
        except (ValueError, RecursionError):  # RecursionError: a line of 100,000 nested brackets
            records.append({"event": "unreadable", "line": number, "text": line[:200]})
    return records


def _when(value: str | None) -> str:
    if not value:
        return "?"
    try:
        return datetime.fromisoformat(value).astimezone().strftime("%Y-%m-%d %H:%M:%S")
    except ValueError:
        return value


def render(records: list[dict[str, Any]], last: int | None = None) -> str:
    """The log for people: one block per action (start, each step, outcome), oldest first."""
    actions: dict[str, dict[str, Any]] = {}
    order: list[str] = []
    for record in records:
        action_id = str(record.get("id", f"line-{len(order)}"))
        if action_id not in actions:
            actions[action_id] = {"start": None, "steps": [], "outcome": None}
            order.append(action_id)
        entry = actions[action_id]
        event = record.get("event")
        if event == START:
            entry["start"] = record
        elif event == STEP:
            entry["steps"].append(record)
        else:
            entry["outcome"] = record
    if last is not None:
        order = order[-last:]
    if not order:
        return "audit log is empty"
    blocks = []
    for action_id in order:
        entry = actions[action_id]
        head = entry["start"] or entry["outcome"] or {}
        outcome = entry["outcome"]
        result = outcome.get("outcome", "?") if outcome else "no outcome recorded (interrupted?)"
        title = head.get("title") or f"{head.get('action', '?')} {head.get('target', '?')} at {head.get('site', '?')}"
        who = f"{head.get('user', '?')}@{head.get('host', '?')}"
        lines = [f"{_when(head.get('time'))}  {who}  {title}  -> {result.upper() if outcome else result}"]
        if outcome and outcome.get("reason"):
            lines.append(f"    reason: {outcome['reason']}")
        commits = head.get("commits") or {}
        for where, commit in commits.items():
            lines.append(f"    commit {where}: {str(commit)[:12]}")
        for step in entry["steps"]:
            duration = step.get("duration_s")
            took = f"{duration:.1f}s" if isinstance(duration, (int, float)) else "?"
            lines.append(f"    {step.get('number', '?'):>2} {step.get('status', '?'):<6} {took:>7}  {step.get('command', '')}")
            if step.get("error"):
                lines.append(f"              error: {step['error']}")
        if outcome and outcome.get("states"):
            for where, state in outcome["states"].items():
                lines.append(f"    left: {where}: {state}")
        # The log holds what servers and commands said (errors, names): shown clean of control sequences.
        blocks.append("\n".join(clean(line, 4000) for line in lines))
    return "\n\n".join(blocks)
