"""Pure logic of the buckets feature: globs, consumers, counts parsing, problem rule, trend, JSON and text."""

from __future__ import annotations

import json
from datetime import datetime, timedelta, timezone
from pathlib import Path

import pytest

from dtmon.collectors.buckets import consumer_for, link_consumers, parse_counts, select
from dtmon.config import ConfigError, load
from dtmon.model import (
    CRASHLOOP,
    DEGRADED,
    DOWN,
    MISSING,
    RUNNING,
    STOPPED,
    BucketsReport,
    BucketStatus,
    ServiceStatus,
    SiteStatus,
    Snapshot,
    StackStatus,
)
from dtmon.queue_trend import (
    QueueHistory,
    changes,
    eta_seconds,
    format_eta,
    format_rate,
    is_growing,
    rate_per_hour,
    sparkline,
)
from dtmon.report import render_text, snapshot_json

T0 = datetime(2026, 11, 25, 12, 0, tzinfo=timezone.utc)


def service(site: str, name: str, state: str) -> ServiceStatus:
    stack, _, short = name.partition("_")
    running = 1 if state == RUNNING else 0
    return ServiceStatus(site, stack, short, name, "replicated", running, 1, state, None, None, None, None, 0)


def site(name: str, *services: tuple[str, str], reachable: bool = True, polled: bool = True) -> SiteStatus:
    by_stack: dict[str, list[ServiceStatus]] = {}
    for swarm_name, state in services:
        by_stack.setdefault(swarm_name.partition("_")[0], []).append(service(name, swarm_name, state))
    stacks = tuple(StackStatus(stack, tuple(items)) for stack, items in by_stack.items())
    return SiteStatus(name, reachable, None if reachable else "dead", 1.0, T0 if polled else None, stacks=stacks)


def bucket(name: str, queued: int, consumer: str | None = "default", **counts: int) -> BucketStatus:
    consumer = consumer_for(name) if consumer == "default" else consumer
    return BucketStatus(name, queued, counts.get("running", 0), counts.get("success", 0), counts.get("failure", 0),
                        queued + sum(counts.values()), consumer=consumer)


def report(*buckets: BucketStatus, when: datetime = T0, reachable: bool = True) -> BucketsReport:
    return BucketsReport("http://buckets:8004", reachable, None if reachable else "down", 2.0, when, buckets)


# -- selection and consumers ---------------------------------------------------------------


def test_select_keeps_names_matching_any_glob_sorted_once():
    names = ["other", "datatrail-replica-heal", "datatrail-replicator-kko-minoc", "x-datatrail-y", "ab"]
    assert select(names, ["datatrail-*"]) == ["datatrail-replica-heal", "datatrail-replicator-kko-minoc"]
    assert select(names, ["datatrail-*", "*-heal", "a?"]) == ["ab", "datatrail-replica-heal",
                                                              "datatrail-replicator-kko-minoc"]
    assert select(names, []) == []
    assert select(names, ["DATATRAIL-*"]) == []  # bucket names are case-sensitive


@pytest.mark.parametrize(
    ("name", "expected"),
    [
        ("datatrail-replicator-kko-minoc", "kko/datatrail-client_replicator"),
        ("datatrail-replicator-chime-minoc", "chime/datatrail-client_replicator"),
        ("datatrail-replica-heal", "*/datatrail-client_*_healer"),
        ("datatrail-state-updater", "*/datatrail-daemons_state_updater"),
        ("datatrail-unregistered-datasets", "*/datatrail-client_reattempt_unregistered"),  # the operations page
        ("datatrail-deleter-kko", None),  # named in the workflow repo, consumer not documented
        ("datatrail-registration", None),
        ("datatrail-register-dataset", None),
        ("datatrail-deletion-notifications", None),
        ("datatrail-replicator-kko-minoc-extra", None),
    ],
)
def test_default_consumers_follow_datatrail_naming(name, expected):
    assert consumer_for(name) == expected


