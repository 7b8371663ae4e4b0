"""The Prometheus collector and `dtmon status` against a real Prometheus (Debian's) on loopback.

The server holds 26 h of backfilled history and scrapes a live exporter of the same functions
(tests/promserver.py). Counters rise linearly and every sample lies on the line, so
`increase(x[24h])` is exactly slope * 86400; pending gauges fall on a ramp that ends an hour
before the start, so the instant value is the ramp's end and every point of the range query is
known. Expected numbers are computed from these functions, and compared with direct HTTP queries
to the same server.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from dataclasses import replace
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).parent))

from promserver import PromServer, Series, closed_port_url, free_port, missing_requirements, silent_server  # noqa: E402

from dtmon.collectors.poll import snapshot  # noqa: E402
from dtmon.collectors.prometheus import HISTORY_STEPS, PUSH_MAX_AGE, PrometheusCollector, history_grid  # noqa: E402
from dtmon.config import DEFAULT_QUERIES, Config, PrometheusConfig, load  # noqa: E402
from dtmon.report import render_text  # noqa: E402

pytestmark = pytest.mark.engine

DAY = 86400
GRID = 30  # seconds between backfilled samples

#: counters: (metric, labels) -> files per second (exact binary fractions: values stay exact).
DEFAULT_COUNTERS = {
    ("datatrail_replication_completed_files_total", ("chime", "a")): 1.5,
    ("datatrail_replication_completed_files_total", ("chime", "b")): 0.5,
    ("datatrail_replication_completed_files_total", ("kko", "a")): 1.0,
    ("datatrail_replication_completed_files_total", ("gbo", "a")): 0.25,
    ("datatrail_replication_failed_files_total", ("chime", "a")): 0.125,
    ("datatrail_replication_failed_files_total", ("kko", "a")): 0.25,
    ("datatrail_replication_failed_files_total", ("gbo", "a")): 0.0,
    ("datatrail_deletion_completed_files_total", ("chime", "a")): 0.75,
    ("datatrail_deletion_completed_files_total", ("kko", "a")): 0.25,
    ("datatrail_deletion_failed_files_total", ("chime", "a")): 0.125,
    ("datatrail_deletion_failed_files_total", ("kko", "a")): 0.0,
}
#: pending gauges: (metric, site) -> (value at the end of the ramp, fall per second before it).
DEFAULT_PENDING = {
    ("datatrail_replication_pending_files", "chime"): (43200.0, 0.5),
    ("datatrail_replication_pending_files", "kko"): (0.0, 1.0),
    ("datatrail_replication_pending_files", "gbo"): (1800.0, 0.25),
    ("datatrail_deletion_pending_files", "chime"): (900.0, 0.125),
    ("datatrail_deletion_pending_files", "kko"): (3600.0, 0.0),
}
#: Other names, other sites, another label for the kind: only overridden queries find these.
OTHER_COUNTERS = {
    ("dt_files_moved_total", ("chime", "replication")): 3.0,
    ("dt_files_moved_total", ("hco", "replication")): 0.5,
    ("dt_files_moved_total", ("hco", "deletion")): 2.0,
    ("dt_files_lost_total", ("chime", "replication")): 0.5,
    ("dt_files_lost_total", ("hco", "replication")): 0.0,
    ("dt_files_lost_total", ("hco", "deletion")): 0.125,
}
OTHER_PENDING = {
    ("dt_files_waiting", ("chime", "replication")): (7200.0, 2.0),
    ("dt_files_waiting", ("hco", "replication")): (100.0, 0.0),
    ("dt_files_waiting", ("hco", "deletion")): (0.0, 0.5),
}
OTHER_QUERIES = {
    "replication_pending": 'sum by (site) (dt_files_waiting{op="replication"})',
    "replication_done": 'sum by (site) (increase(dt_files_moved_total{op="replication"}[$window]))',
    "replication_failed": 'sum by (site) (increase(dt_files_lost_total{op="replication"}[$window]))',
    "deletion_pending": 'sum by (site) (dt_files_waiting{op="deletion"})',
    "deletion_done": 'sum by (site) (increase(dt_files_moved_total{op="deletion"}[$window]))',
    "deletion_failed": 'sum by (site) (increase(dt_files_lost_total{op="deletion"}[$window]))',
    "targets_up": 'up{job="datatrail"}',
    "push_age": 'time() - push_time_seconds{job="metric_pusher",instance="chime"}',
    "pg_up": 'pg_up{instance="chime-postgres"}',
}


class World:
    """The functions behind every series, and the answers they imply."""

    def __init__(self, start: int) -> None:
        # The ramps end on the sample grid an hour before the start: afterwards pending is constant.
        self.ramp_end = (start - 3600) // GRID * GRID

    def pending_at(self, end: float, fall: float, t: int) -> float:
        return end + fall * max(0, self.ramp_end - t)

    def series(self) -> list[Series]:
        out = []
        for (name, (site, pod)), slope in DEFAULT_COUNTERS.items():
            out.append(Series(name, {"site": site, "pod": pod}, "counter", lambda t, k=slope: 1_000_000 + k * t))
        for (name, site), (end, fall) in DEFAULT_PENDING.items():
            out.append(Series(name, {"site": site}, "gauge", lambda t, e=end, f=fall: self.pending_at(e, f, t)))
        for (name, (site, op)), slope in OTHER_COUNTERS.items():
            out.append(Series(name, {"site": site, "op": op}, "counter", lambda t, k=slope: 5_000_000 + k * t))
        for (name, (site, op)), (end, fall) in OTHER_PENDING.items():
            out.append(Series(name, {"site": site, "op": op}, "gauge", lambda t, e=end, f=fall: self.pending_at(e, f, t)))
        # metric_pusher's pushes: chime's at every whole minute, kko's an hour late. Postgres: chime up, kko down.
        push = {"job": "metric_pusher"}
        out.append(Series("push_time_seconds", {**push, "instance": "chime"}, "gauge", lambda t: t - t % 60, False))
        out.append(
            Series("push_time_seconds", {**push, "instance": "kko"}, "gauge", lambda t: t - t % 60 - 3600, False)
        )
        out.append(Series("pg_up", {"instance": "chime-postgres"}, "gauge", lambda t: 1.0, False))
        out.append(Series("pg_up", {"instance": "kko-postgres"}, "gauge", lambda t: 0.0, False))
        return out

    def expected(self, counters: dict, pending: dict, kind_of) -> dict[tuple[str, str], dict[str, float | None]]:
        """(site, kind) -> pending, done, failed as the queries must find them over a 24 h window."""
        rows: dict[tuple[str, str], dict[str, float | None]] = {}
        for (name, labels), slope in counters.items():
            site, kind, part = kind_of(name, labels)
            row = rows.setdefault((site, kind), {"pending": None, "done": None, "failed": None})
            row[part] = (row[part] or 0.0) + slope * DAY
        for (name, labels), (end, _) in pending.items():
            site, kind, _ = kind_of(name, labels)
            row = rows.setdefault((site, kind), {"pending": None, "done": None, "failed": None})
            row["pending"] = (row["pending"] or 0.0) + end
        return rows


def default_kind(name: str, labels) -> tuple[str, str, str]:
    site = labels[0] if isinstance(labels, tuple) else labels
    kind = "replication" if "_replication_" in name else "deletion"
    part = "done" if "_completed_" in name else "failed" if "_failed_" in name else "pending"
    return site, kind, part


def other_kind(name: str, labels) -> tuple[str, str, str]:
    site, op = labels
    part = {"dt_files_moved_total": "done", "dt_files_lost_total": "failed", "dt_files_waiting": "pending"}[name]
    return site, op, part


@pytest.fixture(scope="module")
def prom(tmp_path_factory: pytest.TempPathFactory):
    reason = missing_requirements()
    if reason:
        if os.environ.get("CI") == "true":
            pytest.fail(reason)
        pytest.skip(reason)
    start = int(time.time())
    world = World(start)
    dead_target = f"127.0.0.1:{free_port()}"
    server = PromServer(world.series(), tmp_path_factory.mktemp("prom"), extra_targets=[dead_target])
    server.start()
    server.world = world  # type: ignore[attr-defined]
    server.dead_target = dead_target  # type: ignore[attr-defined]
    try:
        yield server
    finally:
        server.stop()
        assert server.process is None


def prom_config(url: str, queries: dict[str, str] | None = None, window: str = "24h") -> PrometheusConfig:
    return PrometheusConfig(url, window, {**DEFAULT_QUERIES, **(queries or {})})


def value_of(result: list[dict]) -> float:
    assert len(result) == 1, result
    return float(result[0]["value"][1])


def check_rows(report, expected: dict, prom: PromServer) -> None:
    """Every (site, kind) with exactly the expected numbers and what they imply."""
    got = {(p.site, p.kind): p for p in report.progress}
    assert set(got) == set(expected)
    for key, want in expected.items():
        p = got[key]
        assert p.pending == want["pending"], key
        for part in ("done", "failed"):
            if want[part] is None:
                assert getattr(p, part) is None, (key, part)
            else:
                assert getattr(p, part) == pytest.approx(want[part], rel=1e-12, abs=1e-9), (key, part)
        done, pending = p.done, p.pending
        assert p.rate_per_hour == done / 24
        if done + pending > 0:
            assert p.percent == done / (done + pending) * 100
        else:
            assert p.percent is None
        if pending == 0:
            assert p.eta_seconds == 0
        elif done > 0:
            assert p.eta_seconds == pytest.approx(pending / (done / 24) * 3600, rel=1e-12)
        else:
            assert p.eta_seconds is None


def test_default_queries_give_exact_progress(prom: PromServer) -> None:
    collector = PrometheusCollector(prom_config(prom.url), timeout=10, site_order=("kko", "chime"))
    report = collector.poll()
    assert report.reachable, report.error
    assert report.query_errors == ()
    expected = prom.world.expected(DEFAULT_COUNTERS, DEFAULT_PENDING, default_kind)
    check_rows(report, expected, prom)
    # The configured sites first in their order, the rest by name; replication before deletion.
    assert [p.key for p in report.progress] == [
        "kko/replication", "kko/deletion", "chime/replication", "chime/deletion", "gbo/replication"
    ]
    # Exactly what Prometheus answers to the same queries at the same instant, over plain HTTP.
    at = round(report.polled_at.timestamp(), 3)
    for p in report.progress:
        for part in ("pending", "done", "failed"):
            query = DEFAULT_QUERIES[f"{p.kind}_{part}"].replace("$window", "24h")
            direct = {r["metric"]["site"]: float(r["value"][1]) for r in prom.query(query, at)}
            # A scrape landing between the two could shift an increase() by a rounding error, no more.
            assert getattr(p, part) == pytest.approx(direct[p.site], rel=1e-12, abs=1e-9), (p.key, part)
            if part == "pending":
                assert p.pending == direct[p.site]
    collector.close()


def test_pending_history_is_the_range_query_over_the_window(prom: PromServer) -> None:
    collector = PrometheusCollector(prom_config(prom.url), timeout=10)
    report = collector.poll()
    start, end, step = history_grid(report.polled_at.timestamp(), DAY)
    points = [start + i * step for i in range(HISTORY_STEPS)]
    assert end == points[-1] and end % step == 0 and report.polled_at.timestamp() - end < step
    world = prom.world
    for p in report.progress:
        final, fall = DEFAULT_PENDING[(f"datatrail_{p.kind}_pending_files", p.site)]
        # Each point holds the last sample at or before it: a backfilled one on the grid, or (after
        # the ramp) any later sample, all of which hold the ramp's final value. Then the pending now.
        want = tuple(world.pending_at(final, fall, prom.grid(int(t))) for t in points) + (p.pending,)
        assert p.pending_history == want, p.key
    chime = next(p for p in report.progress if p.key == "chime/replication")
    assert chime.pending_history[0] > chime.pending_history[-1]  # the ramp shows
    direct = prom.api("/api/v1/query_range", {
        "query": DEFAULT_QUERIES["replication_pending"], "start": start, "end": end, "step": f"{step:g}",
    })["result"]
    by_site = {r["metric"]["site"]: tuple(float(v) for _, v in r["values"]) for r in direct}
    for p in report.progress:
        if p.kind == "replication":
            assert p.pending_history[:-1] == by_site[p.site]


def test_the_pending_history_grid_stays_put_between_steps() -> None:
    """Two polls within one step ask for the same points, so an unchanged series draws the same sparkline."""
    step = DAY / HISTORY_STEPS
    base = 1_795_651_200.0  # a multiple of the step
    assert history_grid(base + 1, DAY) == history_grid(base + step - 1, DAY) == (base - DAY + step, base, step)
    assert history_grid(base + step, DAY)[1] == base + step


def test_feeds_flag_a_dead_target_a_late_push_and_postgres_down(prom: PromServer) -> None:
    report = PrometheusCollector(prom_config(prom.url), timeout=10).poll()
    at = round(report.polled_at.timestamp(), 3)
    feeds = {(f.name, dict(f.labels).get("instance")): f for f in report.feeds}
    assert set(feeds) == {
        ("targets_up", prom.exporter.address), ("targets_up", prom.dead_target),
        ("push_age", "chime"), ("push_age", "kko"), ("pg_up", "chime-postgres"), ("pg_up", "kko-postgres"),
    }
    assert feeds[("targets_up", prom.exporter.address)].ok
    dead = feeds[("targets_up", prom.dead_target)]
    assert not dead.ok and dead.value == 0 and "down" in dead.detail
    for instance, late in (("chime", False), ("kko", True)):
        push = feeds[("push_age", instance)]
        pushed_at = value_of(prom.query(f'push_time_seconds{{instance="{instance}"}}', at))
        assert push.value == pytest.approx(at - pushed_at, abs=1e-3)
        assert push.ok is (not late)
        assert (push.value > PUSH_MAX_AGE) is late
    assert feeds[("pg_up", "chime-postgres")].ok
    assert not feeds[("pg_up", "kko-postgres")].ok
    problems = report.problems()
    assert len(problems) == 3, problems
    assert any(prom.dead_target in p and "down" in p for p in problems)
    assert any("instance=kko" in p and "older than 15m" in p for p in problems)
    assert any("kko-postgres" in p for p in problems)
    # The limit is the config's: at two hours kko's push is fine.
    relaxed = replace(prom_config(prom.url), max_push_age=7200.0)
    pushes = [f for f in PrometheusCollector(relaxed, timeout=10).poll().feeds if f.name == "push_age"]
    assert len(pushes) == 2 and all(f.ok for f in pushes)


def test_overridden_queries_in_the_config_drive_status_json(prom: PromServer, tmp_path: Path) -> None:
    lines = ["timeout = 10.0", "[prometheus]", f'url = "{prom.url}"', 'window = "24h"', "[prometheus.queries]"]
    lines += [f"{name} = {json.dumps(query)}" for name, query in OTHER_QUERIES.items()]
    path = tmp_path / "config.toml"
    path.write_text("\n".join(lines) + "\n")
    config = load(path)
    assert config.prometheus.queries["replication_done"] == OTHER_QUERIES["replication_done"]
    run = subprocess.run(
        [sys.executable, "-m", "dtmon", "--config", str(path), "status", "--json"],
        capture_output=True, text=True, timeout=60,
    )
    assert run.returncode == 0, run.stdout + run.stderr
    out = json.loads(run.stdout)
    assert out["problems"] == []
    assert out["prometheus"]["reachable"] and out["prometheus"]["errors"] == []
    assert [f["ok"] for f in out["prometheus"]["feeds"]] == [True, True, True]
    expected = prom.world.expected(OTHER_COUNTERS, OTHER_PENDING, other_kind)
    rows = {(r["site"], r["kind"]): r for r in out["progress"]}
    assert set(rows) == set(expected) == {("chime", "replication"), ("hco", "replication"), ("hco", "deletion")}
    for key, want in expected.items():
        row = rows[key]
        assert set(row) == {"site", "kind", "pending", "done", "failed", "percent", "rate_per_hour", "eta_seconds"}
        assert row["pending"] == want["pending"]
        assert row["done"] == pytest.approx(want["done"], rel=1e-12)
        assert row["failed"] == pytest.approx(want["failed"], rel=1e-12, abs=1e-9)
        assert row["rate_per_hour"] == pytest.approx(want["done"] / 24, rel=1e-12)
        total = want["done"] + want["pending"]
        assert row["percent"] == pytest.approx(want["done"] / total * 100, rel=1e-12)
        if want["pending"]:
            assert row["eta_seconds"] == pytest.approx(want["pending"] / (want["done"] / 24) * 3600, rel=1e-12)
        else:
            assert row["eta_seconds"] == 0
    # The same numbers straight from Prometheus.
    direct = {r["metric"]["site"]: float(r["value"][1])
              for r in prom.query(OTHER_QUERIES["deletion_done"].replace("$window", "24h"))}
    assert rows[("hco", "deletion")]["done"] == pytest.approx(direct["hco"], rel=1e-12)
    # And for people.
    text = subprocess.run(
        [sys.executable, "-m", "dtmon", "--config", str(path), "status"], capture_output=True, text=True, timeout=60
    ).stdout
    assert "SITE" in text and "RATE" in text and "feeds: 3 ok" in text and "all healthy" in text
    hco_deletion = next(line for line in text.splitlines() if line.split()[:2] == ["hco", "deletion"])
    assert "172,800" in hco_deletion and "100.0%" in hco_deletion and "done" in hco_deletion


def test_a_query_with_a_syntax_error_is_reported_and_the_rest_is_complete(prom: PromServer) -> None:
    broken = "sum by (site) (increase(datatrail_deletion_completed_files_total[$window])"
    report = PrometheusCollector(prom_config(prom.url, {"deletion_done": broken}), timeout=10).poll()
    assert report.reachable
    assert len(report.query_errors) == 1
    assert report.query_errors[0].startswith("deletion_done: bad_data: ")
    assert "parse error" in report.query_errors[0]
    expected = prom.world.expected(DEFAULT_COUNTERS, DEFAULT_PENDING, default_kind)
    got = {p.key: p for p in report.progress}
    for (site, kind), want in expected.items():
        p = got[f"{site}/{kind}"]
        assert p.pending == want["pending"]
        assert p.failed == pytest.approx(want["failed"], rel=1e-12, abs=1e-9)
        if kind == "replication":
            assert p.done == pytest.approx(want["done"], rel=1e-12)
        else:
            assert p.done is None and p.percent is None and p.rate_per_hour is None
    assert any(p.startswith("prometheus: query deletion_done: bad_data:") for p in report.problems())


def test_a_query_without_a_site_label_is_an_error_not_a_silent_zero(prom: PromServer) -> None:
    report = PrometheusCollector(
        prom_config(prom.url, {"replication_pending": "sum(datatrail_replication_pending_files)"}), timeout=10
    ).poll()
    assert report.reachable
    assert {e.split(":")[0] for e in report.query_errors} == {"replication_pending", "replication_pending[range]"}
    assert all("site" in e for e in report.query_errors)
    chime = next(p for p in report.progress if p.key == "chime/replication")
    assert chime.pending is None and chime.done == pytest.approx(2.0 * DAY, rel=1e-12)


def test_snapshot_and_text_include_progress(prom: PromServer) -> None:
    config = Config(path=None, timeout=10, prometheus=prom_config(prom.url))
    snap = snapshot(config)
    assert snap.progress is not None and snap.progress.reachable
    assert len(snap.progress.progress) == 5
    assert len(snap.problems) == 3  # the dead target, kko's late push, kko's Postgres
    text = render_text(snap)
    assert f"prometheus {prom.url}: ok" in text
    assert "feeds: 3 ok, 3 bad" in text
    assert "43,200" in text  # chime's replication pending


@pytest.mark.slow
def test_stopped_prometheus_is_reported_and_the_last_data_kept(tmp_path: Path) -> None:
    if missing_requirements():
        pytest.fail(missing_requirements())
    series = [Series("datatrail_replication_pending_files", {"site": "chime"}, "gauge", lambda t: 42.0, False)]
    server = PromServer(series, tmp_path / "prom", backfill_history=False)
    server.start()
    try:
        collector = PrometheusCollector(prom_config(server.url), timeout=3)
        first = collector.poll()
        assert first.reachable and [(p.key, p.pending) for p in first.progress] == [("chime/replication", 42.0)]
    finally:
        server.stop()
    assert server.process is None
    started = time.monotonic()
    second = collector.poll()
    assert time.monotonic() - started < 2.0  # refused at once: no retries
    assert not second.reachable
    assert second.error == f"{server.url}: connection refused"
    assert second.progress == first.progress and second.polled_at == first.polled_at
    assert second.problems() == [f"prometheus: unreachable: {server.url}: connection refused"]


def test_never_reachable_prometheus_in_status_json(tmp_path: Path) -> None:
    url = closed_port_url()
    path = tmp_path / "config.toml"
    path.write_text(f'timeout = 2.0\n[prometheus]\nurl = "{url}"\n')
    run = subprocess.run([sys.executable, "-m", "dtmon", "--config", str(path), "status", "--json"],
                         capture_output=True, text=True, timeout=30)
    assert run.returncode == 1
    out = json.loads(run.stdout)
    assert out["progress"] == []
    assert out["prometheus"]["reachable"] is False
    assert out["problems"] == [f"prometheus: unreachable: {url}: connection refused"]


def test_a_server_that_never_answers_costs_the_timeout_and_no_more() -> None:
    with silent_server() as url:
        collector = PrometheusCollector(prom_config(url), timeout=1.0)
        started = time.monotonic()
        report = collector.poll()
        took = time.monotonic() - started
    assert 0.9 <= took < 2.5, took  # without a timeout it would hang for good
    assert not report.reachable
    assert report.error == f"{url}: timed out after 1s"


def test_snapshot_waits_for_prometheus_and_a_site_at_once(tmp_path: Path) -> None:
    """A silent Docker endpoint and a silent Prometheus cost one timeout together, not two."""
    with silent_server() as prom_url, silent_server() as docker_url:
        path = tmp_path / "config.toml"
        docker = docker_url.replace("http://", "tcp://")
        path.write_text(f'timeout = 2.0\n[sites.chime]\ndocker = "{docker}"\n[prometheus]\nurl = "{prom_url}"\n')
        config = load(path)
        started = time.monotonic()
        snap = snapshot(config)
        took = time.monotonic() - started
    # The sites get timeout + 0.5 s; one after the other would take at least 2.5 + 2.
    assert took < 3.8, took
    assert not snap.site("chime").reachable
    assert snap.progress is not None and not snap.progress.reachable
    assert snap.progress.error == f"{prom_url}: timed out after 2s"


async def test_the_progress_pane_shows_what_prometheus_holds(prom: PromServer) -> None:
    """The dashboard's pane, polling the real server in its thread worker, shows the same numbers."""
    from textual.app import App, ComposeResult

    from dtmon.report import format_count, format_duration, format_per_hour
    from dtmon.widgets.progress import FeedsTable, ProgressPane, ProgressTable

    pane = ProgressPane(PrometheusCollector(prom_config(prom.url, OTHER_QUERIES), timeout=10), refresh=60)

    class Host(App):
        def compose(self) -> ComposeResult:
            yield pane

    async with Host().run_test(size=(160, 30)) as pilot:
        deadline = time.monotonic() + 20
        while pane.polls < 1 and time.monotonic() < deadline:
            await pilot.pause(0.05)
        assert pane.polls == 1 and pane.report.reachable
        table = pane.query_one(ProgressTable)
        expected = prom.world.expected(OTHER_COUNTERS, OTHER_PENDING, other_kind)
        assert table.row_count == len(expected)
        for (site, kind), want in expected.items():
            key = f"{site}/{kind}"
            assert str(table.get_cell(key, "pending")) == format_count(want["pending"])
            assert str(table.get_cell(key, "done")) == format_count(want["done"])
            assert str(table.get_cell(key, "failed")) == format_count(want["failed"])
            assert str(table.get_cell(key, "rate")) == format_per_hour(want["done"] / 24)
            eta = want["pending"] / (want["done"] / 24) * 3600 if want["pending"] else 0.0
            assert str(table.get_cell(key, "eta")) == format_duration(eta)
            percent = want["done"] / (want["done"] + want["pending"]) * 100
            assert str(table.get_cell(key, "bar")).endswith(f"{percent:5.1f}%")
        assert pane.query_one(FeedsTable).row_count == 3
        assert pane.query_one("#progress-summary").has_class("-ok")


