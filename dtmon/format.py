"""Pure formatting for the dashboard: ages, table rows as plain cells, and the diff between two tables.

Nothing here imports Textual or Rich: rows are plain data (text plus a semantic tone), so what the
table shows and what changes between two polls can be tested without a terminal.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field, replace
from datetime import datetime

from .redact import redact_url
from .model import (
    CRASHLOOP,
    DEGRADED,
    DOWN,
    MISSING,
    RUNNING,
    STATE_RANK,
    STOPPED,
    UPDATING,
    ServiceStatus,
    SiteStatus,
    StackStatus,
    TaskInfo,
)

#: Tones a cell can carry; the widget maps them to theme variables ($error, $warning, $success) or dim.
ERROR, WARNING, SUCCESS, MUTED = "error", "warning", "success", "muted"

STATE_TONE = {
    DOWN: ERROR,
    CRASHLOOP: ERROR,
    MISSING: ERROR,
    DEGRADED: WARNING,
    UPDATING: WARNING,
    RUNNING: SUCCESS,
    STOPPED: None,
}

UNREACHABLE = "unreachable"

#: Tables narrower than this switch to their compact columns (services: no image tag, no failed-recently).
COMPACT_BELOW = 120


# ---------------------------------------------------------------------------
# Ages.
# ---------------------------------------------------------------------------


def age(seconds: float) -> str:
    """A short age: "12s", "3m", "5h", "4d" (never negative)."""
    seconds = max(0.0, seconds)
    if seconds < 60:
        return f"{int(seconds)}s"
    if seconds < 3600:
        return f"{int(seconds // 60)}m"
    if seconds < 86400:
        return f"{int(seconds // 3600)}h"
    return f"{int(seconds // 86400)}d"


def coarse_age(seconds: float) -> str:
    """An age with minute resolution ("<1m", "3m", "5h"): table cells must not change every second."""
    return "<1m" if seconds < 60 else age(seconds)


def since(when: datetime | None, now: datetime, *, coarse: bool = True) -> str:
    """The age of `when` at `now` ("" when unknown)."""
    if when is None:
        return ""
    seconds = (now - when).total_seconds()
    return coarse_age(seconds) if coarse else age(seconds)


def latency(ms: float | None) -> str:
    """Poll latency: "12ms", "1.2s"."""
    if ms is None:
        return ""
    return f"{ms:.0f}ms" if ms < 1000 else f"{ms / 1000:.1f}s"


def steady_latency(shown: float | None, measured: float | None) -> float | None:
    """The latency to display: the one shown until a poll differs from it by more than 30% (and 5 ms).

    Every poll measures a slightly different latency; redrawing the chip for 12 -> 14 ms tells the
    operator nothing and costs bytes on every poll of every site.
    """
    if shown is None or measured is None:
        return measured
    if abs(measured - shown) <= max(5.0, 0.3 * shown):
        return shown
    return measured


# ---------------------------------------------------------------------------
# Site chips (the header).
# ---------------------------------------------------------------------------


@dataclass(frozen=True)
class Chip:
    """What one site's header chip says and which state class it wears."""

    text: str
    state: str  #: ok, problems, unreachable, pending


def site_problem_count(site: SiteStatus) -> int:
    """Services that need attention, and nodes that are down or drained."""
    return sum(1 for s in site.services if s.is_problem) + site.node_problems


def awaiting_first_poll(site: SiteStatus) -> bool:
    """True before a site's first poll has come back either way (no data and no error yet)."""
    return not site.reachable and site.polled_at is None and site.error in (None, "not polled yet")


#: After a site's name on its chip: its event stream is open, so changes show within about a second.
LIVE_MARK = "•"


