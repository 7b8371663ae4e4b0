"""A service's logs as `docker service logs` gives them: each line cleaned, with its time and the task/node it came from.

The engine is asked with `timestamps=true&details=true`, so every raw line reads
`2026-12-02T16:50:44.058060390Z com.docker.swarm.node.id=…,com.docker.swarm.task.id=… message`; the time and the
labels are parsed out here, the message goes through `sanitize.log_line` (SGR colours at most). Pure parsing plus
one streaming reader; no Textual.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from typing import Any
from urllib.parse import unquote

from .. import sanitize
from ..sanitize import LogLine

#: `--tail` when not given (lines per service), and its bounds: a read is always bounded.
DEFAULT_TAIL = 100
TAIL_RANGE = (0, 100_000)
#: `--since` bound: durations up to this long (a year).
MAX_SINCE = 366 * 86400
#: Longest partial line buffered while waiting for its newline (characters); longer is cut into lines.
MAX_PENDING = 4 * sanitize.MAX_LOG_LINE

_TIMESTAMP = re.compile(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(?:\.\d{1,9})?(?:Z|[+-]\d\d:\d\d)")
_DETAILS = re.compile(r"(?:[A-Za-z0-9._%-]+=[^,\s]*)(?:,[A-Za-z0-9._%-]+=[^,\s]*)*")
_DURATION = re.compile(r"(?:(\d{1,7})h)?(?:(\d{1,9})m(?!s))?(?:(\d{1,10})s)?")

NODE_LABEL = "com.docker.swarm.node.id"
TASK_LABEL = "com.docker.swarm.task.id"


@dataclass(frozen=True)
class LogEntry:
    """One log line: when it was written, which task and node wrote it, and its clean text."""

    line: LogLine
    time: datetime | None = None
    time_text: str = ""  #: the engine's timestamp, as it sent it (nanoseconds), cleaned
    task_id: str = ""
    node_id: str = ""
    source: str = ""  #: `name.slot.task@node`, when the reader knew the names (see TaskNames.source)

    @property
    def text(self) -> str:
        return self.line.text


@dataclass(frozen=True)
class TaskNames:
    """How to name a log line's source: task id -> (service name, slot), node id -> hostname."""

    tasks: dict[str, tuple[str, int | None]]
    nodes: dict[str, str]

    def source(self, entry: LogEntry) -> str:
        """`name.slot.taskid@node` as `docker service logs` prints it (task and node ids short when unknown)."""
        if not entry.task_id and not entry.node_id:
            return ""
        name, slot = self.tasks.get(entry.task_id, ("", None))
        task = ".".join(part for part in (name, str(slot) if slot else "", entry.task_id[:12]) if part)
        node = self.nodes.get(entry.node_id, entry.node_id[:12])
        return f"{task}@{node}" if node else task


def parse_duration(text: str) -> int:
    """Seconds in a `--since` duration such as 90s, 10m, 2h or 1h30m (as docker takes them); ValueError otherwise."""
    from ..config_values import shown

    match = _DURATION.fullmatch(text) if text else None
    if not match or not any(match.groups()):
        raise ValueError(f"expected a duration such as 30s, 10m, 2h or 1h30m, got {shown(text)}")
    hours, minutes, secs = (int(g) if g else 0 for g in match.groups())
    total = hours * 3600 + minutes * 60 + secs
    if not 0 < total <= MAX_SINCE:
        raise ValueError(f"expected a duration from 1s to {MAX_SINCE // 86400} days, got {shown(text)}")
    return total


def parse_since(text: str, now: datetime) -> datetime:
    """A `--since` value: a duration back from `now`, or an RFC 3339 time; ValueError with one line otherwise."""
    from .swarm import parse_time

    if _TIMESTAMP.fullmatch(text):
        when = parse_time(text)
        if when is not None:
            return when
    return now - timedelta(seconds=parse_duration(text))