def test_overrides_win_over_defaults_in_file_order():
    overrides = {"datatrail-replicator-kko-*": "kko/custom_replicator", "datatrail-*": "chime/catch_all"}
    assert consumer_for("datatrail-replicator-kko-minoc", overrides) == "kko/custom_replicator"
    assert consumer_for("datatrail-replicator-gbo-minoc", overrides) == "chime/catch_all"
    assert consumer_for("elsewhere", overrides) is None


# -- counts ----------------------------------------------------------------------------------


def test_parse_counts_reads_the_api_shape():
    b = parse_counts("q", {"total": 10, "queued": 4, "running": 1, "success": 3, "failure": 2})
    assert (b.name, b.queued, b.running, b.success, b.failure, b.total) == ("q", 4, 1, 3, 2, 10)


def test_parse_counts_total_defaults_to_the_sum():
    assert parse_counts("q", {"queued": 4, "running": 1, "success": 3, "failure": 2}).total == 10


COUNTS = {"queued": 4, "running": 1, "success": 3, "failure": 2}


@pytest.mark.parametrize("data", [[1, 2], "x", None, {**COUNTS, "queued": "4"}, {**COUNTS, "queued": -1},
                                  {**COUNTS, "queued": True}, {**COUNTS, "queued": 1.5},
                                  {**COUNTS, "total": None, "running": {}}])
def test_parse_counts_refuses_other_shapes(data):
    with pytest.raises(ValueError):
        parse_counts("q", data)


@pytest.mark.parametrize(
    "data, says",
    [
        ({}, "missing 'queued', 'running', 'success', 'failure'"),
        ({"queued": 4, "running": 1, "success": 3}, "missing 'failure'"),
        ({"error": "no such pipeline"}, "the service answered an error: no such pipeline"),
    ],
)
def test_parse_counts_refuses_an_answer_without_the_counts(data, says):
    with pytest.raises(ValueError, match=says):
        parse_counts("q", data)


# -- the problem rule --------------------------------------------------------------------------


def test_queued_work_with_consumer_down_is_a_problem():
    sites = [site("kko", ("datatrail-client_replicator", DOWN))]
    linked = link_consumers(report(bucket("datatrail-replicator-kko-minoc", 5)), sites).buckets[0]
    assert linked.consumer_state == DOWN
    assert linked.consumers == (("kko/datatrail-client_replicator", DOWN),)
    assert linked.problem == "5 queued, consumer not running: kko/datatrail-client_replicator down"


@pytest.mark.parametrize("state", [DOWN, DEGRADED, STOPPED, MISSING])
def test_any_consumer_state_but_running_is_a_problem_when_work_waits(state):
    sites = [site("kko", ("datatrail-client_replicator", state))]
    assert link_consumers(report(bucket("datatrail-replicator-kko-minoc", 1)), sites).buckets[0].problem


def test_no_problem_when_consumer_runs_or_nothing_is_queued():
    running = [site("kko", ("datatrail-client_replicator", RUNNING))]
    down = [site("kko", ("datatrail-client_replicator", DOWN))]
    assert link_consumers(report(bucket("datatrail-replicator-kko-minoc", 7)), running).buckets[0].problem is None
    empty = link_consumers(report(bucket("datatrail-replicator-kko-minoc", 0, running=3)), down).buckets[0]
    assert empty.problem is None and empty.consumer_state == DOWN


def test_consumer_absent_from_a_watched_site_is_missing():
    sites = [site("kko", ("datatrail-client_healer", RUNNING))]
    linked = link_consumers(report(bucket("datatrail-replicator-kko-minoc", 2)), sites).buckets[0]
    assert linked.consumer_state == MISSING
    assert "kko/datatrail-client_replicator missing" in linked.problem


def test_consumer_on_an_unwatched_or_never_polled_site_is_unknown_not_a_problem():
    sites = [site("chime", ("datatrail-client_replicator", DOWN)), site("gbo", reachable=False, polled=False)]
    for name in ("datatrail-replicator-kko-minoc", "datatrail-replicator-gbo-minoc"):
        linked = link_consumers(report(bucket(name, 9)), sites).buckets[0]
        assert linked.consumer_state is None and linked.problem is None


