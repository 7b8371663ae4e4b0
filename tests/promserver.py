"""A real Prometheus for tests: Debian's `prometheus` on loopback, with backfilled history.

Usable from any test module::

    from promserver import Series, PromServer, silent_server

    series = [Series("jobs_done_total", {"site": "a"}, "counter", lambda t: 1000 + 2 * t)]
    with PromServer(series, tmp_path) as prom:      # history backfilled, exporter scraped
        prom.query("jobs_done_total", at=prom.t0)   # a direct HTTP query, for comparisons

Every series is a function of the unix time in whole seconds, so its value is known at every
sample: `promtool tsdb create-blocks-from openmetrics` writes the history (one sample every
`step` seconds from `history` ago to a little before the start), and a loopback exporter serves
the same functions live with explicit timestamps (whole seconds), scraped every 5 s. The server
listens only on 127.0.0.1, has no remote write, alerting or external URL, and everything lives
in its own temp dir, removed with the process at the end.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import socket
import subprocess
import threading
import time
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

PROMETHEUS = shutil.which("prometheus") or "/usr/bin/prometheus"
PROMTOOL = shutil.which("promtool") or "/usr/bin/promtool"
SCRAPE_INTERVAL = 5


def missing_requirements() -> str | None:
    """Why a real Prometheus cannot run here, or None when it can."""
    for path in (PROMETHEUS, PROMTOOL):
        if not os.access(path, os.X_OK):
            return f"{path} not found (install the Debian package prometheus)"
    return None


def free_port() -> int:
    """A TCP port on 127.0.0.1 that was free a moment ago."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@dataclass(frozen=True)
class Series:
    """One time series: its sample name, labels, type, and value as a function of unix seconds."""

    name: str  #: the sample name as queried, e.g. "x_files_total" for a counter
    labels: dict[str, str]
    type: str  #: "counter" or "gauge"
    value: Callable[[int], float]
    backfill: bool = True  #: also write its history (False: only served live)

    @property
    def family(self) -> str:
        """The OpenMetrics family name (a counter's without `_total`)."""
        if self.type == "counter" and self.name.endswith("_total"):
            return self.name[: -len("_total")]
        return self.name

    def sample(self, t: int, extra: dict[str, str] | None = None) -> str:
        merged = {**(extra or {}), **self.labels}
        labels = ",".join(f'{k}="{v}"' for k, v in sorted(merged.items()))
        return f"{self.name}{{{labels}}} {self.value(t)!r}"


def openmetrics(series: list[Series], start: int, end: int, step: int, target: dict[str, str]) -> str:
    """History of every series from `start` to `end` (inclusive) every `step` seconds, families grouped.

    `target` are the labels a scrape adds (job, instance), so history and live samples are one series.
    """
    families: dict[str, list[Series]] = {}
    for s in series:
        if s.backfill:
            families.setdefault(s.family, []).append(s)
    lines = []
    for family, members in families.items():
        lines.append(f"# TYPE {family} {members[0].type}")
        for s in members:
            lines.extend(f"{s.sample(t, target)} {t}" for t in range(start, end + 1, step))
    lines.append("# EOF")
    return "\n".join(lines) + "\n"


def exposition(series: list[Series], t: int) -> str:
    """The text format a scrape reads: every series at `t`, with `t` as its explicit timestamp (ms)."""
    lines = []
    typed = set()
    for s in series:
        if s.name not in typed:  # the text format types the sample name itself
            typed.add(s.name)
            lines.append(f"# TYPE {s.name} {s.type}")
        lines.append(f"{s.sample(t)} {t * 1000}")
    return "\n".join(lines) + "\n"


class Exporter:
    """A loopback HTTP exporter serving `series` at /metrics, evaluated at the current whole second."""

    def __init__(self, series: list[Series]) -> None:
        self.series = series
        self.scrapes = 0
        outer = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:  # noqa: N802 - http.server's name
                if self.path.split("?")[0] != "/metrics":
                    self.send_error(404)
                    return
                body = exposition(outer.series, int(time.time())).encode()
                outer.scrapes += 1
                self.send_response(200)
                self.send_header("Content-Type", "text/plain; version=0.0.4")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, *args: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.port = self.server.server_address[1]
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True, name="exporter")
        self.thread.start()

    @property
    def address(self) -> str:
        return f"127.0.0.1:{self.port}"

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()
        self.thread.join(5)


