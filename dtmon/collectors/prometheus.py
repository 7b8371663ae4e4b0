"""Replication and deletion progress per site, and the health of what feeds it, from Prometheus.

Every query comes from the config (`[prometheus.queries]`, defaults in `dtmon.config.DEFAULT_QUERIES`),
with `$window` replaced by the configured window. All queries of one poll run at once, each in its
own thread, evaluated at the same instant, and the poll gives up after the configured timeout: a
query that fails (bad syntax, a timeout) is reported with its error and the others still count.
Queries go over httpx through `bounded`: every read of a query ends by the poll's deadline (so no
thread or connection outlives the poll, however slowly a server trickles) and no answer is read past
the size cap.
An empty query turns that check off. No Textual here.
"""

from __future__ import annotations

import json
import math
import re
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import replace
from datetime import datetime, timezone
from typing import Any

from .. import sanitize
from ..config import Config, PrometheusConfig
from ..model import PROGRESS_KINDS, FeedCheck, Progress, ProgressReport
from ..redact import redact_url, scrub, url_secrets
from . import bounded
from .background import in_background

#: A push older than this (seconds) is a problem by default (`[prometheus] max_push_age`): three missed
#: pushes of metric_pusher's 5-minute period.
PUSH_MAX_AGE = PrometheusConfig.max_push_age
#: The pending sparkline: a range query over the window on a grid of this many steps, then the pending now.
HISTORY_STEPS = 48
#: Connections kept per poll: every query runs at once.
_POOL = 32

_FEEDS = ("targets_up", "push_age", "pg_up")
_PARTS = ("pending", "done", "failed")
_UNITS = {"s": 1, "m": 60, "h": 3600, "d": 86400, "w": 604800, "y": 31536000}


def history_grid(at: float, span: float) -> tuple[float, float, float]:
    """(start, end, step) of the pending range query at time `at`: HISTORY_STEPS points on a grid fixed to
    multiples of the step, the last at or before `at`. Between step boundaries every poll gets the same
    points, so the sparkline stays still (and costs no repaint) until the data or the grid moves."""
    step = span / HISTORY_STEPS
    end = math.floor(at / step) * step
    return end - (HISTORY_STEPS - 1) * step, end, step


def window_seconds(window: str) -> float:
    """Seconds in a Prometheus duration such as "24h" (the config checks its form)."""
    match = re.fullmatch(r"(\d+)([smhdwy])", window)
    if not match:
        raise ValueError(f"not a Prometheus duration: {window!r}")
    return float(int(match.group(1)) * _UNITS[match.group(2)])


def expand(query: str, window: str) -> str:
    """The query as sent: `$window` replaced by the window."""
    return query.replace("$window", window)


def format_age(seconds: float) -> str:
    """A short age for people, to the nearest unit shown: 45s, 12m, 3h05m, 2d04h."""
    whole = max(0, round(seconds))
    if whole < 60:
        return f"{whole}s"
    minutes = round(whole / 60)
    if minutes < 60:
        return f"{minutes}m"
    if minutes < 48 * 60:
        return f"{minutes // 60}h{minutes % 60:02d}m"
    hours = round(whole / 3600)
    return f"{hours // 24}d{hours % 24:02d}h"


class _Unreachable(Exception):
    """The server did not answer (refused, timed out, broken connection)."""


def _api_error(status: int, body: bytes, truncated: bool = False) -> str:
    """Prometheus's own error from a non-200 answer ("bad_data: 1:12: parse error: ..."), else the answer's
    status and first line."""
    try:
        data = json.loads(body) if not truncated else None
        if isinstance(data, dict) and isinstance(data.get("error"), str):
            return bounded.one_line(f"{data.get('errorType') or 'error'}: {data['error']}", 300)
    except (ValueError, RecursionError):
        pass
    return f"HTTP {status}: {bounded.one_line(body)}"


def _number(raw: Any) -> float | None:
    """A sample's value: None for NaN and ±Inf (PromQL's own), ValueError beyond any believable count."""
    try:
        value = float(raw)
    except (TypeError, ValueError, OverflowError):
        return None
    if not math.isfinite(value):
        return None
    if abs(value) > sanitize.MAX_COUNT:
        raise ValueError(f"a value of {value:g} is beyond any believable number")
    return value


def _counts(per_site: dict[str, Any]) -> None:
    """ValueError when a site's count of files is negative or not finite (a broken series or exporter)."""
    for site, value in per_site.items():
        values = value if isinstance(value, tuple) else (value,)
        for number in values:
            if not math.isfinite(number) or abs(number) > sanitize.MAX_COUNT:
                raise ValueError(f"site {site}: the values sum to {number:g}, beyond any believable count")
            if number < 0:
                raise ValueError(f"site {site}: a count of files cannot be negative, got {number:g}")