def test_consumer_whose_stack_is_not_watched_at_its_site_is_unknown():
    core_only = [site("chime", ("datatrail_server", RUNNING))]
    linked = link_consumers(report(bucket("datatrail-replicator-chime-minoc", 3)), core_only).buckets[0]
    assert linked.consumer_state is None and linked.problem is None and linked.consumers == ()


def test_stale_site_data_still_judges_the_consumer():
    sites = [site("kko", ("datatrail-client_replicator", DOWN), reachable=False, polled=True)]
    assert link_consumers(report(bucket("datatrail-replicator-kko-minoc", 1)), sites).buckets[0].problem


def test_healers_at_every_site_consume_the_heal_bucket_and_the_worst_counts():
    sites = [
        site("chime", ("datatrail-client_replication_healer", RUNNING), ("datatrail-client_deletion_healer", RUNNING),
             ("datatrail-client_replicator", DOWN)),
        site("kko", ("datatrail-client_replication_healer", RUNNING), ("datatrail-client_deletion_healer", DEGRADED)),
    ]
    linked = link_consumers(report(bucket("datatrail-replica-heal", 3)), sites).buckets[0]
    assert dict(linked.consumers) == {
        "chime/datatrail-client_replication_healer": RUNNING,
        "chime/datatrail-client_deletion_healer": RUNNING,
        "kko/datatrail-client_replication_healer": RUNNING,
        "kko/datatrail-client_deletion_healer": DEGRADED,
    }
    assert linked.consumer_state == DEGRADED
    assert linked.problem == "3 queued, consumer not running: kko/datatrail-client_deletion_healer degraded"


def test_several_consumers_one_stopped_is_a_problem_naming_that_sites_consumer():
    # deletion_healer scaled to 0 at kko: the heal works tagged for kko wait, however well the rest run.
    sites = [
        site("chime", ("datatrail-client_replication_healer", RUNNING), ("datatrail-client_deletion_healer", RUNNING)),
        site("kko", ("datatrail-client_replication_healer", RUNNING), ("datatrail-client_deletion_healer", STOPPED)),
    ]
    linked = link_consumers(report(bucket("datatrail-replica-heal", 3)), sites).buckets[0]
    assert linked.consumer_state == STOPPED
    assert linked.problem == "3 queued, consumer not running: kko/datatrail-client_deletion_healer stopped"
    # A crash-looping consumer too, even when its replica happens to run; and nothing waiting, no problem.
    sites[0] = site("chime", ("datatrail-client_replication_healer", CRASHLOOP),
                    ("datatrail-client_deletion_healer", RUNNING))
    linked = link_consumers(report(bucket("datatrail-replica-heal", 3)), sites).buckets[0]
    assert linked.problem == ("3 queued, consumer not running: chime/datatrail-client_replication_healer crashloop, "
                              "kko/datatrail-client_deletion_healer stopped")
    assert link_consumers(report(bucket("datatrail-replica-heal", 0)), sites).buckets[0].problem is None


def test_a_bucket_with_work_and_no_known_consumer_says_to_map_it():
    linked = link_consumers(report(bucket("datatrail-registration", 4)), [site("chime")]).buckets[0]
    assert linked.consumer is None and linked.consumer_state is None
    assert linked.problem == "4 queued, consumer unknown: map it in [buckets.consumers]"
    empty = link_consumers(report(bucket("datatrail-registration", 0)), [site("chime")]).buckets[0]
    assert empty.problem is None  # nothing waits: nothing to say
    text = render_text(Snapshot(T0, (site("chime"),), buckets=report(linked)))
    assert "datatrail-registration!" in text and "unknown" in text


def test_snapshot_problems_include_bucket_problems_and_an_unreachable_source():
    sites = (site("kko", ("datatrail-client_replicator", DOWN)),)
    linked = link_consumers(report(bucket("datatrail-replicator-kko-minoc", 5)), sites)
    snap = Snapshot(T0, sites, buckets=linked)
    assert "bucket datatrail-replicator-kko-minoc: 5 queued, consumer not running: " \
           "kko/datatrail-client_replicator down" in snap.problems
    dead = BucketsReport("http://b:1", False, "http://b:1/status/pipelines: HTTP 500 Internal Server Error")
    snap = Snapshot(T0, (), buckets=dead)
    assert snap.problems == ["buckets: unreachable: http://b:1/status/pipelines: HTTP 500 Internal Server Error"]
    assert not snap.healthy
    assert Snapshot(T0, (), buckets=report(bucket("q", 0, None))).healthy


