"""Wall-time budgets for `dtmon` subprocesses that hold on a busy machine.

`dtmon status` must answer within its timeout plus a little. Measured from outside, that includes starting
Python and importing dtmon, which on a loaded machine (parallel test workers, other people's engines) can
take seconds by itself. `beyond_startup(elapsed)` takes off what such a start costs right now, measured
rather than assumed, so a budget still checks dtmon's own waiting: a retry or a second timeout still fails it.
"""

from __future__ import annotations

import subprocess
import sys
import time

#: What a `dtmon status` run imports before it polls anything (docker-py and httpx on first use).
STARTUP = [sys.executable, "-c", "import dtmon.cli, dtmon.collectors.poll, dtmon.collectors.swarm, dtmon.report, docker, httpx"]


def startup_seconds() -> float:
    """Wall time, now, of starting the interpreter and importing what `dtmon status` imports."""
    started = time.monotonic()
    subprocess.run(STARTUP, capture_output=True, timeout=120, check=True)
    return time.monotonic() - started


def beyond_startup(elapsed: float, samples: int = 2) -> float:
    """A subprocess's wall time `elapsed` less what starting one costs at this moment: the slower of `samples`
    starts, since one sample taken in a quiet moment of a loaded machine under-measures the start the run
    itself paid (4 workers on 2 cores), and a retry or a second timeout still costs a whole timeout more."""
    return elapsed - max(startup_seconds() for _ in range(samples))