def site_chip(site: SiteStatus, now: datetime, late_after: float | None = None, live: bool = False,
              slow_after_ms: float | None = None) -> Chip:
    """E.g. "chime ✓ 12ms 3s", "chime ▲3 12ms 3s", "kko ✗ 2m" (the age of the data shown);
    "chime• ✓ 12ms" when the site's event stream is open (`live`).

    With `late_after` (seconds), a reachable site's age is shown only once its data is that old:
    an age that cycles 0s, 1s, 2s with every poll says nothing, yet repaints the chip every second.
    With `slow_after_ms`, the poll latency is shown only when it is at least that (worth attention).
    """
    if awaiting_first_poll(site):
        return Chip(f"{site.name} …", "pending")
    if site.polled_at is None and not site.reachable:
        return Chip(f"{site.name} ✗ no data", UNREACHABLE)
    data_age = since(site.polled_at, now, coarse=False)
    if not site.reachable:
        if site.outage == "reconnecting":  # an ssh tunnel that dropped and is being brought back
            return Chip(f"{site.name} ⟳ {data_age}", UNREACHABLE)
        if site.outage in ("no quorum", "no leader"):  # the swarm's own outage, not the network's
            return Chip(f"{site.name} ✗ {site.outage} {data_age}", UNREACHABLE)
        return Chip(f"{site.name} ✗ {data_age}", UNREACHABLE)
    problems = site_problem_count(site)
    mark = f"▲{problems}" if problems else "✓"
    late = late_after is None or site.polled_at is None or (now - site.polled_at).total_seconds() >= late_after
    name = site.name + (LIVE_MARK if live else "")
    # A site that answered through a manager other than its first says which one (its place in the list).
    manager = f"via #{site.manager_index + 1}" if site.manager_index else ""
    slow = slow_after_ms is None or (site.latency_ms is not None and site.latency_ms >= slow_after_ms)
    text = " ".join(p for p in (name, mark, latency(site.latency_ms) if slow else "", manager, data_age if late else "") if p)
    return Chip(text, "problems" if problems else "ok")


# ---------------------------------------------------------------------------
# Table rows.
# ---------------------------------------------------------------------------


@dataclass(frozen=True)
class Cell:
    """One table cell: its text and a semantic tone (None for plain)."""

    text: str = ""
    tone: str | None = None
    bold: bool = False


@dataclass(frozen=True)
class Column:
    key: str
    label: str
    width: int  #: 0 = takes the remaining width


WIDE_COLUMNS = (
    Column("service", "service", 34),
    Column("replicas", "replicas", 8),
    Column("state", "state", 11),
    Column("tag", "image tag", 16),
    Column("updated", "updated", 7),
    Column("failed", "failed", 6),
    Column("error", "last error", 0),
)

COMPACT_COLUMNS = (
    Column("service", "service", 28),
    Column("replicas", "run", 5),
    Column("state", "state", 11),
    Column("updated", "upd", 4),
    Column("error", "last error", 0),
)


def columns(compact: bool) -> tuple[Column, ...]:
    return COMPACT_COLUMNS if compact else WIDE_COLUMNS


@dataclass(frozen=True)
class Row:
    """One table row, keyed by a stable id: `site:chime`, `stack:chime/datatrail`, or the service key."""

    key: str
    kind: str  #: site, stack or service
    cells: tuple[Cell, ...]
    service: ServiceStatus | None = field(default=None, compare=False)


@dataclass(frozen=True)
class View:
    """What the operator asked to see."""

    filter: str = ""
    problems_only: bool = False
    compact: bool = False
    folded: frozenset[str] = frozenset()  #: keys of stacks shown as their group row alone
    error_max_age: float = 3600.0  #: seconds; a healthy service's older last error is dimmed (config: health)


def site_key(site: str) -> str:
    return f"site:{site}"


def stack_key(site: str, stack: str) -> str:
    return f"stack:{site}/{stack}"


def matches(service: ServiceStatus, query: str) -> bool:
    """Case-insensitive substring over site, stack, service (short and swarm name) and state."""
    if not query:
        return True
    q = query.lower()
    return any(q in field.lower() for field in (service.site, service.stack, service.service, service.name, service.state))