# -- trend ------------------------------------------------------------------------------------


def test_rate_is_the_least_squares_slope_per_hour():
    assert rate_per_hour([(0, 100), (1800, 50), (3600, 0)]) == pytest.approx(-100.0)
    assert rate_per_hour([(0, 0), (60, 1)]) == pytest.approx(60.0)
    assert rate_per_hour([(0, 10), (10, 20), (20, 10), (30, 20)]) == pytest.approx(0.2 * 3600)
    assert rate_per_hour([(0, 5)]) is None
    assert rate_per_hour([(5, 5), (5, 9)]) is None


def test_eta_only_while_draining_with_work_left():
    assert eta_seconds(100, -50.0) == pytest.approx(7200.0)
    assert eta_seconds(100, 10.0) is None
    assert eta_seconds(100, 0.0) is None
    assert eta_seconds(0, -50.0) is None
    assert eta_seconds(5, None) is None


def test_growing_means_rising_over_the_last_polls_without_falling():
    assert is_growing([1, 2, 3, 4])
    assert is_growing([9, 1, 1, 2, 2])
    assert not is_growing([1, 2, 3])  # too few polls
    assert not is_growing([1, 3, 2, 4])  # fell once
    assert not is_growing([4, 4, 4, 4])  # flat


def test_sparkline_scales_between_min_and_max_and_keeps_the_newest():
    assert sparkline([0, 7]) == "▁█"
    assert sparkline([10, 10, 10]) == "▁▁▁"
    assert sparkline(list(range(20)), width=8) == "▁▂▃▄▅▆▇█"
    assert sparkline([]) == ""


def test_changes_collapse_runs_so_a_queue_at_rest_keeps_its_sparkline():
    assert changes([3, 3, 5, 5, 5, 2, 3, 3]) == [3, 5, 2, 3]
    assert sparkline(changes([7] * 50)) == sparkline(changes([7] * 3)) == "▁"
    assert changes([]) == []


def test_formatting():
    assert format_rate(None) == "-"
    assert format_rate(-3.46) == "-3.5/h"
    assert format_rate(120.4) == "+120/h"
    assert format_rate(0.01) == "0/h"
    assert [format_eta(s) for s in (None, 45, 720, 3 * 3600 + 300, 50 * 3600)] == ["-", "45s", "12m", "3h05m", "2d02h"]


def test_history_tracks_each_bucket_across_polls():
    history = QueueHistory()
    out = None
    for minute, (a, b) in enumerate([(100, 1), (80, 2), (60, 3), (40, 4)]):
        out = history.record(report(bucket("a", a, None), bucket("b", b, None), when=T0 + timedelta(minutes=minute)))
    assert out is not None
    drain, grow = out.buckets
    assert drain.history == (100, 80, 60, 40)
    assert drain.rate_per_hour == pytest.approx(-1200.0)
    assert drain.eta_seconds == pytest.approx(40 / 1200 * 3600)
    assert not drain.growing
    assert grow.history == (1, 2, 3, 4) and grow.growing
    assert grow.rate_per_hour == pytest.approx(60.0) and grow.eta_seconds is None


def test_history_ignores_a_repeated_poll_time_and_a_failed_poll_adds_nothing():
    history = QueueHistory()
    history.record(report(bucket("a", 10, None), when=T0))
    history.record(report(bucket("a", 10, None), when=T0))
    stale = history.record(report(bucket("a", 10, None), when=T0, reachable=False))
    assert history.samples("a") == ((T0.timestamp(), 10),)
    assert stale.buckets[0].history == (10,)


