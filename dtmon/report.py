"""`dtmon status` output: JSON for scripts, a compact table for people. No Textual here."""

from __future__ import annotations

import json
import math
from datetime import datetime, timezone
from typing import Any

from .model import BucketsReport, BucketStatus, ServiceStatus, SiteStatus, Snapshot
from .model import FeedCheck, Progress, ProgressReport
from .redact import redact_url


def iso(when: datetime | None) -> str | None:
    """UTC ISO 8601 with a Z, seconds precision."""
    if when is None:
        return None
    return when.astimezone(timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")


def service_json(s: ServiceStatus) -> dict[str, Any]:
    return {
        "name": s.name,
        "stack": s.stack,
        "service": s.service,
        "mode": s.mode,
        "running": s.running,
        "desired": s.desired,
        "state": s.state,
        "image": s.image,
        "error": s.error,
        "error_at": iso(s.error_at),
        "updated_at": iso(s.updated_at),
        "failed_recent": s.failed_recent,
        "failed_capped": s.failed_capped,
        "looping_since": iso(s.looping_since),
        "expected": s.expected,
    }


def site_json(site: SiteStatus) -> dict[str, Any]:
    return {
        "name": site.name,
        "reachable": site.reachable,
        "error": site.error,
        "latency_ms": site.latency_ms,
        "polled_at": iso(site.polled_at),
        "manager": redact_url(site.manager) if site.manager else None,
        "outage": None if site.reachable else (site.outage or "unreachable"),
        "managers_passed_over": list(site.manager_notes),
        "stacks": [
            {"name": stack.name, "state": stack.state, "services": [service_json(s) for s in stack.services]}
            for stack in site.stacks
        ],
    }


def snapshot_json(snap: Snapshot) -> dict[str, Any]:
    return {
        "generated_at": iso(snap.generated_at),
        "sites": [site_json(site) for site in snap.sites],
        **buckets_json(snap.buckets),
        **progress_json(snap.progress),
        "problems": snap.problems,
    }


def finite(value: Any) -> Any:
    """`value` with every NaN or infinity (no JSON number) replaced by null, in lists and objects too."""
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, dict):
        return {key: finite(item) for key, item in value.items()}
    if isinstance(value, (list, tuple)):
        return [finite(item) for item in value]
    return value


def render_json(snap: Snapshot) -> str:
    """The snapshot as strict JSON: never `NaN` or `Infinity`, which JSON parsers refuse."""
    return json.dumps(finite(snapshot_json(snap)), indent=2, allow_nan=False)


def _table(rows: list[list[str]], indent: str = "  ") -> list[str]:
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]))]
    return [indent + "  ".join(cell.ljust(w) for cell, w in zip(row, widths)).rstrip() for row in rows]


def render_text(snap: Snapshot) -> str:
    """A compact table per site, then the problems."""
    lines: list[str] = []
    for site in snap.sites:
        if site.reachable:
            head = f"{site.name}: ok, {site.latency_ms:.0f} ms"
            if site.manager_index:  # not the first manager: say which one answered, and why the others did not
                head += f", answered by {redact_url(site.manager or '')} ({'; '.join(site.manager_notes)})"
        else:
            head = f"{site.name}: {(site.outage or 'unreachable').upper()} ({site.error})"
        lines.append(head)
        rows = [["STACK", "SERVICE", "STATE", "REPLICAS", "IMAGE", "ERROR"]]
        for stack in site.stacks:
            for s in stack.services:
                state = s.state if s.expected else f"{s.state}*"
                rows.append([stack.name, s.service, state, s.replicas, s.tag or "-", (s.error or "")[:60]])
        if len(rows) > 1 and site.reachable:
            lines.extend(_table(rows))
        if any(not s.expected for s in site.services) and site.reachable:
            lines.append("  * not in the stack's compose file")
        lines.append("")
    lines.extend(buckets_text(snap.buckets))
    lines.extend(progress_text(snap.progress))
    problems = snap.problems
    if problems:
        lines.append(f"{len(problems)} problem{'s' if len(problems) != 1 else ''}:")
        lines.extend(f"  {p}" for p in problems)
    else:
        lines.append("all healthy")
    return "\n".join(lines)


def bucket_json(b: BucketStatus) -> dict[str, Any]:
    return {
        "name": b.name,
        "queued": b.queued,
        "running": b.running,
        "success": b.success,
        "failure": b.failure,
        "total": b.total,
        "consumer": b.consumer,
        "consumer_state": b.consumer_state,
        "consumers": [{"service": key, "state": state} for key, state in b.consumers],
        "rate_per_hour": b.rate_per_hour,
        "eta_seconds": b.eta_seconds,
        "growing": b.growing,
        "problem": b.problem,
    }


def source_json(report: BucketsReport | ProgressReport) -> dict[str, Any]:
    """How a source (the Buckets service, Prometheus) answered its last poll."""
    return {
        "url": report.url,
        "reachable": report.reachable,
        "error": report.error,
        "latency_ms": report.latency_ms,
        "polled_at": iso(report.polled_at),
    }