def _error_text(service: ServiceStatus, now: datetime, compact: bool) -> str:
    text = service.error or service.update_message or ""
    if not text and not service.expected:
        return "not in the compose file"
    if not text and service.state == MISSING:
        return "in the compose file, not deployed"
    if text and service.error and service.error_at is not None:
        when = since(service.error_at, now)
        text = f"{when} {text}" if compact else f"{when} ago · {text}"
    if service.state == CRASHLOOP and service.looping_since is not None:
        # With the task history full, the loop began before the oldest failure it still holds: a lower bound.
        looping = ("≥" if service.failed_capped else "") + since(service.looping_since, now)
        prefix = f"looping {looping}"  # how many failed is the `failed` column's (and the detail's)
        return f"{prefix} · {text}" if text else prefix
    return text


def old_error(service: ServiceStatus, now: datetime, max_age: float) -> bool:
    """True for the last error of a healthy service that is older than `max_age` seconds: history, not news."""
    if service.is_problem or service.error_at is None:
        return False
    return (now - service.error_at).total_seconds() > max_age


def service_row(service: ServiceStatus, now: datetime, view: View, stale: bool) -> Row:
    """The row of one service; everything dimmed when its site's data is stale."""
    marker = "? " if not service.expected else "  "  # the indent carries the unexpected-service mark
    tone = STATE_TONE.get(service.state)
    replicas_tone = tone if service.state in (DEGRADED, DOWN) else None
    error_tone = ERROR if service.error and service.is_problem else (WARNING if not service.expected else None)
    if service.error and old_error(service, now, view.error_max_age):
        error_tone = MUTED
    cells = {
        "service": Cell(f"{marker}{service.service}", WARNING if not service.expected else None),
        "replicas": Cell(service.replicas if service.state != MISSING else f"-/{service.desired}", replicas_tone),
        "state": Cell(service.state, tone, bold=service.is_problem),
        "tag": Cell(service.tag),
        "updated": Cell(since(service.updated_at, now)),
        "failed": Cell(service.failed_text if service.failed_recent else "", ERROR if service.failed_recent else None),
        "error": Cell(_error_text(service, now, view.compact), error_tone),
    }
    if stale:
        cells = {k: Cell(c.text, MUTED) for k, c in cells.items()}
    return Row(service.key, "service", tuple(cells[c.key] for c in columns(view.compact)), service)


def _sum_replicas(services: Iterable[ServiceStatus]) -> str:
    running = desired = 0
    for s in services:
        running += s.running
        desired += s.desired
    return f"{running}/{desired}"


def stack_row(site: SiteStatus, stack: StackStatus, view: View, stale: bool, folded: bool = False) -> Row:
    state = stack.state
    problems = sum(1 for s in stack.services if s.is_problem)
    cells = {
        "service": Cell(f"{'▸' if folded else '▾'} {stack.name}", None, bold=True),
        "replicas": Cell(_sum_replicas(stack.services)),
        "state": Cell(state, STATE_TONE.get(state), bold=True),
        "tag": Cell(""),
        "updated": Cell(""),
        "failed": Cell(""),
        "error": Cell(f"{problems} problem{'s' if problems != 1 else ''} of {len(stack.services)}" if problems else ""),
    }
    if stale:
        cells = {k: Cell(c.text, MUTED, c.bold) for k, c in cells.items()}
    return Row(stack_key(site.name, stack.name), "stack", tuple(cells[c.key] for c in columns(view.compact)))


