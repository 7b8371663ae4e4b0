"""Pure parts of the Prometheus collector: derived numbers, error texts, feed judgement, output."""

from __future__ import annotations

import json
from datetime import datetime, timezone

import pytest

from dtmon.collectors.prometheus import (
    _api_error,
    _by_site,
    _history_by_site,
    derive,
    expand,
    feed_checks,
    format_age,
    window_seconds,
)
from dtmon.model import FeedCheck, Progress, ProgressReport, Snapshot
from dtmon.report import progress_json, render_json, render_text


def test_window_seconds_and_expand() -> None:
    assert window_seconds("24h") == 86400
    assert window_seconds("90m") == 5400
    assert window_seconds("7d") == 7 * 86400
    with pytest.raises(ValueError):
        window_seconds("1h30m")
    assert expand("increase(x[$window]) / $window", "6h") == "increase(x[6h]) / 6h"


def test_derive_rate_percent_eta() -> None:
    p = derive("chime", "replication", pending=300.0, done=2400.0, failed=7.0, window="24h")
    assert p.rate_per_hour == 100.0
    assert p.percent == pytest.approx(2400 / 2700 * 100)
    assert p.eta_seconds == 3 * 3600
    assert p.failed == 7.0


@pytest.mark.parametrize(
    ("pending", "done", "percent", "rate", "eta"),
    [
        (0.0, 0.0, None, 0.0, 0.0),  # nothing to do, nothing done: done, but no percent
        (10.0, 0.0, 0.0, 0.0, None),  # stuck: no ETA
        (None, 48.0, None, 2.0, None),  # pending unknown
        (10.0, None, None, None, None),  # done unknown
        (0.0, 48.0, 100.0, 2.0, 0.0),
    ],
)
def test_derive_edges(pending, done, percent, rate, eta) -> None:
    p = derive("kko", "deletion", pending, done, None, "24h", history=(1.0, 2.0))
    assert (p.percent, p.rate_per_hour, p.eta_seconds) == (percent, rate, eta)
    assert p.pending_history == (1.0, 2.0)
    assert p.key == "kko/deletion"


def test_api_error_extracts_prometheus_message() -> None:
    body = b'{"status":"error","errorType":"bad_data","error":"1:7: parse error: unclosed left parenthesis"}'
    assert _api_error(400, body) == "bad_data: 1:7: parse error: unclosed left parenthesis"
    assert _api_error(502, b"<html>Bad gateway</html>\n") == "HTTP 502: <html>Bad gateway</html>"
    # The start of a longer error answer is never parsed as JSON, and shown as one short line.
    assert _api_error(500, b'{"error": "' + b"x" * 5000, truncated=True) == 'HTTP 500: {"error": "' + "x" * 188 + "…"


def test_by_site_sums_and_refuses_series_without_site() -> None:
    assert _by_site([({"site": "a"}, 1.0), ({"site": "a"}, 2.5), ({"site": "b"}, None)]) == {"a": 3.5}
    with pytest.raises(ValueError, match="site"):
        _by_site([({"job": "x"}, 1.0)])


def test_history_by_site_orders_and_sums_steps() -> None:
    result = [
        {"metric": {"site": "a", "pod": "1"}, "values": [[20, "2"], [10, "1"]]},
        {"metric": {"site": "a", "pod": "2"}, "values": [[10, "5"], [20, "NaN"]]},
    ]
    assert _history_by_site(result) == {"a": (6.0, 2.0)}
    with pytest.raises(ValueError):
        _history_by_site([{"metric": {}, "value": [1, "1"]}])


def test_feed_checks() -> None:
    up = feed_checks("targets_up", [({"__name__": "up", "job": "j", "instance": "h:1"}, 0.0)], 900)
    assert up == [FeedCheck("targets_up", (("instance", "h:1"), ("job", "j")), 0.0, False, "target job=j instance=h:1: down")]
    fresh, late = feed_checks("push_age", [({"instance": "a"}, 120.0), ({"instance": "b"}, 901.0)], 900)
    assert fresh.ok and fresh.detail == "last push instance=a: 2m ago"
    assert not late.ok and late.detail == "last push instance=b: 15m ago (older than 15m)"
    assert [c.ok for c in feed_checks("pg_up", [({}, 1.0), ({}, 0.0)], 900)] == [True, False]
    (empty,) = feed_checks("pg_up", [], 900)
    assert not empty.ok and empty.value is None and "no series" in empty.detail