def test_history_forgets_vanished_buckets_and_bounds_its_samples():
    history = QueueHistory(max_samples=3)
    for i in range(5):
        history.record(report(bucket("a", i, None), bucket("b", i, None), when=T0 + timedelta(seconds=i)))
    assert [q for _, q in history.samples("a")] == [2, 3, 4]
    history.record(report(bucket("a", 5, None), when=T0 + timedelta(seconds=9)))
    assert history.samples("b") == ()


def test_a_growing_queue_never_shows_a_negative_rate():
    # Early in a session: one big drop, then three rises. The window's slope is negative, yet the queue grows.
    history = QueueHistory()
    for minute, queued in enumerate([500, 10, 20, 30, 40]):
        out = history.record(report(bucket("a", queued, None), when=T0 + timedelta(minutes=minute)))
    (grow,) = out.buckets
    assert grow.growing
    assert grow.rate_per_hour == pytest.approx(600.0)  # the rise: +10 a minute
    assert grow.eta_seconds is None
    assert rate_per_hour([(i * 60.0, q) for i, q in enumerate([500, 10, 20, 30, 40])]) < 0  # what it showed


def test_rate_uses_only_the_recent_window():
    history = QueueHistory(rate_window=120)
    points = [(0, 0), (60, 1000), (600, 1000), (660, 990), (720, 980)]
    for seconds, queued in points:
        out = history.record(report(bucket("a", queued, None), when=T0 + timedelta(seconds=seconds)))
    assert out.buckets[0].rate_per_hour == pytest.approx(-600.0)


# -- output -------------------------------------------------------------------------------------


def test_status_json_has_buckets_with_the_contract_keys():
    sites = (site("kko", ("datatrail-client_replicator", DOWN)),)
    linked = link_consumers(report(bucket("datatrail-replicator-kko-minoc", 5, success=2)), sites)
    data = json.loads(json.dumps(snapshot_json(Snapshot(T0, sites, buckets=linked))))
    [entry] = data["buckets"]
    assert {k: entry[k] for k in ("name", "queued", "running", "success", "failure", "total", "consumer",
                                  "consumer_state")} == {
        "name": "datatrail-replicator-kko-minoc", "queued": 5, "running": 0, "success": 2, "failure": 0, "total": 7,
        "consumer": "kko/datatrail-client_replicator", "consumer_state": "down"}
    assert entry["consumers"] == [{"service": "kko/datatrail-client_replicator", "state": "down"}]
    assert entry["problem"].startswith("5 queued")
    assert data["buckets_source"] == {"url": "http://buckets:8004", "reachable": True, "error": None,
                                      "latency_ms": 2.0, "polled_at": "2026-11-25T12:00:00Z"}
    assert any(p.startswith("bucket datatrail-replicator-kko-minoc") for p in data["problems"])


def test_status_json_without_buckets_configured():
    data = snapshot_json(Snapshot(T0, ()))
    assert data["buckets"] == [] and data["buckets_source"] is None


def test_status_text_shows_a_buckets_table_and_a_dead_source():
    linked = link_consumers(report(bucket("datatrail-replicator-kko-minoc", 5)),
                            (site("kko", ("datatrail-client_replicator", DOWN)),))
    text = render_text(Snapshot(T0, (), buckets=linked))
    row = next(line for line in text.splitlines() if "datatrail-replicator-kko-minoc!" in line)
    assert row.split()[1:6] == ["5", "0", "0", "0", "5"]
    assert "kko/datatrail-client_replicator" in row and row.rstrip().endswith("down")
    dead = render_text(Snapshot(T0, (), buckets=BucketsReport("http://b:1", False, "http://b:1: timed out after 2s")))
    assert "buckets http://b:1: UNREACHABLE (http://b:1: timed out after 2s)" in dead


def test_config_refuses_a_consumer_that_is_not_site_slash_service(tmp_path: Path):
    path = tmp_path / "c.toml"
    path.write_text('[buckets]\nurl = "http://b:8004"\n[buckets.consumers]\n"datatrail-x" = "replicator"\n')
    with pytest.raises(ConfigError, match=r'buckets\.consumers\."datatrail-x": expected "site/stack_service"'):
        load(path)
    path.write_text('[buckets]\nurl = "http://b:8004"\n[buckets.consumers]\n"datatrail-x" = "kko/datatrail-client_x"\n')
    assert load(path).buckets.consumers == {"datatrail-x": "kko/datatrail-client_x"}


