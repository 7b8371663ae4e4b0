"""Terminal output is what an SSH link pays for: the buckets pane, polled every half second over data that
does not change, must write (next to) nothing once drawn. The real `dtmon` runs in a pseudo-terminal."""

from __future__ import annotations

import sys
import time

import pytest

from buckets_peers import buckets_server  # noqa: F401 - fixture
from ptyterm import PtyTerminal, visible


@pytest.mark.slow
def test_buckets_pane_at_rest_writes_next_to_nothing(buckets_server, tmp_path):
    for index, name in enumerate(("datatrail-replicator-kko-minoc", "datatrail-replica-heal", "datatrail-state-updater")):
        buckets_server.store.add(name, 3 + index)
    config = tmp_path / "c.toml"
    config.write_text(f'refresh = 0.5\ntimeout = 2.0\n[buckets]\nurl = "{buckets_server.url}"\n')
    with PtyTerminal([sys.executable, "-m", "dtmon", "--config", str(config)]) as term:
        drawn = 0
        deadline = time.monotonic() + 30
        while buckets_server.requests < 4 * 3 and time.monotonic() < deadline:  # three polls of 4 requests
            drawn += len(term.read_for(0.2))
        assert buckets_server.requests >= 12, "dtmon never polled the Buckets service"
        drawn += len(term.read_for(1.0))
        assert drawn > 2000, "the dashboard was never drawn"
        before = buckets_server.requests
        at_rest = term.read_for(5.0)
        polls = (buckets_server.requests - before) // 4
        assert polls >= 5, polls
        assert len(at_rest) < 2000, f"{len(at_rest)} bytes in 5 s over {polls} unchanged polls: {visible(at_rest)!r}"