def site_row(site: SiteStatus, now: datetime, view: View) -> Row:
    services = site.services
    problems = site_problem_count(site)
    if awaiting_first_poll(site):  # the app starts every site unreachable with no error: not a failure yet
        state = Cell("…", None)
        note = Cell("waiting for the first poll")
    elif not site.reachable:
        # The outage's name ("no quorum"...); an ssh tunnel being brought back is "tunnel down" here (the
        # column's width), its note says "reconnecting" and why.
        word = "tunnel down" if site.outage == "reconnecting" else (site.outage or UNREACHABLE)
        state = Cell(word, ERROR, bold=True)
        # The state column already says "unreachable": the note says why, since when, and how old the data is.
        down_for = f"for {since(site.error_since, now)}" if site.error_since is not None else ""
        if view.compact:  # the age of the data is on the site's chip; the reason must fit
            text = f"{down_for}: {site.error}" if down_for else str(site.error)
        else:
            data = f"data {since(site.polled_at, now)} old" if site.polled_at is not None else "no data yet"
            text = " · ".join(p for p in (str(site.error), down_for, data) if p)
        note = Cell(text, ERROR)
    else:
        # How many services need attention, not the worst state: "chime 20/22 down" reads as if the site were down.
        bad = sort_services(s for s in services if s.is_problem)
        bad_nodes = [n for n in site.nodes if n.is_problem]
        if bad or bad_nodes:
            down = any(n.state != "ready" for n in bad_nodes)
            tone = ERROR if down or any(STATE_TONE.get(s.state) == ERROR for s in bad) else WARNING
            state = Cell(f"{problems} problem{'s' if problems != 1 else ''}", tone, bold=True)
            counts: dict[str, int] = {}
            for s in bad:
                counts[s.state] = counts.get(s.state, 0) + 1
            for n in bad_nodes:
                counts[f"node {n.problem}"] = counts.get(f"node {n.problem}", 0) + 1
            note = Cell(f"of {len(services)}: " + ", ".join(f"{n} {kind}" for kind, n in counts.items()))
        else:
            state = Cell("ok", SUCCESS, bold=True)
            note = Cell(f"{len(services)} services")
        if site.manager_index:  # answered, but not by the first manager: which one, and why the others did not
            note = Cell(f"{note.text} · via {redact_url(site.manager or '')} ({'; '.join(site.manager_notes)})", WARNING)
    cells = {
        "service": Cell(site.name, None, bold=True),
        "replicas": Cell(_sum_replicas(services) if services else ""),
        "state": state,
        "tag": Cell(""),
        "updated": Cell(""),
        "failed": Cell(""),
        "error": note,
    }
    return Row(site_key(site.name), "site", tuple(cells[c.key] for c in columns(view.compact)))


def unique_rows(rows: Iterable[Row]) -> list[Row]:
    """`rows` with every key unique: a repeated key gets "#2", "#3"... (a table cannot hold two rows under one
    key, and server data can repeat anything: task ids, label sets, names)."""
    seen: set[str] = set()
    out = []
    for row in rows:
        key, number = row.key, 1
        while key in seen:
            number += 1
            key = f"{row.key}#{number}"
        seen.add(key)
        out.append(row if key == row.key else replace(row, key=key))
    return out


def sort_services(services: Iterable[ServiceStatus]) -> list[ServiceStatus]:
    """Problems first (worst first), then by name."""
    return sorted(services, key=lambda s: (STATE_RANK.get(s.state, 9), s.service))


def build_rows(sites: Sequence[SiteStatus], now: datetime, view: View = View()) -> list[Row]:
    """The whole table in display order: site ▸ stack ▸ service, filtered as the view asks.

    A group row is shown when one of its services is; an unreachable site's row is always
    shown unless the filter excludes all of it.
    """
    rows: list[Row] = []
    for site in sites:
        try:
            rows.extend(site_rows(site, now, view))
        except Exception as exc:  # noqa: BLE001 - one site's bad data is that site's error, never the app's end
            rows.append(site_row(unshowable(site, exc), now, view))
    return unique_rows(rows)