def test_buckets_collector_trend_and_server_import_no_textual():
    # (rich may load: httpx imports it for its own command line when it is installed)
    import subprocess
    import sys

    code = ("import sys, dtmon.collectors.buckets, dtmon.queue_trend, dtmon.demo.buckets_server, dtmon.report; "
            "print(sorted(m for m in sys.modules if m.split('.')[0] == 'textual'))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "[]"


def test_status_text_shows_rate_and_eta_only_when_known():
    one_poll = report(bucket("q", 4, None))
    header = next(line for line in render_text(Snapshot(T0, (), buckets=one_poll)).splitlines() if "BUCKET" in line)
    assert header.split() == ["BUCKET", "QUEUED", "RUNNING", "SUCCESS", "FAILURE", "TOTAL", "CONSUMER", "STATE"]
    trend = report(BucketStatus("q", 4, 0, 0, 0, 4, rate_per_hour=-30.0, eta_seconds=480.0))
    text = render_text(Snapshot(T0, (), buckets=trend))
    row = next(line for line in text.splitlines() if line.strip().startswith("q "))
    assert row.split()[6:8] == ["-30/h", "8m"]


def test_a_buckets_poll_that_raises_is_a_failed_report_not_a_timeout(tmp_path: Path, monkeypatch):
    from dtmon.collectors import buckets

    def broken(self):
        raise RuntimeError("boom")

    monkeypatch.setattr(buckets.BucketsCollector, "poll_blocking", broken)
    path = tmp_path / "config.toml"
    path.write_text('timeout = 3\n[buckets]\nurl = "http://127.0.0.1:9"\n')
    report = buckets.start_poll(load(path))(3.0)
    assert not report.reachable
    assert report.error == "http://127.0.0.1:9: poll failed: RuntimeError: boom"


def test_a_detail_answer_without_counts_fails_the_poll_naming_the_bucket_and_the_key():
    import httpx

    from dtmon.collectors.buckets import BucketsCollector
    from dtmon.config import BucketsConfig

    def answer(request: httpx.Request) -> httpx.Response:
        if request.url.path == "/status/pipelines":
            return httpx.Response(200, json=["datatrail-replica-heal", "datatrail-state-updater"])
        if request.url.path.endswith("/datatrail-state-updater"):
            return httpx.Response(200, json={"queued": 1, "running": 0, "success": 0})
        return httpx.Response(200, json={**COUNTS, "total": 10})

    collector = BucketsCollector(BucketsConfig("http://b:8004"), 3.0, transport=httpx.MockTransport(answer))
    report = collector.poll_blocking()
    assert not report.reachable
    assert report.error.startswith("http://b:8004/status/details/datatrail-state-updater: malformed answer: missing 'failure'")


@pytest.mark.parametrize(
    "hanging, says",
    [
        ({"/status/pipelines"}, "http://b:8004/status/pipelines: timed out after 0.5s"),
        ({"/status/details/datatrail-a"}, "http://b:8004/status/details/datatrail-a: timed out after 0.5s"),
        ({"/status/details/datatrail-a", "/status/details/datatrail-b"},
         "http://b:8004/status/details (2 requests): timed out after 0.5s"),
    ],
)
def test_a_poll_timeout_names_the_requests_still_unanswered(hanging, says):
    import asyncio

    import httpx

    from dtmon.collectors.buckets import BucketsCollector
    from dtmon.config import BucketsConfig

    async def answer(request: httpx.Request) -> httpx.Response:
        if request.url.path in hanging:
            await asyncio.sleep(30)
        if request.url.path == "/status/pipelines":
            return httpx.Response(200, json=["datatrail-a", "datatrail-b", "datatrail-c"])
        return httpx.Response(200, json=COUNTS)

    collector = BucketsCollector(BucketsConfig("http://b:8004"), 0.5, transport=httpx.MockTransport(answer))
    assert collector.poll_blocking().error == says