def parse_entry(raw: str) -> LogEntry:
    """One raw line of a `timestamps=true&details=true` stream (without its newline) as a LogEntry.

    A line without the timestamp or the details (an engine that ignored them, a hostile one) is kept whole
    as the message: nothing the server sent is dropped unseen, and nothing of it is trusted as a field.
    """
    from .swarm import parse_time

    rest = raw.removesuffix("\r")
    when, when_text = None, ""
    head, sep, tail = rest.partition(" ")
    if sep and len(head) <= 40 and _TIMESTAMP.fullmatch(head):
        when, when_text, rest = parse_time(head), head, tail
    labels: dict[str, str] = {}
    head, sep, tail = rest.partition(" ")
    if head and len(head) <= 2000 and _DETAILS.fullmatch(head) and (TASK_LABEL in head or NODE_LABEL in head):
        for pair in head.split(","):
            key, _, value = pair.partition("=")
            labels[unquote(key)] = unquote(value)
        rest = tail
    return LogEntry(
        line=sanitize.log_line(rest),
        time=when,
        time_text=sanitize.clean(when_text, 40),
        task_id=sanitize.name(labels.get(TASK_LABEL, "")),
        node_id=sanitize.name(labels.get(NODE_LABEL, "")),
    )


def split_lines(chunks: Iterable[bytes], limit: int = MAX_PENDING) -> Iterator[str]:
    """Complete lines from a stream of byte chunks (frames), decoded as UTF-8 with replacement.

    A partial line waits for its newline, up to `limit` characters (then it is a line of its own), so a
    server that never sends a newline cannot make the reader hold more than that.
    """
    pending = ""
    for chunk in chunks:
        if not isinstance(chunk, (bytes, bytearray)):
            continue
        pending += bytes(chunk).decode("utf-8", "replace")
        *lines, pending = pending.split("\n")
        yield from lines
        while len(pending) > limit:
            yield pending[:limit]
            pending = pending[limit:]
    if pending:
        yield pending


def task_names(client: Any, service_id: str) -> TaskNames:
    """Task ids -> (service name, slot) for one service, node ids -> hostnames (one call each)."""
    from .swarm import _dict

    tasks: dict[str, tuple[str, int | None]] = {}
    nodes: dict[str, str] = {}
    service = _dict(client.inspect_service(service_id))
    name = sanitize.name(_dict(service.get("Spec")).get("Name") or "")
    raw_tasks = client.tasks(filters={"service": service_id})
    for task in raw_tasks if isinstance(raw_tasks, list) else []:
        task = _dict(task)
        slot = task.get("Slot")
        slot = slot if isinstance(slot, int) and not isinstance(slot, bool) and 0 < slot < 2**31 else None
        tasks[sanitize.name(task.get("ID") or "")] = (name, slot)
    raw_nodes = client.nodes()
    for node in raw_nodes if isinstance(raw_nodes, list) else []:
        node = _dict(node)
        nodes[sanitize.name(node.get("ID") or "")] = sanitize.name(_dict(node.get("Description")).get("Hostname") or "")
    return TaskNames(tasks, nodes)


def read_logs(client: Any, service_id: str, *, tail: int | None = DEFAULT_TAIL, since: datetime | None = None,
              follow: bool = False) -> Iterator[LogEntry]:
    """The service's log entries from the engine, oldest first; with `follow`, new ones as they come (until closed).

    Without `follow` at most `tail` lines are read (the engine cuts the stream); with it, the stream stays
    open and the caller ends it (Ctrl-C, or closing the generator).
    """
    kwargs: dict[str, Any] = {"stdout": True, "stderr": True, "timestamps": True, "details": True, "is_tty": False,
                              "follow": follow, "tail": "all" if tail is None else tail}
    if since is not None:
        kwargs["since"] = int(since.timestamp())
    data = client.service_logs(service_id, **kwargs)
    chunks: Iterable[bytes] = [data] if isinstance(data, (bytes, bytearray)) else data
    count = 0
    for raw in split_lines(chunks):
        yield parse_entry(raw)
        count += 1
        if not follow and tail is not None and count >= tail * 2 + 10:  # an engine that ignored `tail`
            return


def format_entry(entry: LogEntry, names: TaskNames, timestamps: bool, colour: bool = False) -> str:
    """One line as `dtmon logs` prints it: [time] source | text (colours only when `colour`)."""
    source = names.source(entry)
    text = entry.line.ansi() + ("\x1b[0m" if entry.line.sgr else "") if colour else entry.text
    parts = []
    if timestamps:
        parts.append(entry.time_text or "-")
    if source:
        parts.append(f"{source} |")
    parts.append(text)
    return " ".join(parts)


def now_utc() -> datetime:
    return datetime.now(timezone.utc)


#: What a caller of `read_logs` may pass as a clock (tests freeze it).
Clock = Callable[[], datetime]