def test_format_age_rounds_to_the_unit_shown() -> None:
    assert [format_age(s) for s in (0, 59.4, 59.6, 1199.99, 21599.99, 21631, 3 * 86400 + 100)] == [
        "0s", "59s", "1m", "20m", "6h00m", "6h01m", "3d00h"
    ]


def _report(**changes) -> ProgressReport:
    base = ProgressReport(
        url="http://p:9090",
        reachable=True,
        latency_ms=12.0,
        polled_at=datetime(2026, 1, 1, tzinfo=timezone.utc),
        progress=(derive("chime", "replication", 300.0, 2400.0, 0.0, "24h", (400.0, 300.0)),),
        feeds=(FeedCheck("pg_up", (("instance", "pg"),), 0.0, False, "pg_up instance=pg: 0"),),
        query_errors=("deletion_done: bad_data: parse error",),
    )
    return ProgressReport(**{**base.__dict__, **changes})


def test_problems_and_json() -> None:
    report = _report()
    assert report.problems() == ["prometheus: query deletion_done: bad_data: parse error", "prometheus: pg_up instance=pg: 0"]
    down = _report(reachable=False, error="http://p:9090: connection refused")
    assert down.problems() == ["prometheus: unreachable: http://p:9090: connection refused"]
    snap = Snapshot(datetime(2026, 1, 1, tzinfo=timezone.utc), progress=report)
    assert snap.problems == report.problems() and not snap.healthy
    out = json.loads(render_json(snap))
    assert out["progress"] == [{
        "site": "chime", "kind": "replication", "pending": 300, "done": 2400, "failed": 0,
        "percent": 2400 / 2700 * 100, "rate_per_hour": 100.0, "eta_seconds": 10800.0,
    }]
    assert out["prometheus"]["errors"] == ["deletion_done: bad_data: parse error"]
    assert out["prometheus"]["feeds"][0] == {
        "name": "pg_up", "labels": {"instance": "pg"}, "value": 0, "ok": False, "detail": "pg_up instance=pg: 0"
    }
    assert progress_json(None) == {"progress": [], "prometheus": None}


def test_text_output() -> None:
    text = render_text(Snapshot(datetime(2026, 1, 1, tzinfo=timezone.utc), progress=_report()))
    row = next(line for line in text.splitlines() if line.strip().startswith("chime"))
    assert row.split() == ["chime", "replication", "300", "2,400", "0", "88.9%", "100/h", "3h00m"]
    assert "feeds: 0 ok, 1 bad" in text and "query deletion_done: bad_data" in text
    down = render_text(Snapshot(datetime(2026, 1, 1, tzinfo=timezone.utc),
                                progress=_report(reachable=False, error="x: connection refused")))
    assert "UNREACHABLE (x: connection refused)" in down and "2,400" not in down


def test_no_textual_in_the_collector() -> None:
    import subprocess
    import sys

    code = "import sys, dtmon.collectors.prometheus, dtmon.report; print('textual' in sys.modules)"
    assert subprocess.run([sys.executable, "-c", code], capture_output=True, text=True).stdout.strip() == "False"


def test_progress_is_frozen() -> None:
    p = Progress("a", "deletion", 1.0, 1.0, 0.0, 50.0, 1.0, 3600.0)
    with pytest.raises(AttributeError):
        p.pending = 2.0  # type: ignore[misc]


def test_config_max_push_age(tmp_path) -> None:
    from dtmon.collectors.prometheus import PrometheusCollector
    from dtmon.config import ConfigError, load

    path = tmp_path / "c.toml"
    path.write_text('[prometheus]\nurl = "http://p:9090"\n')
    assert load(path).prometheus.max_push_age == 900.0
    path.write_text('[prometheus]\nurl = "http://p:9090"\nmax_push_age = 3600\n')
    config = load(path).prometheus
    assert config.max_push_age == 3600.0
    assert PrometheusCollector(config, 1.0).max_push_age == 3600.0
    path.write_text('[prometheus]\nurl = "http://p:9090"\nmax_push_age = 0\n')
    with pytest.raises(ConfigError, match="prometheus.max_push_age"):
        load(path)