def _labels(metric: dict[str, str]) -> tuple[tuple[str, str], ...]:
    """The labels without __name__, sorted (already cleaned by `_metric`)."""
    return tuple(sorted((k, v) for k, v in metric.items() if k != "__name__"))


def _short(value: Any) -> str:
    try:
        text = json.dumps(value) if not isinstance(value, str) else repr(value)
    except (TypeError, ValueError):  # a 5,000-digit int has no text
        text = sanitize.describe_number(value)
    return sanitize.clean(text if len(text) <= 60 else text[:57] + "...", 60)


def _metric(series: dict[str, Any]) -> dict[str, str]:
    """A series' labels; ValueError unless they are an object of strings."""
    metric = series.get("metric")
    if metric is None:
        return {}
    if not isinstance(metric, dict) or not all(isinstance(v, str) for v in metric.values()):
        raise ValueError(f"malformed answer: a series' `metric` is {_short(metric)}, expected an object of labels")
    # Label names and values are shown (targets, sites): clean them here, where they enter the model.
    return {sanitize.name(k): sanitize.name(v) for k, v in metric.items()}


def _sample(point: Any, key: str) -> Any:
    """The value of one [time, "value"] pair; ValueError for anything else."""
    if not isinstance(point, (list, tuple)) or len(point) != 2 or _number(point[0]) is None:
        raise ValueError(f"malformed answer: a series' `{key}` holds {_short(point)}, expected [time, \"value\"]")
    return point[1]


def _vector(result: Any) -> list[tuple[dict[str, str], float | None]]:
    """(labels, value) of an instant vector; ValueError for anything else (a scalar, a string, a broken series)."""
    if not isinstance(result, list) or not all(isinstance(r, dict) and "value" in r for r in result):
        raise ValueError("expected an instant vector (one series per site)")
    return [(_metric(r), _number(_sample(r["value"], "value"))) for r in result]


def _by_site(series: list[tuple[dict[str, str], float | None]]) -> dict[str, float]:
    """Values summed per `site` label; ValueError when a series has none."""
    out: dict[str, float] = {}
    for metric, value in series:
        site = metric.get("site")
        if site is None:
            raise ValueError("a series has no `site` label; group the query with `sum by (site) (...)`")
        if value is not None:
            out[site] = out.get(site, 0.0) + value
    return out


def _history_by_site(result: Any) -> dict[str, tuple[float, ...]]:
    """Range query result -> per site the values, oldest first (series of one site summed per step)."""
    if not isinstance(result, list) or not all(isinstance(r, dict) and "values" in r for r in result):
        raise ValueError("expected a range vector (one series per site)")
    steps: dict[str, dict[float, float]] = {}
    for series in result:
        site = _metric(series).get("site")
        if site is None:
            raise ValueError("a series has no `site` label; group the query with `sum by (site) (...)`")
        if not isinstance(series["values"], list):
            raise ValueError(f"malformed answer: a series' `values` is {_short(series['values'])}, expected a list")
        points = steps.setdefault(site, {})
        for point in series["values"]:
            value = _number(_sample(point, "values"))
            if value is not None:
                ts = float(point[0])
                points[ts] = points.get(ts, 0.0) + value
    return {site: tuple(points[t] for t in sorted(points)) for site, points in steps.items()}


def derive(
    site: str,
    kind: str,
    pending: float | None,
    done: float | None,
    failed: float | None,
    window: str,
    history: Sequence[float] = (),
) -> Progress:
    """One site's progress of one kind from the raw numbers (pure; see `Progress` for the definitions)."""
    hours = window_seconds(window) / 3600
    rate = done / hours if done is not None else None
    percent = None
    if done is not None and pending is not None and done + pending > 0:
        percent = done / (done + pending) * 100
    eta = None
    if pending is not None:
        if pending <= 0:
            eta = 0.0
        elif rate is not None and rate > 0:
            eta = pending / rate * 3600
    return Progress(site, kind, pending, done, failed, percent, rate, eta, tuple(history))


def feed_checks(name: str, series: list[tuple[dict[str, str], float | None]], max_push_age: float) -> list[FeedCheck]:
    """Judge each series of a feed query: `up` and `pg_up` must be 1, a push no older than `max_push_age`."""
    if not series:
        return [FeedCheck(name, (), None, False, f"{name}: the query returned no series")]
    checks = []
    for metric, value in series:
        labels = _labels(metric)
        check = FeedCheck(name, labels, value, False, "")
        where = check.target or "(no labels)"
        if name == "push_age":
            ok = value is not None and value <= max_push_age
            # Minute resolution above a minute, "<1m" below: the text changes once a minute, not every poll.
            age = "unknown" if value is None else "<1m" if value < 60 else format_age(value)
            detail = f"last push {where}: {age} ago"
            if not ok:
                detail += f" (older than {format_age(max_push_age)})"
        elif name == "pg_up":
            ok = value == 1
            detail = f"pg_up {where}: {'up' if ok else f'{value:g}' if value is not None else 'no value'}"
        else:
            ok = value == 1
            detail = f"target {where}: {'up' if ok else 'down'}"
        checks.append(replace(check, ok=ok, detail=detail))
    return checks


