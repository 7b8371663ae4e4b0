"""The buckets collector against a Buckets-compatible server over loopback HTTP, fed by the official
`workflow-core` client; fault modes (500, garbage, slow, refused); `dtmon status --json` end to end."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import time
from datetime import timedelta
from pathlib import Path

import pytest
from budget import beyond_startup
from buckets_peers import buckets_server, workflow  # noqa: F401 - fixtures

from dtmon.collectors.buckets import BucketsCollector, select
from dtmon.config import BucketsConfig
from dtmon.queue_trend import QueueHistory

KKO = "datatrail-replicator-kko-minoc"
HEAL = "datatrail-replica-heal"
OTHER = "frb-l2l3-pipeline"


def counts(bucket) -> dict[str, int]:
    return {k: getattr(bucket, k) for k in ("total", "queued", "running", "success", "failure")}


def status_json(config: Path, timeout: float = 30) -> tuple[int, dict, float]:
    started = time.monotonic()
    result = subprocess.run(
        [sys.executable, "-m", "dtmon", "status", "--json", "--config", str(config)],
        capture_output=True, text=True, timeout=timeout, env={**os.environ, "NO_PROXY": "*"},
    )
    elapsed = time.monotonic() - started
    assert result.returncode in (0, 1), result.stderr
    return result.returncode, json.loads(result.stdout), elapsed


def buckets_only_config(tmp_path: Path, url: str, timeout: float = 2.0, extra: str = "") -> Path:
    path = tmp_path / "buckets.toml"
    path.write_text(f'timeout = {timeout}\n[buckets]\nurl = "{url}"\ninclude = ["datatrail-*"]\n{extra}')
    return path


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


async def test_counts_match_what_the_official_client_deposited_and_withdrew(buckets_server, workflow):
    url = buckets_server.url
    assert len(workflow.deposit(url, KKO, 6, site="kko")) == 6
    assert len(workflow.withdraw(url, KKO, 2, finish="success")) == 2
    assert len(workflow.withdraw(url, KKO, 1, finish="failure")) == 1
    assert len(workflow.withdraw(url, KKO, 1, finish="running")) == 1
    workflow.deposit(url, HEAL, 3)
    workflow.deposit(url, OTHER, 2)

    report = await BucketsCollector(BucketsConfig(url), 5.0).poll()

    assert report.reachable and report.error is None
    official_names = workflow.pipelines(url)
    assert sorted(official_names) == sorted([KKO, HEAL, OTHER])
    assert [b.name for b in report.buckets] == select(official_names, ["datatrail-*"]) == [HEAL, KKO]
    for bucket in report.buckets:
        assert counts(bucket) == workflow.status(url, bucket.name)
    kko = next(b for b in report.buckets if b.name == KKO)
    assert counts(kko) == {"total": 6, "queued": 2, "running": 1, "success": 2, "failure": 1}
    assert kko.consumer == "kko/datatrail-client_replicator"

    # The official client's removal (a view, then a delete by ids) empties the queue.
    assert workflow.delete(url, KKO, status="queued") is True
    kko = next(b for b in (await BucketsCollector(BucketsConfig(url), 5.0).poll()).buckets if b.name == KKO)
    assert counts(kko) == workflow.status(url, KKO) == {"total": 4, "queued": 0, "running": 1, "success": 2,
                                                         "failure": 1}


async def test_trend_follows_the_official_client_filling_then_draining(buckets_server, workflow):
    url = buckets_server.url
    collector = BucketsCollector(BucketsConfig(url), 5.0)
    history = QueueHistory()
    seen = []
    for step in ("deposit", "deposit", "deposit", "deposit", "withdraw", "withdraw"):
        if step == "deposit":
            workflow.deposit(url, KKO, 2)
        else:
            workflow.withdraw(url, KKO, 4)
        report = history.record(await collector.poll())
        seen.append(report.buckets[0])
    assert [b.queued for b in seen] == [2, 4, 6, 8, 4, 0]
    assert seen[-1].history == (2, 4, 6, 8, 4, 0)
    assert not seen[2].growing  # three polls are not yet "keeps growing"
    assert seen[3].growing and seen[3].rate_per_hour > 0 and seen[3].eta_seconds is None
    assert not seen[-1].growing and seen[-1].eta_seconds is None  # empty: nothing left to drain
    assert seen[-2].rate_per_hour < seen[3].rate_per_hour


async def test_faults_make_the_source_unreachable_with_an_error_naming_the_url(buckets_server):
    url = buckets_server.url
    buckets_server.store.add(KKO, 4)
    collector = BucketsCollector(BucketsConfig(url), 1.0)
    good = await collector.poll()
    assert good.reachable and good.buckets[0].queued == 4

    expected = {
        "500": f"{url}/status/pipelines: HTTP 500 Internal Server Error",
        "garbage": f"{url}/status/pipelines: malformed answer: not JSON",
        "slow": f"{url}/status/pipelines: timed out after 1s",
    }
    for fault, error in expected.items():
        buckets_server.fault = fault
        started = time.monotonic()
        report = await collector.poll()
        elapsed = time.monotonic() - started
        assert not report.reachable, fault
        assert report.error.startswith(error), (fault, report.error)
        assert elapsed < 1.0 + 0.5, (fault, elapsed)
        # The last good data stays, with the time it was collected.
        assert report.buckets == good.buckets and report.polled_at == good.polled_at
    buckets_server.fault = None
    assert (await collector.poll()).reachable


async def test_malformed_details_are_reported(buckets_server):
    buckets_server.store.add(KKO, 1)
    original = buckets_server.store.details
    buckets_server.store.details = lambda name=None: ["not", "counts"]  # type: ignore[method-assign]
    try:
        report = await BucketsCollector(BucketsConfig(buckets_server.url), 2.0).poll()
    finally:
        buckets_server.store.details = original  # type: ignore[method-assign]
    assert not report.reachable
    assert report.error == (f"{buckets_server.url}/status/details/{KKO}: malformed answer: "
                            "expected a JSON object of counts, got list")


async def test_connection_refused():
    url = f"http://127.0.0.1:{free_port()}"
    report = await BucketsCollector(BucketsConfig(url), 2.0).poll()
    assert not report.reachable and report.buckets == ()
    assert report.error.startswith(f"{url}/status/pipelines: cannot connect")


def test_status_json_reports_the_official_clients_counts(buckets_server, workflow, tmp_path):
    url = buckets_server.url
    workflow.deposit(url, KKO, 5, site="kko")
    workflow.withdraw(url, KKO, 2)
    workflow.deposit(url, HEAL, 1)
    workflow.deposit(url, OTHER, 1)
    code, data, _ = status_json(buckets_only_config(tmp_path, url))
    assert code == 0, data["problems"]  # no site is watched: consumers are unknown, nothing to flag
    assert [b["name"] for b in data["buckets"]] == [HEAL, KKO]
    for entry in data["buckets"]:
        official = workflow.status(url, entry["name"])
        assert {k: entry[k] for k in official} == official
        assert entry["consumer_state"] is None and entry["problem"] is None
    assert data["buckets_source"]["reachable"] is True and data["buckets_source"]["url"] == url


@pytest.mark.parametrize("fault", ["500", "garbage", "slow"])
def test_status_json_reports_a_failing_source_as_a_problem_in_time(buckets_server, tmp_path, fault):
    buckets_server.store.add(KKO, 2)
    buckets_server.fault = fault
    timeout = 1.5
    code, data, elapsed = status_json(buckets_only_config(tmp_path, buckets_server.url, timeout=timeout))
    assert code == 1
    assert data["buckets_source"]["reachable"] is False
    assert buckets_server.url in data["buckets_source"]["error"]
    assert data["problems"] == [f"buckets: unreachable: {data['buckets_source']['error']}"]
    assert beyond_startup(elapsed) < timeout + 1.0, elapsed


def test_status_text_shows_the_buckets_table(buckets_server, workflow, tmp_path):
    workflow.deposit(buckets_server.url, KKO, 3, site="kko")
    config = buckets_only_config(tmp_path, buckets_server.url)
    result = subprocess.run([sys.executable, "-m", "dtmon", "status", "--config", str(config)],
                            capture_output=True, text=True, timeout=30)
    assert result.returncode == 0, result.stdout + result.stderr
    row = next(line for line in result.stdout.splitlines() if line.strip().startswith(KKO))
    assert row.split()[:6] == [KKO, "3", "0", "0", "0", "3"]
    assert "kko/datatrail-client_replicator" in row


def test_history_rate_uses_poll_times(buckets_server):
    """Poll times come from the collector's clock: two polls a known interval apart give that rate."""
    buckets_server.store.add(KKO, 10)
    collector = BucketsCollector(BucketsConfig(buckets_server.url), 2.0)
    history = QueueHistory()
    first = collector.poll_blocking()
    history.record(first)
    buckets_server.store.move(KKO, 4, "queued", "success")
    second = collector.poll_blocking()
    later = second.__class__(**{**second.__dict__, "polled_at": first.polled_at + timedelta(minutes=6)})
    bucket = history.record(later).buckets[0]
    assert bucket.history == (10, 6)
    assert bucket.rate_per_hour == pytest.approx(-40.0)
    assert bucket.eta_seconds == pytest.approx(6 / 40 * 3600)