def unshowable(site: SiteStatus, exc: BaseException) -> SiteStatus:
    """`site` as unreachable, with no data, because what it answered cannot be shown (the reason says why)."""
    from .sanitize import clean

    error = clean(f"cannot show its data: {type(exc).__name__}: {exc}")
    return replace(site, reachable=False, error=error, stacks=(), nodes=(), polled_at=None)


def site_rows(site: SiteStatus, now: datetime, view: View = View()) -> list[Row]:
    """The rows of one site (its own row first), or none when the view hides all of it."""
    rows: list[Row] = []
    folded_stacks = view.folded if not view.filter else frozenset()  # a filter shows every match
    stale = not site.reachable and site.polled_at is not None
    own: list[Row] = []
    for stack in site.stacks:
        shown = [
            s
            for s in sort_services(stack.services)
            if matches(s, view.filter) and (not view.problems_only or s.is_problem)
        ]
        if not shown:
            continue
        folded = stack_key(site.name, stack.name) in folded_stacks
        own.append(stack_row(site, stack, view, stale, folded))
        if not folded:
            own.extend(service_row(s, now, view, stale) for s in shown)
    site_matches = not view.filter or view.filter.lower() in site.name.lower()
    site_is_problem = not site.reachable or (site.polled_at is None)
    show_site = bool(own) or (site_matches and (not view.problems_only or site_is_problem))
    if show_site:
        rows.append(site_row(site, now, view))
        rows.extend(own)
    return rows


# ---------------------------------------------------------------------------
# Diff: the least the table must do to go from one list of rows to the next.
# ---------------------------------------------------------------------------


@dataclass(frozen=True)
class RowDiff:
    removed: tuple[str, ...] = ()
    added: tuple[Row, ...] = ()
    #: (row key, column index, new cell) for cells whose text or tone changed.
    changed: tuple[tuple[str, int, Cell], ...] = ()
    #: True when, after removing and appending, the order differs from the wanted one.
    reorder: bool = False

    @property
    def empty(self) -> bool:
        return not (self.removed or self.added or self.changed or self.reorder)


def diff_rows(old: Sequence[Row], new: Sequence[Row]) -> RowDiff:
    """What changed between two tables: rows to remove, rows to add (appended), cells to update."""
    old_by_key = {r.key: r for r in old}
    new_keys = {r.key for r in new}
    removed = tuple(r.key for r in old if r.key not in new_keys)
    added = tuple(r for r in new if r.key not in old_by_key)
    changed = []
    for row in new:
        before = old_by_key.get(row.key)
        if before is None:
            continue
        for index, (a, b) in enumerate(zip(before.cells, row.cells)):
            if a != b:
                changed.append((row.key, index, b))
    after_edit = [r.key for r in old if r.key in new_keys] + [r.key for r in added]
    reorder = after_edit != [r.key for r in new]
    return RowDiff(removed, added, tuple(changed), reorder)


def summary(sites: Sequence[SiteStatus], view: View, shown: int) -> str:
    """The status line: counts and what filters are on."""
    services = sum(len(s.services) for s in sites)
    problems = sum(site_problem_count(s) for s in sites)
    # A site whose first poll failed has no data yet, but its chip says ✗: it counts too.
    unreachable = sum(1 for s in sites if not s.reachable and not awaiting_first_poll(s))
    parts = [f"{services} services", f"{problems} problem{'s' if problems != 1 else ''}"]
    if unreachable:
        parts.append(f"{unreachable} site{'s' if unreachable != 1 else ''} unreachable")
    if view.filter:
        parts.append(f'filter "{view.filter}" ({shown} rows)')
    if view.problems_only:
        parts.append("problems only")
    return " · ".join(parts)



# ---------------------------------------------------------------------------
# Service detail: tasks with their history, and the log tail.
# ---------------------------------------------------------------------------

TASK_COLUMNS = (
    Column("slot", "slot", 4),
    Column("node", "node", 14),
    Column("state", "state", 9),
    Column("desired", "desired", 8),
    Column("since", "since", 5),
    Column("error", "error / message", 0),
)