@dataclass
class PromServer:
    """Debian's prometheus on 127.0.0.1:<free port> with backfilled history and a live exporter.

    `t0` is the start (whole seconds); history covers `history` seconds before it, one sample
    every `step` seconds on a grid of multiples of `step`, ending at least `gap` seconds before
    `t0`. `extra_targets` are more scrape targets in a job "extra" (e.g. a closed port, so `up` is 0).
    """

    series: list[Series]
    dir: Path
    history: int = 26 * 3600
    step: int = 30
    gap: int = 60
    extra_targets: list[str] = field(default_factory=list)
    backfill_history: bool = True
    t0: int = 0
    port: int = 0
    exporter: Exporter | None = None
    process: subprocess.Popen | None = None
    backfill_end: int = 0

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def grid(self, t: int) -> int:
        """The last backfilled sample time at or before `t`."""
        return min(t - t % self.step, self.backfill_end)

    def __enter__(self) -> PromServer:
        self.start()
        return self

    def __exit__(self, *exc: Any) -> None:
        self.stop()

    def start(self) -> None:
        reason = missing_requirements()
        if reason:
            raise RuntimeError(reason)
        self.dir.mkdir(parents=True, exist_ok=True)
        data = self.dir / "data"
        self.t0 = int(time.time())
        self.exporter = Exporter(self.series)
        try:
            if self.backfill_history:
                self.backfill_end = (self.t0 - self.gap) // self.step * self.step
                start = (self.t0 - self.history) // self.step * self.step
                source = self.dir / "history.om"
                target = {"job": "datatrail", "instance": self.exporter.address}
                source.write_text(openmetrics(self.series, start, self.backfill_end, self.step, target))
                subprocess.run(
                    [PROMTOOL, "tsdb", "create-blocks-from", "openmetrics", str(source), str(data)],
                    check=True, capture_output=True, timeout=120,
                )
            self._launch(data)
        except BaseException:
            self.stop()
            raise

    def _config(self) -> str:
        jobs = [
            {
                "job_name": "datatrail",
                "honor_labels": True,
                "scrape_interval": f"{SCRAPE_INTERVAL}s",
                "static_configs": [{"targets": [self.exporter.address]}],
            }
        ]
        if self.extra_targets:
            jobs.append({
                "job_name": "extra",
                "scrape_interval": f"{SCRAPE_INTERVAL}s",
                "static_configs": [{"targets": list(self.extra_targets)}],
            })
        # JSON is YAML: no external labels, alerting, rule files or remote write.
        return json.dumps({"global": {"scrape_interval": f"{SCRAPE_INTERVAL}s"}, "scrape_configs": jobs}, indent=2)

    def _launch(self, data: Path) -> None:
        config = self.dir / "prometheus.yml"
        config.write_text(self._config())
        self.port = free_port()
        log = open(self.dir / "prometheus.log", "ab")
        self.process = subprocess.Popen(
            [
                PROMETHEUS,
                f"--config.file={config}",
                f"--storage.tsdb.path={data}",
                f"--web.listen-address=127.0.0.1:{self.port}",
                "--storage.tsdb.retention.time=30d",
                f"--web.console.templates={self.dir}",
                f"--web.console.libraries={self.dir}",
            ],
            stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, cwd=self.dir,
            env={"PATH": os.environ.get("PATH", "/usr/bin:/bin"), "HOME": str(self.dir), "NO_PROXY": "*"},
        )
        log.close()
        self.wait_until(lambda: self._get("/-/ready") is not None, 60, "prometheus to be ready")
        # Ready, the exporter scraped once (so instant queries see live samples), every target tried once.
        self.wait_until(
            lambda: bool((self.query('up{job="datatrail"} == 1') or [])), 60, "the first scrape of the exporter"
        )
        targets = 1 + len(self.extra_targets)
        self.wait_until(lambda: len(self.query("up")) == targets, 60, f"a scrape of all {targets} targets")

    def _get(self, path: str, timeout: float = 2.0) -> bytes | None:
        if self.process is not None and self.process.poll() is not None:
            raise RuntimeError(f"prometheus exited with {self.process.returncode}:\n{self.log_tail()}")
        try:
            with urllib.request.urlopen(f"{self.url}{path}", timeout=timeout) as answer:
                return answer.read()
        except (urllib.error.URLError, ConnectionError, TimeoutError):
            return None

    def log_tail(self, lines: int = 30) -> str:
        try:
            return "\n".join((self.dir / "prometheus.log").read_text().splitlines()[-lines:])
        except OSError:
            return ""

    def wait_until(self, condition: Callable[[], bool], timeout: float, what: str, interval: float = 0.1) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if condition():
                return
            time.sleep(interval)
        raise RuntimeError(f"timed out after {timeout}s waiting for {what}\n{self.log_tail()}")

    def api(self, path: str, params: dict[str, Any]) -> Any:
        """A direct call of the HTTP API; the `data` of a success, RuntimeError on an error."""
        raw = self._get(f"{path}?{urllib.parse.urlencode(params)}", timeout=10)
        if raw is None:
            raise RuntimeError(f"no answer from {self.url}{path}")
        answer = json.loads(raw)
        if answer.get("status") != "success":
            raise RuntimeError(answer)
        return answer["data"]

    def query(self, promql: str, at: float | None = None) -> list[dict[str, Any]]:
        """/api/v1/query, straight over HTTP (no dtmon, no prometheus-api-client)."""
        params = {"query": promql}
        if at is not None:
            params["time"] = f"{at:.3f}"
        try:
            return self.api("/api/v1/query", params)["result"]
        except RuntimeError:
            return []

    def stop(self) -> None:
        """End the server (SIGTERM, then SIGKILL), reap it, stop the exporter, remove the data."""
        if self.process is not None:
            if self.process.poll() is None:
                self.process.send_signal(signal.SIGTERM)
                try:
                    self.process.wait(20)
                except subprocess.TimeoutExpired:
                    self.process.kill()
                    self.process.wait(10)
            self.process = None
        if self.exporter is not None:
            self.exporter.close()
            self.exporter = None
        shutil.rmtree(self.dir / "data", ignore_errors=True)


@contextmanager
def silent_server() -> Iterator[str]:
    """A loopback TCP server that accepts connections and never answers; yields its http:// URL."""
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(64)
    held: list[socket.socket] = []
    stop = threading.Event()

    def accept() -> None:
        listener.settimeout(0.1)
        while not stop.is_set():
            try:
                conn, _ = listener.accept()
            except (TimeoutError, OSError):
                continue
            held.append(conn)

    thread = threading.Thread(target=accept, daemon=True, name="silent-server")
    thread.start()
    try:
        yield f"http://127.0.0.1:{listener.getsockname()[1]}"
    finally:
        stop.set()
        thread.join(5)
        for conn in held:
            conn.close()
        listener.close()


def closed_port_url() -> str:
    """An http:// URL on loopback where nothing listens (connection refused)."""
    return f"http://127.0.0.1:{free_port()}"