def buckets_json(report: BucketsReport | None) -> dict[str, Any]:
    """`buckets` (one object per bucket) and `buckets_source` (the service itself; null when not configured)."""
    if report is None:
        return {"buckets": [], "buckets_source": None}
    return {"buckets": [bucket_json(b) for b in report.buckets], "buckets_source": source_json(report)}


def buckets_text(report: BucketsReport | None) -> list[str]:
    """The buckets table for people, with a blank line after it; nothing when not configured."""
    if report is None:
        return []
    from .queue_trend import format_eta, format_rate

    if report.reachable:
        lines = [f"buckets {report.url}: ok, {report.latency_ms:.0f} ms"]
    else:
        lines = [f"buckets {report.url}: UNREACHABLE ({report.error})"]
    rows = [["BUCKET", "QUEUED", "RUNNING", "SUCCESS", "FAILURE", "TOTAL", "RATE", "ETA", "CONSUMER", "STATE"]]
    for b in report.buckets:
        state = b.consumer_state or ("-" if b.consumer else "")
        marks = ("!" if b.problem else "") + ("^" if b.growing else "")
        rows.append(
            [f"{b.name}{marks}", str(b.queued), str(b.running), str(b.success), str(b.failure), str(b.total),
             format_rate(b.rate_per_hour), format_eta(b.eta_seconds),
             b.consumer or ("unknown" if b.problem else "-"), state]
        )
    if not any(b.rate_per_hour is not None for b in report.buckets):  # one poll has no trend: no empty columns
        rows = [row[:6] + row[8:] for row in rows]
    if len(rows) > 1 and report.reachable:
        lines.extend(_table(rows))
    elif report.reachable:
        lines.append("  (no bucket matches)")
    if report.reachable and any(b.problem or b.growing for b in report.buckets):
        lines.append("  ! work waiting, consumer not running or unknown   ^ queue keeps growing")
    lines.append("")
    return lines


def _num(value: float | None) -> float | int | None:
    """A Prometheus number for JSON: whole values as integers, as Prometheus itself prints them."""
    if value is not None and value.is_integer():
        return int(value)
    return value


def progress_row_json(p: Progress) -> dict[str, Any]:
    return {
        "site": p.site,
        "kind": p.kind,
        "pending": _num(p.pending),
        "done": _num(p.done),
        "failed": _num(p.failed),
        "percent": p.percent,
        "rate_per_hour": p.rate_per_hour,
        "eta_seconds": p.eta_seconds,
    }


def feed_json(f: FeedCheck) -> dict[str, Any]:
    return {"name": f.name, "labels": dict(f.labels), "value": _num(f.value), "ok": f.ok, "detail": f.detail}


def progress_json(report: ProgressReport | None) -> dict[str, Any]:
    """`progress` (one object per site and kind) and `prometheus` (the source, its feeds and failed queries)."""
    if report is None:
        return {"progress": [], "prometheus": None}
    source = {
        **source_json(report),
        "window": report.window,
        "feeds": [feed_json(f) for f in report.feeds],
        "errors": list(report.query_errors),
    }
    return {"progress": [progress_row_json(p) for p in report.progress], "prometheus": source}


def format_count(value: float | None) -> str:
    """A file count for people: "12,345"; "-" when unknown."""
    return "-" if value is None else f"{value:,.0f}"


def format_percent(value: float | None) -> str:
    return "-" if value is None else f"{value:.1f}%"


def format_per_hour(value: float | None) -> str:
    return "-" if value is None else f"{value:,.0f}/h"


def format_duration(seconds: float | None) -> str:
    """An ETA for people: "done", "45s", "12m", "3h05m", "2d04h"; "-" when unknown."""
    if seconds is None:
        return "-"
    if seconds <= 0:
        return "done"
    from .collectors.prometheus import format_age

    return format_age(seconds)


def progress_text(report: ProgressReport | None) -> list[str]:
    """The progress table and the feeds that are not ok, with a blank line after; nothing when not configured."""
    if report is None:
        return []
    if report.reachable:
        lines = [f"prometheus {report.url}: ok, {report.latency_ms:.0f} ms, window {report.window}"]
    else:
        lines = [f"prometheus {report.url}: UNREACHABLE ({report.error})"]
    rows = [["SITE", "KIND", "PENDING", "DONE", "FAILED", "DONE%", "RATE", "ETA"]]
    for p in report.progress:
        rows.append([p.site, p.kind, format_count(p.pending), format_count(p.done), format_count(p.failed),
                     format_percent(p.percent), format_per_hour(p.rate_per_hour), format_duration(p.eta_seconds)])
    if len(rows) > 1 and report.reachable:
        lines.extend(_table(rows))
    elif report.reachable:
        lines.append("  (no progress series)")
    if report.reachable:
        bad = [f for f in report.feeds if not f.ok]
        good = len(report.feeds) - len(bad)
        lines.append(f"  feeds: {good} ok" + (f", {len(bad)} bad" if bad else ""))
        lines.extend(f"    {f.detail}" for f in bad)
        lines.extend(f"  query {e}" for e in report.query_errors)
    lines.append("")
    return lines