@pytest.mark.parametrize(
    ("status", "body", "error"),
    [
        (502, b"<html>Bad Gateway</html>", "HTTP 502: <html>Bad Gateway</html>"),
        (200, b"<html>login</html>", "the answer is not JSON (is this Prometheus?)"),
        (200, b'{"status": "success"}', "the answer is not a Prometheus query result"),
    ],
)
def test_a_server_that_is_not_prometheus_is_one_problem(status: int, body: bytes, error: str) -> None:
    """Every query refused the same way (a proxy's 502, a login page): one problem naming the URL, not eleven."""
    from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
    import threading

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:  # noqa: N802
            self.send_response(status)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    url = f"http://127.0.0.1:{server.server_address[1]}"
    try:
        report = PrometheusCollector(prom_config(url), timeout=5).poll()
    finally:
        server.shutdown()
        server.server_close()
    assert not report.reachable
    assert report.error == f"{url}: {error}"
    assert report.problems() == [f"prometheus: unreachable: {url}: {error}"]


@pytest.mark.slow
def test_progress_pane_at_rest_writes_next_to_nothing(prom: PromServer, tmp_path: Path) -> None:
    """Terminal output is what an SSH link pays for: polls of unchanged numbers must not repaint the pane.

    The real `dtmon` runs in a 120x40 pseudo-terminal (progress under the services) polling every half second.
    """
    from ptyterm import PtyTerminal, visible

    lines = ["refresh = 0.5", "timeout = 5.0", "[prometheus]", f'url = "{prom.url}"', "[prometheus.queries]"]
    # A push age that stands still: the real one moves with the clock, and its shown minutes may tick over
    # inside the 5 s measured (a repaint that is due, not one this test is after).
    queries = {**OTHER_QUERIES, "push_age": 'push_time_seconds{job="metric_pusher",instance="chime"} * 0 + 30'}
    lines += [f"{name} = {json.dumps(query)}" for name, query in queries.items()]
    config = tmp_path / "c.toml"
    config.write_text("\n".join(lines) + "\n")
    marker = tmp_path / "polls"
    code = (  # dtmon, counting its polls in a file
        "import sys, dtmon.collectors.prometheus as p\n"
        "poll = p.PrometheusCollector.poll\n"
        "def counted(self):\n"
        f"    r = poll(self); open({str(marker)!r}, 'a').write('.'); return r\n"
        "p.PrometheusCollector.poll = counted\n"
        "from dtmon.cli import main\n"
        f"sys.exit(main(['--config', {str(config)!r}]))\n"
    )

    def polls() -> int:
        return len(marker.read_text()) if marker.exists() else 0

    with PtyTerminal([sys.executable, "-c", code]) as term:
        drawn, deadline = 0, time.monotonic() + 30
        while polls() < 3 and time.monotonic() < deadline:
            drawn += len(term.read_for(0.2))
        assert polls() >= 3, "dtmon never polled Prometheus"
        drawn += len(term.read_for(1.0))
        assert drawn > 2000, "the dashboard was never drawn"
        before = polls()
        at_rest = term.read_for(5.0)
        count = polls() - before
        assert count >= 5, count
        print(f"{len(at_rest)} bytes in 5 s over {count} polls")
        assert len(at_rest) < 500, f"{len(at_rest)} bytes in 5 s over {count} polls: {visible(at_rest)!r}"