class PrometheusCollector:
    """Polls one Prometheus server; `poll()` never raises and never takes much longer than `timeout`."""

    def __init__(
        self,
        config: PrometheusConfig,
        timeout: float,
        site_order: Sequence[str] = (),
        max_push_age: float | None = None,
        max_bytes: int = bounded.DEFAULT_MAX_BYTES,
    ) -> None:
        self.config = config
        self.timeout = timeout
        self.max_bytes = max_bytes  #: the largest answer read for one query
        self.site_order = tuple(site_order)
        self.max_push_age = config.max_push_age if max_push_age is None else max_push_age
        self.url = redact_url(config.url)  #: the URL as shown: without its password
        self._secrets = url_secrets(config.url)
        self.last = ProgressReport(self.url, reachable=False, error="not polled yet", window=config.window)
        self._client: Any = None
        self._lock = threading.Lock()

    def _connect(self) -> Any:
        with self._lock:
            if self._client is None:
                # One connection per query: every query of a poll runs at once.
                self._client = bounded.client(self.config.url, max_connections=_POOL)
            return self._client

    def close(self) -> None:
        with self._lock:
            if self._client is not None:
                self._client.close()
                self._client = None

    def _jobs(self) -> dict[str, tuple[str, str]]:
        """name -> (kind of call, PromQL) for every query of one poll."""
        jobs: dict[str, tuple[str, str]] = {}
        for name, query in self.config.queries.items():
            if query.strip():
                jobs[name] = ("instant", expand(query, self.config.window))
        for kind in PROGRESS_KINDS:
            name = f"{kind}_pending"
            if name in jobs:
                jobs[f"{name}[range]"] = ("range", jobs[name][1])
        return jobs

    def _run(self, client: Any, call: str, query: str, at: float, budget: bounded.Budget | None = None) -> Any:
        """One query's `result`, read within the poll's deadline and the size cap (and the poll's `budget`)."""
        if call == "instant":
            path, params = "/api/v1/query", {"query": query, "time": f"{at:.3f}"}
        else:
            start, end, step = history_grid(at, window_seconds(self.config.window))
            path = "/api/v1/query_range"
            params = {"query": query, "start": f"{start:.3f}", "end": f"{end:.3f}", "step": f"{step:g}"}
        try:
            answer = bounded.get(client, path, params=params, seconds=self.timeout, max_bytes=self.max_bytes,
                                 budget=budget)
        except (bounded.TimedOut, bounded.Unreachable) as exc:
            raise _Unreachable(str(exc)) from None
        except bounded.FetchError as exc:  # too large
            raise ValueError(str(exc)) from None
        if not answer.ok:
            raise ValueError(_api_error(answer.status, answer.body, answer.truncated))
        try:
            return answer.json()["data"]["result"]
        except bounded.NotJson:
            raise ValueError("the answer is not JSON (is this Prometheus?)") from None
        except (KeyError, TypeError, IndexError):
            raise ValueError("the answer is not a Prometheus query result") from None

    def poll(self) -> ProgressReport:
        """Every query once, concurrently; a dead server is reported, a failing query named."""
        started = time.monotonic()
        deadline = started + self.timeout
        at = round(time.time(), 3)
        try:
            client = self._connect()
        except Exception as exc:  # noqa: BLE001 - a broken install must not take the dashboard down
            return self._failed(f"cannot create the Prometheus client: {exc}")
        jobs = self._jobs()
        # The cap holds for the poll's answers together: eleven queries at once would hold eleven times it.
        budget = bounded.Budget(self.max_bytes)
        results: dict[str, Any] = {}
        errors: dict[str, BaseException] = {}
        finished = threading.Lock()  # held while recording; a query that answers after the deadline is dropped
        closed = False

        def run(name: str, call: str, query: str) -> None:
            try:
                with bounded.deadline(deadline):  # every read of the query ends by the poll's deadline
                    outcome, failure = self._run(client, call, query, at, budget), None
            except Exception as exc:  # noqa: BLE001 - reported per query
                outcome, failure = None, exc
            with finished:
                if closed:
                    return
                if failure is None:
                    results[name] = outcome
                else:
                    errors[name] = failure

        threads = [
            threading.Thread(target=run, args=(name, call, query), daemon=True, name=f"prometheus-{name}")
            for name, (call, query) in jobs.items()
        ]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(max(0.0, deadline - time.monotonic()))
        with finished:
            closed = True
        late = [name for name in jobs if name not in results and name not in errors]
        for name in late:
            errors[name] = _Unreachable(f"timed out after {self.timeout:g}s")
        if jobs and all(isinstance(errors.get(name), _Unreachable) for name in jobs):
            return self._failed(str(errors[next(iter(jobs))]))
        if len(jobs) > 1 and not results and len({str(e) for e in errors.values()}) == 1:
            # Every query got the same refusal (e.g. a proxy's 502): one problem, not one per query.
            return self._failed(str(errors[next(iter(jobs))]))
        try:
            report = self._assemble(results, errors, at)
        except Exception as exc:  # noqa: BLE001 - the answers cannot be shown: this source's error, not a crash
            return self._failed(f"cannot read the answers: {type(exc).__name__}: {exc}")
        report = replace(report, latency_ms=(time.monotonic() - started) * 1000)
        self.last = report
        return report

    def _failed(self, reason: str) -> ProgressReport:
        error = scrub(sanitize.clean(f"{self.url}: {reason}"), self._secrets)
        report = replace(self.last, reachable=False, error=error, query_errors=())
        self.last = report
        return report

    def _error_text(self, exc: BaseException | str) -> str:
        """A query's error for people: one clean line (it may quote the server), no password."""
        return scrub(sanitize.clean(str(exc)), self._secrets)

    def _assemble(self, results: dict[str, Any], errors: dict[str, BaseException], at: float) -> ProgressReport:
        query_errors: dict[str, str] = {name: self._error_text(exc) for name, exc in errors.items()}
        values: dict[str, dict[str, float]] = {}
        histories: dict[str, dict[str, tuple[float, ...]]] = {}
        feeds: list[FeedCheck] = []
        order = {name: i for i, name in enumerate(self._jobs())}
        for name in sorted(results, key=lambda n: order.get(n, 0)):
            result = results[name]
            try:
                if name.endswith("[range]"):
                    histories[name.removesuffix("[range]")] = _history_by_site(result)
                elif name in _FEEDS:
                    feeds.extend(feed_checks(name, _vector(result), self.max_push_age))
                else:
                    values[name] = _by_site(_vector(result))
                if name.endswith("[range]"):
                    _counts(histories[name.removesuffix("[range]")])
                elif name in values:
                    _counts(values[name])
            except Exception as exc:  # noqa: BLE001 - bad data is that query's error, never the poll's end
                values.pop(name, None)
                if name.endswith("[range]"):
                    histories.pop(name.removesuffix("[range]"), None)
                if not isinstance(exc, ValueError):  # a shape the checks above missed
                    exc = ValueError(f"malformed answer: {type(exc).__name__}: {exc}")
                query_errors[name] = self._error_text(exc)
        seen = {site for per_site in (*values.values(), *histories.values()) for site in per_site}
        ordered = [s for s in self.site_order if s in seen] + sorted(seen - set(self.site_order))
        progress = []
        for site in ordered:
            for kind in PROGRESS_KINDS:
                parts = [values.get(f"{kind}_{part}", {}).get(site) for part in _PARTS]
                history = histories.get(f"{kind}_pending", {}).get(site, ())
                if all(p is None for p in parts) and not history:
                    continue
                if history and parts[0] is not None:  # the grid's points, then now
                    history = (*history, parts[0])
                progress.append(derive(site, kind, *parts, window=self.config.window, history=history))
        return ProgressReport(
            url=self.url,
            reachable=True,
            polled_at=datetime.fromtimestamp(at, timezone.utc),
            window=self.config.window,
            progress=tuple(progress),
            feeds=tuple(feeds),
            query_errors=tuple(
                f"{name}: {text}" for name, text in sorted(query_errors.items(), key=lambda kv: order.get(kv[0], 0))
            ),
        )


def start_poll(config: Config) -> Callable[[float], ProgressReport | None]:
    """Start one poll of the configured Prometheus in a thread; the returned function waits for it.

    The waiter takes the seconds it may still wait and returns None when no [prometheus] is configured.
    """
    if config.prometheus is None:
        return lambda remaining: None
    collector = PrometheusCollector(config.prometheus, config.timeout, site_order=[s.name for s in config.sites],
                                    max_bytes=config.max_bytes)
    return in_background(
        collector.poll,
        failed=collector._failed,
        late=lambda: replace(collector.last, reachable=False,
                             error=f"{collector.url}: timed out after {config.timeout:g}s"),
        name="poll-prometheus",
    )