TASK_TONE = {
    "running": SUCCESS,
    "failed": ERROR,
    "rejected": ERROR,
    "orphaned": ERROR,
    "starting": WARNING,
    "preparing": WARNING,
    "pending": WARNING,
    "assigned": WARNING,
    "accepted": WARNING,
    "ready": WARNING,
}


def task_rows(tasks: Sequence[TaskInfo], now: datetime) -> list[Row]:
    """One row per task: the newest of each slot (or node, for global services) first, its history dimmed below."""
    groups: dict[str, list[TaskInfo]] = {}
    for task in tasks:
        group = str(task.slot) if task.slot is not None else task.node
        groups.setdefault(group, []).append(task)
    rows = []
    for group, members in groups.items():
        members = sorted(members, key=lambda t: t.since.timestamp() if t.since else 0.0, reverse=True)
        for position, task in enumerate(members):
            history = position > 0
            detail = task.error or task.message or ""
            if task.exit_code not in (None, 0) and task.error:
                detail = f"{detail} (exit {task.exit_code})" if f"({task.exit_code})" not in detail else detail
            cells = (
                Cell(group if not history else "", None, bold=not history),
                Cell(task.node),
                Cell(task.state, MUTED if history else TASK_TONE.get(task.state), bold=not history),
                Cell(task.desired_state),
                Cell(since(task.since, now, coarse=False)),
                Cell(detail, MUTED if history else (ERROR if task.error else None)),
            )
            if history:
                cells = tuple(Cell(c.text, MUTED, c.bold) for c in cells)
            rows.append(Row(task.id, "history" if history else "task", cells))
    return unique_rows(rows)  # a task without an ID, or two with one, must not share a row


def log_update(shown: Sequence[str], fetched: Sequence[str]) -> tuple[str, list[str]]:
    """How to go from the log lines shown to the tail just fetched: ("same" | "append" | "replace", lines).

    When the new tail continues the shown one, only the new lines are appended; otherwise the
    whole tail replaces what is shown.
    """
    shown, fetched = list(shown), list(fetched)
    if shown == fetched:
        return "same", []
    if not shown:
        return "append", fetched
    for overlap in range(min(len(shown), len(fetched)), 0, -1):
        if shown[-overlap:] == fetched[:overlap]:
            return "append", fetched[overlap:]
    return "replace", fetched


#: Sized so that every column shows at 80 columns (node states, availabilities and roles are short words).
NODE_COLUMNS = (
    Column("site", "site", 6),
    Column("hostname", "hostname", 18),
    Column("role", "role", 7),
    Column("leader", "leader", 6),
    Column("state", "state", 7),
    Column("availability", "avail.", 6),
    Column("tasks", "tasks", 5),
    Column("engine", "engine", 0),  #: last: Debian's versions run long (20.10.24+dfsg1)
)


def node_rows(sites: Sequence[SiteStatus]) -> list[Row]:
    """One row per node of every site, problems (down, drained) in their tone; an unreachable site's dimmed."""
    rows = []
    for site in sites:
        for node in sorted(site.nodes, key=lambda n: (n.role != "manager", n.hostname, n.id)):
            stale = not site.reachable
            state_tone = SUCCESS if node.state == "ready" else ERROR
            cells = (
                Cell(site.name, None, bold=True),
                Cell(node.hostname or node.id[:12]),
                Cell(node.role),
                Cell("leader" if node.leader else ""),
                Cell(node.state, state_tone, bold=node.state != "ready"),
                Cell(node.availability, WARNING if node.availability != "active" else None,
                     bold=node.availability == "drain"),
                Cell(str(node.tasks_running)),
                Cell(node.engine_version),
            )
            if stale:
                cells = tuple(Cell(c.text, MUTED, c.bold) for c in cells)
            rows.append(Row(f"node:{site.name}/{node.id}", "node", cells))
    return unique_rows(rows)
