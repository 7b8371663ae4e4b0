"""Trend of each bucket's queue over a session: history, rate, ETA to empty, sparkline. Pure; no Textual."""

from __future__ import annotations

import math
from collections import deque
from collections.abc import Sequence
from dataclasses import replace

from .model import BucketsReport, BucketStatus

#: Samples kept per bucket (the sparkline shows the newest of them).
MAX_SAMPLES = 120
#: Only samples this recent (seconds) feed the rate, so it follows what the queue does now.
RATE_WINDOW = 900.0
#: A queue "keeps growing" when it rose over this many consecutive polls without ever falling.
GROWING_STEPS = 3

_BLOCKS = "▁▂▃▄▅▆▇█"


def rate_per_hour(samples: Sequence[tuple[float, int]]) -> float | None:
    """Least-squares slope of (seconds, queued) samples, per hour; None with fewer than two distinct times."""
    if len(samples) < 2:
        return None
    n = len(samples)
    mean_t = sum(t for t, _ in samples) / n
    mean_q = sum(q for _, q in samples) / n
    var_t = sum((t - mean_t) ** 2 for t, _ in samples)
    if var_t == 0:
        return None
    cov = sum((t - mean_t) * (q - mean_q) for t, q in samples)
    return cov / var_t * 3600.0


def eta_seconds(queued: int, rate: float | None) -> float | None:
    """Seconds until the queue is empty at `rate` (per hour); None unless it holds work and drains."""
    if rate is None or rate >= 0 or queued <= 0:
        return None
    return queued / -rate * 3600.0


def is_growing(values: Sequence[int], steps: int = GROWING_STEPS) -> bool:
    """True when the last `steps` changes never fell and the queue ended higher than it began."""
    if len(values) < steps + 1:
        return False
    tail = values[-(steps + 1) :]
    return all(b >= a for a, b in zip(tail, tail[1:])) and tail[-1] > tail[0]


def _float(value: float) -> float:
    try:
        return float(value)
    except (OverflowError, TypeError, ValueError):
        return math.nan


def sparkline(values: Sequence[float], width: int = 12) -> str:
    """The newest `width` values as block characters, scaled between their minimum and maximum.

    A value that is not a finite number (NaN, ±inf, an int too large for a float) is a blank: a bad
    sample must not take the chart, or the view drawing it, down.
    """
    shown = [_float(v) for v in list(values)[-width:]] if width > 0 else []
    finite = [v for v in shown if math.isfinite(v)]
    if not finite:
        return " " * len(shown)
    # Halved so that high - low cannot overflow to inf even for values near the float maximum.
    low, high = min(finite) / 2, max(finite) / 2
    top = len(_BLOCKS) - 1
    out = []
    for v in shown:
        if not math.isfinite(v):
            out.append(" ")
        elif high == low:
            out.append(_BLOCKS[0])
        else:
            out.append(_BLOCKS[max(0, min(top, round((v / 2 - low) / (high - low) * top)))])
    return "".join(out)


def changes(values: Sequence[int]) -> list[int]:
    """`values` with runs of the same value collapsed: a queue at rest keeps the same sparkline (and repaints nothing)."""
    out: list[int] = []
    for value in values:
        if not out or out[-1] != value:
            out.append(value)
    return out


def format_rate(rate: float | None) -> str:
    """A signed rate per hour for people, e.g. "+120/h", "-3.5/h"; "-" when unknown."""
    if rate is None:
        return "-"
    if abs(rate) < 0.05:
        return "0/h"
    text = f"{rate:+.0f}" if abs(rate) >= 10 else f"{rate:+.1f}"
    return f"{text}/h"


def format_eta(seconds: float | None) -> str:
    """A duration for people, e.g. "45s", "12m", "3h05m", "2d04h"; "-" when unknown."""
    if seconds is None:
        return "-"
    total = int(round(seconds))
    if total < 60:
        return f"{total}s"
    minutes, _ = divmod(total, 60)
    if minutes < 60:
        return f"{minutes}m"
    hours, minutes = divmod(minutes, 60)
    if hours < 48:
        return f"{hours}h{minutes:02d}m"
    days, hours = divmod(hours, 24)
    return f"{days}d{hours:02d}h"


class QueueHistory:
    """Queued counts per bucket across the polls of a session; kept by whoever polls repeatedly (TUI, poller).

    `record` adds the report's samples (once per poll time) and returns the report with each bucket's
    history, rate, ETA and growth filled in. A failed poll adds nothing; its stale buckets keep their trend.
    """

    def __init__(self, max_samples: int = MAX_SAMPLES, rate_window: float = RATE_WINDOW) -> None:
        self.max_samples = max_samples
        self.rate_window = rate_window
        self._samples: dict[str, deque[tuple[float, int]]] = {}

    def samples(self, bucket: str) -> tuple[tuple[float, int], ...]:
        """(unix seconds, queued) pairs of one bucket, oldest first."""
        return tuple(self._samples.get(bucket, ()))

    def record(self, report: BucketsReport) -> BucketsReport:
        if report.polled_at is not None:
            when = report.polled_at.timestamp()
            for bucket in report.buckets:
                series = self._samples.setdefault(bucket.name, deque(maxlen=self.max_samples))
                if not series or when > series[-1][0]:
                    series.append((when, bucket.queued))
            present = {b.name for b in report.buckets}
            if report.reachable:
                for gone in set(self._samples) - present:
                    del self._samples[gone]
        return replace(report, buckets=tuple(self._annotate(b) for b in report.buckets))

    def _annotate(self, bucket: BucketStatus) -> BucketStatus:
        series = tuple(self._samples.get(bucket.name, ()))
        if not series:
            return bucket
        newest = series[-1][0]
        recent = [s for s in series if newest - s[0] <= self.rate_window]
        rate = rate_per_hour(recent)
        values = tuple(q for _, q in series)
        growing = is_growing(values)
        if growing and (rate is None or rate <= 0):
            # A fall before the rise (early in a session, few samples) drags the window's slope below zero:
            # a queue marked growing is shown with the rate of its rise, never a negative one.
            rate = rate_per_hour(series[-(GROWING_STEPS + 1) :])
        return replace(
            bucket,
            history=values,
            rate_per_hour=rate,
            eta_seconds=eta_seconds(bucket.queued, rate),
            growing=growing,
        )