def test_config_check_names_overridden_and_disabled_queries(tmp_path) -> None:
    import subprocess
    import sys

    from dtmon.collectors.prometheus import PrometheusCollector
    from dtmon.config import load

    path = tmp_path / "c.toml"
    path.write_text('[prometheus]\nurl = "http://p:9090"\nwindow = "6h"\n[prometheus.queries]\n'
                    'pg_up = ""\nreplication_done = "sum by (site) (increase(x_total[$window]))"\n')
    out = subprocess.run([sys.executable, "-m", "dtmon", "--config", str(path), "config", "check"],
                         capture_output=True, text=True).stdout
    assert "prometheus: http://p:9090 window 6h; a push older than 900s is a problem" in out
    assert "  replication_done: sum by (site) (increase(x_total[$window]))" in out
    assert "  pg_up: (off)" in out
    jobs = PrometheusCollector(load(path).prometheus, 1.0)._jobs()
    assert "pg_up" not in jobs
    assert jobs["replication_done"] == ("instant", "sum by (site) (increase(x_total[6h]))")
    assert jobs["replication_pending[range]"][0] == "range"


# ---------------------------------------------------------------------------
# Malformed answers from a tiny fake server: each is that query's error, never a crash or a fake timeout.
# ---------------------------------------------------------------------------


@pytest.fixture
def fake_prometheus():
    """A loopback HTTP server answering /api/v1/query and /api/v1/query_range with the bodies set on it."""
    import threading
    from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

    bodies = {"query": b"", "query_range": b""}

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:  # noqa: N802 - the stdlib's name
            kind = self.path.split("?", 1)[0].rsplit("/", 1)[-1]
            body = bodies.get(kind, b"{}")
            self.send_response(200)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    server.bodies = bodies  # type: ignore[attr-defined]
    server.url = f"http://127.0.0.1:{server.server_address[1]}"  # type: ignore[attr-defined]
    yield server
    server.shutdown()
    server.server_close()


def _answer(result_type: str, result) -> bytes:
    return json.dumps({"status": "success", "data": {"resultType": result_type, "result": result}}).encode()


GOOD_RANGE = [{"metric": {"site": "chime"}, "values": [[1, "5"], [2, "4"]]}]
GOOD_VECTOR = [{"metric": {"site": "chime"}, "value": [2, "4"]}]


@pytest.mark.parametrize(
    "vector, matrix, failing, says",
    [
        ([{"metric": {"site": "chime"}, "value": 5}], GOOD_RANGE, "replication_pending", "`value` holds 5"),
        ([{"metric": {"site": "chime"}, "value": []}], GOOD_RANGE, "replication_pending", "`value` holds []"),
        ([{"metric": ["site"], "value": [1, "5"]}], GOOD_RANGE, "replication_pending", "`metric` is [\"site\"]"),
        (GOOD_VECTOR, [{"metric": {"site": "chime"}, "values": 7}], "replication_pending[range]", "`values` is 7"),
        (GOOD_VECTOR, [{"metric": {"site": "chime"}, "values": [5]}], "replication_pending[range]", "`values` holds 5"),
        (GOOD_VECTOR, [{"metric": {"site": "chime"}, "values": [[1]]}], "replication_pending[range]", "holds [1]"),
    ],
)
def test_malformed_series_is_that_querys_error(fake_prometheus, vector, matrix, failing, says) -> None:
    from dtmon.collectors.prometheus import PrometheusCollector
    from dtmon.config import PrometheusConfig

    fake_prometheus.bodies["query"] = _answer("vector", vector)
    fake_prometheus.bodies["query_range"] = _answer("matrix", matrix)
    cfg = PrometheusConfig(fake_prometheus.url, "1h", {"replication_pending": "sum by (site) (pending)"})
    report = PrometheusCollector(cfg, timeout=3.0).poll()
    assert report.reachable, report.error
    (error,) = report.query_errors
    assert error.startswith(f"{failing}: malformed answer:") and says in error, error
    good = report.progress[0]
    if failing.endswith("[range]"):
        assert good.pending == 4.0 and good.pending_history == ()
    else:
        assert good.pending is None and good.pending_history == (5.0, 4.0)


def test_a_poll_that_raises_is_a_failed_report_not_a_timeout(fake_prometheus, tmp_path, monkeypatch) -> None:
    from dtmon.collectors import prometheus
    from dtmon.config import load

    def broken(self):
        raise RuntimeError("boom")

    monkeypatch.setattr(prometheus.PrometheusCollector, "poll", broken)
    path = tmp_path / "config.toml"
    path.write_text(f'timeout = 3\n[prometheus]\nurl = "{fake_prometheus.url}"\n')
    wait = prometheus.start_poll(load(path))
    report = wait(3.0)
    assert not report.reachable
    assert report.error == f"{fake_prometheus.url}: poll failed: RuntimeError: boom"
