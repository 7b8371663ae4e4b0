"""Hostile servers for tests: a Docker Engine API on a unix socket, and one HTTP server that is both a Buckets
service and a Prometheus query API. Each answers with the data of its current `mode` (changeable while it
runs), playing a server dtmon does not control: control sequences in names, duplicated keys, absurd numbers.

    with HostileEngine(tmp_path / "e.sock", "escapes") as engine, HostileHttp("escapes") as http:
        config = write_hostile_config(tmp_path, engine, http)

A new case is a new entry in ENGINE_MODES / HTTP_MODES (each a function returning the answers).

How an answer is *sent* (trickled a byte at a time, never, 100 MB of it, a 50 MB error) is `HostileServer`'s
`mode`, below: it serves any routes (`engine_routes()`, `buckets_routes()`, `prometheus_routes()`), on a
unix socket, loopback TCP or TLS, in the test process or in one of its own (`spawned`, or
`python tests/hostile.py engine --socket PATH --mode trickle`).
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import socket
import socketserver
import struct
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

STACK_LABEL = "com.docker.stack.namespace"
NOW = "2026-12-01T12:00:00.000000000Z"

#: What the hostile data tries to make a terminal do; none of it may reach one.
TITLE = "\x1b]0;pwned\x07"  # OSC 0: set the window title
WIPE = "\x1b[2J"  # erase the screen
CLIPBOARD = "\x1b]52;c;cHduZWQ=\x07"  # OSC 52: write the clipboard
LINK = "\x1b]8;;file:///etc/passwd\x07click\x1b]8;;\x07"  # OSC 8: a hyperlink
RESET = "\x1bc"  # RIS: reset the terminal
C1_CSI = "\x9b2J"  # CSI as one C1 byte: erase the screen
BIDI = "\u202egnp.exe"  # right-to-left override: "exe.png" reads as an image
MARKUP = "markup_[link=file:///etc/passwd]x[/link][reverse]r"  # Rich/Textual markup: a link (OSC 8), a style
#: The injected sequences as bytes a terminal would receive (UTF-8), to look for in what dtmon writes.
#: Any OSC 8 counts: a name's markup `[link=…]` would make one with an id (`\x1b]8;id=…;file:…`).
INJECTED = [s.encode() for s in ("\x1b]0;pwned", "\x1b]52;", "\x1b]8;", "\x1bc", "\x9b", "\u202e")]

#: A password that must never be shown.
PASSWORD = "hunter2secret"


# ---------------------------------------------------------------------------
# The engine: answers as a Docker 20.10 manager would, with hostile content.
# ---------------------------------------------------------------------------


def service(sid: str, name: str, stack: str, running: Any = 1, desired: Any = 1, image: str = "busybox:1") -> dict:
    return {
        "ID": sid,
        "Version": {"Index": 10},
        "CreatedAt": NOW,
        "UpdatedAt": NOW,
        "Spec": {
            "Name": name,
            "Labels": {STACK_LABEL: stack},
            "TaskTemplate": {"ContainerSpec": {"Image": image}},
            "Mode": {"Replicated": {"Replicas": desired}},
        },
        "ServiceStatus": {"RunningTasks": running, "DesiredTasks": desired},
    }


def task(tid: str | None, sid: str, stack: str, state: str = "running", err: str | None = None, slot: int = 1) -> dict:
    out = {
        "ServiceID": sid,
        "NodeID": "node1",
        "Slot": slot,
        "Labels": {STACK_LABEL: stack},
        "Status": {"Timestamp": NOW, "State": state, "Message": state,
                   "ContainerStatus": {"ContainerID": "c" * 64, "ExitCode": 1 if err else 0}},
        "DesiredState": "running",
    }
    if tid is not None:
        out["ID"] = tid
    if err:
        out["Status"]["Err"] = err
    return out


def node(hostname: str = "node-1") -> dict:
    return {"ID": "node1", "Description": {"Hostname": hostname},
            "Spec": {"Role": "manager", "Availability": "active"}, "Status": {"State": "ready"},
            "ManagerStatus": {"Leader": True}}


def _escapes() -> dict:
    return {
        "services": [
            service("s1", f"dt_title_{TITLE}{WIPE}", "dt", image=f"img{WIPE}:tag{CLIPBOARD}"),
            service("s2", f"dt_link_{LINK}", "dt", running=0, desired=1),
            service("s3", f"dt_{MARKUP}", "dt"),
        ],
        "tasks": [task("t1", "s1", "dt"),
                  task("t2", "s2", "dt", state="failed", err=f"boom {RESET} {C1_CSI} {BIDI}")],
        "nodes": [node(f"node{TITLE}")],
        "logs": [f"\x1b[31mred\x1b[0m plain {RESET} {CLIPBOARD} {C1_CSI} {TITLE} {LINK} {BIDI}", "second line"],
    }


def _duplicate_names() -> dict:
    return {"services": [service("a1", "dt_same", "dt"), service("a2", "dt_same", "dt", running=0)],
            "tasks": [task("t1", "a1", "dt"), task("t2", "a2", "dt", state="failed", err="second one fails")],
            "nodes": [node()], "logs": ["ok"]}


def _tasks_without_id() -> dict:
    return {"services": [service("s1", "dt_svc", "dt", running=0, desired=2)],
            "tasks": [task(None, "s1", "dt", state="failed", err="no id 1"),
                      task(None, "s1", "dt", state="failed", err="no id 2", slot=2),
                      task("dup", "s1", "dt", state="failed", err="dup id"),
                      task("dup", "s1", "dt", state="failed", err="dup id again")],
            "nodes": [node()], "logs": ["ok"]}


def _stack_clash() -> dict:
    # Stack `a` deployed `a_b_c` (service `b_c`); stack `a_b`'s compose file names `c`: both are "a_b_c".
    return {"services": [service("x1", "a_b_c", "a")], "tasks": [task("t1", "x1", "a")], "nodes": [node()],
            "logs": ["ok"]}


def _huge_counts() -> dict:
    return {"services": [service("s1", "dt_svc", "dt", running=10**4000, desired=10**4000)], "tasks": [],
            "nodes": [node()], "logs": []}


def _negative_counts() -> dict:
    return {"services": [service("s1", "dt_svc", "dt", running=-5, desired=1)], "tasks": [], "nodes": [node()],
            "logs": []}


def _garbage() -> dict:
    bad = service("s1", "dt_svc", "dt")
    bad["Spec"]["TaskTemplate"] = None
    bad["Spec"]["Mode"] = "replicated"
    bad["UpdateStatus"] = ["not", "an", "object"]
    return {"services": [bad], "tasks": ["not a task", {"ServiceID": "s1", "Status": None, "Slot": "one"}],
            "nodes": [None, {"Description": None}], "logs": ["\x00\x01\x02 nul and friends"]}


def _api_error() -> dict:
    return {"error": (500, {"message": f"rpc error: {TITLE}{RESET} {PASSWORD}"}), "nodes": [node()], "logs": []}


def _healthy() -> dict:
    return {"services": [service("s1", "dt_svc", "dt")], "tasks": [task("t1", "s1", "dt")], "nodes": [node()],
            "logs": ["all good"]}


ENGINE_MODES: dict[str, Callable[[], dict]] = {
    "healthy": _healthy,
    "escapes": _escapes,
    "duplicate-names": _duplicate_names,
    "tasks-without-id": _tasks_without_id,
    "stack-clash": _stack_clash,
    "huge-counts": _huge_counts,
    "negative-counts": _negative_counts,
    "garbage": _garbage,
    "api-error": _api_error,
}

#: The stacks (and their compose services) each engine mode is watched with.
ENGINE_STACKS: dict[str, dict[str, list[str]]] = {
    "stack-clash": {"a": ["b_c"], "a_b": ["c"]},
}
DEFAULT_STACKS = {"dt": ["svc"]}


class _EngineHandler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server: "HostileEngine"

    def address_string(self) -> str:
        return "unix"

    def log_message(self, *args: Any) -> None:
        pass

    def _send(self, body: bytes, content_type: str = "application/json", code: int = 200) -> None:
        self.send_response(code)
        self.send_header("Api-Version", "1.41")
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(body)

    def do_HEAD(self) -> None:
        self.do_GET()

    def do_GET(self) -> None:
        path = urlsplit(self.path).path
        if path.startswith("/v1."):
            path = "/" + path.split("/", 2)[2]
        data = ENGINE_MODES[self.server.mode]()
        self.server.requests += 1
        if path == "/_ping":
            self._send(b"OK", "text/plain")
        elif path == "/version":
            self._send(json.dumps({"ApiVersion": "1.41", "MinAPIVersion": "1.12", "Version": "20.10.24"}).encode())
        elif path in ("/services", "/tasks", "/nodes") and "error" in data:
            code, body = data["error"]
            self._send(json.dumps(body).encode(), code=code)
        elif path in ("/services", "/tasks", "/nodes"):
            self._send(json.dumps(data[path[1:]]).encode())
        elif path.startswith("/services/") and path.endswith("/logs"):
            frames = b"".join(
                struct.pack(">BxxxL", 1, len(payload)) + payload
                for payload in ((line + "\n").encode("utf-8", "surrogatepass") for line in data["logs"])
            )
            self._send(frames, "application/vnd.docker.raw-stream")
        else:
            self._send(json.dumps({"message": "page not found"}).encode(), code=404)


class HostileEngine(socketserver.ThreadingMixIn, socketserver.UnixStreamServer):
    """A Docker Engine API on a unix socket answering with ENGINE_MODES[mode]; a context manager."""

    daemon_threads = True
    block_on_close = False

    def __init__(self, path: Path, mode: str = "healthy") -> None:
        self.path = str(path)
        if os.path.exists(self.path):
            os.unlink(self.path)
        super().__init__(self.path, _EngineHandler)
        self.mode = mode
        self.requests = 0
        self._thread = threading.Thread(target=self.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
        self._thread.start()

    @property
    def url(self) -> str:
        return f"unix://{self.path}"

    def handle_error(self, request: Any, client_address: Any) -> None:
        pass  # a client that hung up mid-answer (a poll given up) is no news

    def close(self) -> None:
        self.shutdown()
        self._thread.join()
        self.server_close()
        if os.path.exists(self.path):
            os.unlink(self.path)

    def __enter__(self) -> "HostileEngine":
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()


# ---------------------------------------------------------------------------
# Buckets and Prometheus on one loopback HTTP server.
# ---------------------------------------------------------------------------


def _vector(series: list[tuple[dict, Any]]) -> dict:
    return {"resultType": "vector", "result": [{"metric": m, "value": [1764590400, str(v)]} for m, v in series]}


def _matrix(series: list[tuple[dict, list[Any]]]) -> dict:
    return {"resultType": "matrix",
            "result": [{"metric": m, "values": [[1764590400 + i * 60, str(v)] for i, v in enumerate(vs)]}
                       for m, vs in series]}


def _prom_default(query: str, ranged: bool, site: str = "chime") -> dict:
    if ranged:
        return _matrix([({"site": site}, [10, 20, 30])])
    if query == "up":
        return _vector([({"job": "node", "instance": "a:9100"}, 1)])
    if "push_time" in query:
        return _vector([({"job": "metric_pusher"}, 30)])
    if query == "pg_up":
        return _vector([({"instance": "pg"}, 1)])
    return _vector([({"site": site}, 5)])


def _http_healthy() -> dict:
    return {"buckets": {"datatrail-ok": {"queued": 0, "running": 0, "success": 5, "failure": 0}},
            "prometheus": lambda q, ranged: _prom_default(q, ranged)}


def _http_escapes() -> dict:
    def prom(query: str, ranged: bool) -> Any:
        if "deletion_done" in query or "deletion_completed" in query:
            return 400, {"status": "error", "errorType": "bad_data", "error": f"parse {RESET} error {C1_CSI} {TITLE}"}
        if query == "up":
            return _vector([({"job": f"scrape{CLIPBOARD}", "instance": f"host{LINK}"}, 0)])
        return _prom_default(query, ranged, site=f"chime{WIPE}{BIDI}")

    return {"buckets": {f"datatrail-title{TITLE}": {"queued": 3, "running": 0, "success": 1, "failure": 0},
                        f"datatrail-bidi{BIDI}": {"queued": 0, "running": 0, "success": 1, "failure": 0}},
            "prometheus": prom}


def _http_bucket_error() -> dict:
    return {"buckets": {"datatrail-ok": {"queued": 1, "running": 0, "success": 5, "failure": 0},
                        "datatrail-error": {"error": f"no such bucket {RESET}{CLIPBOARD}"}},
            "prometheus": lambda q, ranged: _prom_default(q, ranged)}


def _http_huge() -> dict:
    return {"buckets": {"datatrail-huge": {"queued": 10**4000, "running": 0, "success": 0, "failure": 0}},
            "prometheus": lambda q, ranged: _vector([({"site": "chime"}, "1e300")]) if not ranged
            else _matrix([({"site": "chime"}, ["1e308", "1e308"])])}


def _http_negative() -> dict:
    return {"buckets": {"datatrail-negative": {"queued": -5, "running": 0, "success": 0, "failure": 0}},
            "prometheus": lambda q, ranged: _vector([({"site": "chime"}, -5)]) if not ranged
            else _matrix([({"site": "chime"}, [-1, -2])])}


def _http_duplicates() -> dict:
    def prom(query: str, ranged: bool) -> Any:
        if query == "up":  # the same series twice, and two label sets that display alike
            return _vector([({"job": "a", "instance": "b"}, 1), ({"job": "a", "instance": "b"}, 0),
                            ({"job": "a instance=b"}, 0), ({"job": "a\x1b", "instance": "b"}, 1),
                            ({"job": "a^[", "instance": "b"}, 1)])
        if ranged:  # two series of one site whose sum overflows to inf at every step
            return _matrix([({"site": "chime", "x": "1"}, ["1e308"] * 3), ({"site": "chime", "x": "2"}, ["1e308"] * 3)])
        return _vector([({"site": "chime", "x": "1"}, 5), ({"site": "chime", "x": "2"}, 6)])

    counts = {"queued": 1, "running": 0, "success": 0, "failure": 0}
    return {"buckets": {"datatrail-dup": counts, "datatrail-dup\x1b": counts, "datatrail-dup^[": counts},
            "names": ["datatrail-dup", "datatrail-dup", "datatrail-dup\x1b", "datatrail-dup^["],
            "prometheus": prom}


def _http_error_500() -> dict:
    return {"status": (500, f"Internal {TITLE} Error"), "body": f"<html>{RESET}{CLIPBOARD} {PASSWORD}</html>"}


HTTP_MODES: dict[str, Callable[[], dict]] = {
    "healthy": _http_healthy,
    "escapes": _http_escapes,
    "bucket-error": _http_bucket_error,
    "huge": _http_huge,
    "negative": _http_negative,
    "duplicates": _http_duplicates,
    "error-500": _http_error_500,
}


class _HttpHandler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server: "HostileHttp"

    def log_message(self, *args: Any) -> None:
        pass

    def _send(self, code: int, body: bytes, reason: str | None = None, content_type: str = "application/json") -> None:
        self.send_response_only(code, reason)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(body)

    def send_response_only(self, code: int, message: str | None = None) -> None:
        # The stdlib encodes the status line as latin-1 and would refuse the hostile reason phrase: write bytes.
        if message is None:
            message = self.responses.get(code, ("",))[0]
        self.wfile.write(f"{self.protocol_version} {code} ".encode() + message.encode("utf-8") + b"\r\n")

    def _json(self, data: Any, code: int = 200) -> None:
        self._send(code, json.dumps(data).encode())

    def do_HEAD(self) -> None:
        self.do_GET()

    def do_GET(self) -> None:
        url = urlsplit(self.path)
        params = {k: v[-1] for k, v in parse_qs(url.query).items()}
        self._answer(url.path, params)

    def do_POST(self) -> None:
        length = int(self.headers.get("Content-Length") or 0)
        body = self.rfile.read(length).decode() if length else ""
        params = {k: v[-1] for k, v in parse_qs(body).items()}
        self._answer(urlsplit(self.path).path, params)

    def _answer(self, path: str, params: dict[str, str]) -> None:
        data = HTTP_MODES[self.server.mode]()
        self.server.requests += 1
        if "status" in data:
            code, reason = data["status"]
            self._send(code, data["body"].encode(), reason, "text/html")
            return
        if path == "/version":
            self._json({"version": "hostile"})
        elif path == "/status/pipelines":
            self._json(data.get("names") or list(data["buckets"]))
        elif path.startswith("/status/details/"):
            from urllib.parse import unquote

            name = unquote(path[len("/status/details/"):])
            bucket = data["buckets"].get(name)
            self._json(bucket if bucket is not None else {"error": "not found"})
        elif path in ("/api/v1/query", "/api/v1/query_range"):
            answer = data["prometheus"](params.get("query", ""), path.endswith("_range"))
            code, payload = answer if isinstance(answer, tuple) else (200, {"status": "success", "data": answer})
            self._json(payload, code)
        else:
            self._json({"error": "not found"}, 404)


class HostileHttp(ThreadingHTTPServer):
    """A Buckets service and a Prometheus query API on 127.0.0.1 answering with HTTP_MODES[mode]."""

    daemon_threads = True
    block_on_close = False

    def __init__(self, mode: str = "healthy") -> None:
        super().__init__(("127.0.0.1", 0), _HttpHandler)
        self.mode = mode
        self.requests = 0
        self._thread = threading.Thread(target=self.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
        self._thread.start()

    def handle_error(self, request: Any, client_address: Any) -> None:
        pass  # a client that hung up mid-answer (a poll given up) is no news

    @property
    def url(self) -> str:
        """The base URL, with a password in its userinfo: it must never be shown."""
        return f"http://alice:{PASSWORD}@127.0.0.1:{self.server_address[1]}"

    def close(self) -> None:
        self.shutdown()
        self._thread.join()
        self.server_close()

    def __enter__(self) -> "HostileHttp":
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()


def write_hostile_config(directory: Path, engine: HostileEngine, http: HostileHttp | None = None,
                         stacks: dict[str, list[str]] | None = None, refresh: float = 0.5,
                         timeout: float = 3.0, announce: str = "") -> Path:
    """A dtmon config watching `engine` (site `hostile`) and, with `http`, its Buckets and Prometheus."""
    stacks = stacks or ENGINE_STACKS.get(engine.mode, DEFAULT_STACKS)
    lines = [f"refresh = {refresh}", f"timeout = {timeout}", "", "[sites.hostile]",
             f"docker = {json.dumps(engine.url)}", "[sites.hostile.stacks]"]
    for stack, services in stacks.items():
        compose = directory / f"{stack}.yml"
        compose.write_text("services:\n" + "".join(f"  {s}:\n    image: busybox:1\n" for s in services))
        lines.append(f"{json.dumps(stack)} = {json.dumps(str(compose))}")
    if http is not None:
        # datatrail-ok holds work: without a consumer it would be a problem ("consumer unknown").
        lines += ["", "[buckets]", f"url = {json.dumps(http.url)}", 'include = ["*"]',
                  "[buckets.consumers]", '"datatrail-ok" = "hostile/dt_svc"',
                  "", "[prometheus]", f"url = {json.dumps(http.url)}"]
    if announce:
        lines += ["", "[deploy]", f"announce = {json.dumps(announce)}"]
    path = directory / "hostile.toml"
    path.write_text("\n".join(lines) + "\n")
    return path


def unsafe_in(text: str) -> list[str]:
    """The characters in `text` that a terminal would act on (C0 but tab and newline, DEL, C1, bidi)."""
    return sorted({c for c in text if (ord(c) < 0x20 and c not in "\t\n") or 0x7F <= ord(c) <= 0x9F
                   or 0x202A <= ord(c) <= 0x202E or 0x2066 <= ord(c) <= 0x2069})


# ---------------------------------------------------------------------------
# Delivery: how an answer is sent (slowly, never, or 100 MB of it), for deadline and size tests.
# ---------------------------------------------------------------------------
# `HostileServer` plays the transport, where the servers above play the content.
#
# How every answer is sent is the server's `mode` (change it at any time, also from another process):
#
# - `ok`: at once;
# - `trickle`: one byte every `trickle_every` seconds (0.5), status line and headers included;
# - `trickle_body`: the status line and headers at once, then the body one byte at a time;
# - `silent`: the request is read and never answered (the connection is held until the client goes);
# - `huge`: a 200 answer of `huge_bytes` (100 MB) of valid JSON, without a Content-Length, as fast as the
#   client reads it; `huge_declared`: the same with its Content-Length;
# - `huge_error`: a 500 answer whose body is `error_bytes` (50 MB) long.
#
# What is answered comes from `routes`: a request's path (the Engine API's `/v1.xx` prefix and the query
# removed) -> a JSON-able object, `(status, bytes)`, or a function `(path, query) -> (status, headers, bytes)`;
# a key ending in `/*` matches every path under it. `engine_routes()`, `buckets_routes()` and
# `prometheus_routes()` give a small valid world to start from; tests that want hostile *content* replace
# entries. Control paths, answered in every mode: `/_hostile/mode/NAME` and `/_hostile/stats` (connections
# open now and ever).
#
# Run in the test process (`HostileServer(...)` as a context manager), or in a process of its own
# (`spawned(...)`, i.e. `python tests/hostile.py engine --socket PATH`) when a test counts its own threads
# and descriptors and must see only dtmon's.

DELIVERY_MODES = ("ok", "trickle", "trickle_body", "silent", "huge", "huge_declared", "huge_error")

# ---------------------------------------------------------------------------
# Worlds to start from.
# ---------------------------------------------------------------------------

def engine_routes(services: int = 1) -> dict[str, Any]:
    """A one-node swarm with `services` running services of stack `web` (`web_app`, `web_app1`, ...)."""
    svcs, tasks = [], []
    for i in range(services):
        name = "web_app" if i == 0 else f"web_app{i}"
        svcs.append({
            "ID": f"svc{i:04d}", "Version": {"Index": 10}, "CreatedAt": NOW, "UpdatedAt": NOW,
            "Spec": {"Name": name, "Labels": {STACK_LABEL: "web"},
                     "TaskTemplate": {"ContainerSpec": {"Image": "busybox:latest"}},
                     "Mode": {"Replicated": {"Replicas": 1}}},
            "ServiceStatus": {"RunningTasks": 1, "DesiredTasks": 1, "CompletedTasks": 0},
        })
        tasks.append({
            "ID": f"task{i:04d}", "ServiceID": f"svc{i:04d}", "NodeID": "node1", "Slot": 1,
            "Labels": {STACK_LABEL: "web"}, "DesiredState": "running",
            "Status": {"Timestamp": NOW, "State": "running", "Message": "started",
                       "ContainerStatus": {"ContainerID": f"c{i:04d}", "ExitCode": 0}},
        })
    log = b"".join(_frame(1, f"line {n}\n".encode()) for n in range(3))
    return {
        "/version": {"ApiVersion": "1.41", "Version": "20.10.0", "MinAPIVersion": "1.12"},
        "/_ping": (200, b"OK"),
        "/services": svcs,
        "/tasks": tasks,
        "/nodes": [{"ID": "node1", "Description": {"Hostname": "hostile"},
                    "Spec": {"Role": "manager", "Availability": "active"},
                    "Status": {"State": "ready"}, "ManagerStatus": {"Leader": True}}],
        "/services/*": lambda path, query: (200, {"Content-Type": "application/vnd.docker.multiplexed-stream"}, log),
    }


def _frame(stream: int, data: bytes) -> bytes:
    return bytes([stream, 0, 0, 0]) + len(data).to_bytes(4, "big") + data


def buckets_routes() -> dict[str, Any]:
    """A Buckets service with one Datatrail bucket."""
    return {
        "/version": {"version": "hostile"},
        "/status/pipelines": ["datatrail-replicator-kko-minoc"],
        "/status/details/*": {"total": 10, "queued": 4, "running": 1, "success": 5, "failure": 0},
    }


def prometheus_routes() -> dict[str, Any]:
    """A Prometheus whose every query answers one series for site `chime`."""
    def query(path: str, query: dict[str, list[str]]) -> tuple[int, dict[str, str], bytes]:
        if path.endswith("query_range"):
            data = {"resultType": "matrix", "result": [{"metric": {"site": "chime"}, "values": [[1, "5"], [2, "4"]]}]}
        else:
            data = {"resultType": "vector", "result": [{"metric": {"site": "chime", "job": "j"}, "value": [2, "1"]}]}
        return 200, {"Content-Type": "application/json"}, json.dumps({"status": "success", "data": data}).encode()

    return {"/api/v1/*": query}


ROUTES = {"engine": engine_routes, "buckets": buckets_routes, "prometheus": prometheus_routes}


# ---------------------------------------------------------------------------
# The server.
# ---------------------------------------------------------------------------


class _Gone(Exception):
    """The client closed the connection (or the server is stopping)."""


class HostileServer:
    """One hostile server on a unix socket (`socket_path`) or a loopback TCP port; a context manager."""

    def __init__(self, routes: dict[str, Any], *, socket_path: str | Path | None = None, mode: str = "ok",
                 trickle_every: float = 0.5, huge_bytes: int = 100 * 1024 * 1024,
                 error_bytes: int = 50 * 1024 * 1024, ssl_context: Any = None) -> None:
        self.routes = routes
        #: a server-side ssl.SSLContext: speak TLS (as a tcp:// engine with --tlsverify does)
        self.ssl_context = ssl_context
        self.mode = mode
        #: path prefix -> mode, for those paths instead of `mode` (e.g. only the logs trickle)
        self.path_modes: dict[str, str] = {}
        self.trickle_every = trickle_every
        self.huge_bytes = huge_bytes
        self.error_bytes = error_bytes
        self.socket_path = str(socket_path) if socket_path else None
        self.open = 0  #: connections open now
        self.connections = 0  #: connections accepted
        self.requests = 0  #: requests read
        self._lock = threading.Lock()
        self._stopping = threading.Event()
        self._server: socketserver.BaseServer | None = None
        self._thread: threading.Thread | None = None

    # -- life ---------------------------------------------------------------------

    @property
    def url(self) -> str:
        """unix:///path for an engine; http://127.0.0.1:PORT (https:// with TLS) otherwise."""
        assert self._server is not None
        if self.socket_path:
            return f"unix://{self.socket_path}"
        return f"http{'s' if self.ssl_context else ''}://127.0.0.1:{self._server.server_address[1]}"

    def start(self) -> HostileServer:
        owner = self

        class Conn(socketserver.BaseRequestHandler):
            def handle(self) -> None:
                owner._serve(self.request)

        if self.socket_path:
            with contextlib.suppress(FileNotFoundError):
                os.unlink(self.socket_path)

            class Server(socketserver.ThreadingMixIn, socketserver.UnixStreamServer):
                daemon_threads = True

            self._server = Server(self.socket_path, Conn)
        else:
            class TcpServer(socketserver.ThreadingMixIn, socketserver.TCPServer):
                daemon_threads = True
                allow_reuse_address = True

            self._server = TcpServer(("127.0.0.1", 0), Conn)
        self._thread = threading.Thread(target=self._server.serve_forever, kwargs={"poll_interval": 0.1},
                                        daemon=True, name="hostile-server")
        self._thread.start()
        return self

    def stop(self) -> None:
        self._stopping.set()
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
        if self.socket_path:
            with contextlib.suppress(FileNotFoundError):
                os.unlink(self.socket_path)

    def __enter__(self) -> HostileServer:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    # -- one connection -----------------------------------------------------------

    def _serve(self, sock: socket.socket) -> None:
        with self._lock:
            self.open += 1
            self.connections += 1
        if self.ssl_context is not None:
            sock.settimeout(5)
            try:
                sock = self.ssl_context.wrap_socket(sock, server_side=True)
            except OSError:  # a refused handshake (no client certificate, wrong CA): the client says why
                with self._lock:
                    self.open -= 1
                return
        sock.settimeout(0.2)
        buffered = b""
        try:
            while not self._stopping.is_set():
                request, buffered = self._read_request(sock, buffered)
                with self._lock:
                    self.requests += 1
                method, target = request
                path = urlsplit(target).path
                if path.startswith("/_hostile/"):
                    self._send_all(sock, self._control(path))
                    continue
                if not self._answer(sock, method, target):
                    return
        except (_Gone, OSError):
            return
        finally:
            with self._lock:
                self.open -= 1

    def _recv(self, sock: socket.socket) -> bytes:
        while True:
            if self._stopping.is_set():
                raise _Gone
            try:
                data = sock.recv(65536)
            except socket.timeout:
                continue
            if not data:
                raise _Gone
            return data

    def _read_request(self, sock: socket.socket, buffered: bytes) -> tuple[tuple[str, str], bytes]:
        while b"\r\n\r\n" not in buffered:
            if len(buffered) > 65536:
                raise _Gone
            buffered += self._recv(sock)
        head, _, rest = buffered.partition(b"\r\n\r\n")
        lines = head.decode("latin-1").split("\r\n")
        method, target = lines[0].split(" ")[:2]
        length = 0
        for line in lines[1:]:
            name, _, value = line.partition(":")
            if name.strip().lower() == "content-length":
                length = int(value.strip() or 0)
        while len(rest) < length:
            rest += self._recv(sock)
        return (method, target), rest[length:]

    def _control(self, path: str) -> bytes:
        if path.startswith("/_hostile/mode/"):
            mode = path.rsplit("/", 1)[1]
            if mode not in DELIVERY_MODES:
                return _response(404, {}, f"no mode {mode}".encode())
            self.mode = mode
            return _response(200, {"Content-Type": "application/json"}, b'{"mode": "%s"}' % mode.encode())
        stats = {"open": self.open - 1, "connections": self.connections, "requests": self.requests, "mode": self.mode}
        return _response(200, {"Content-Type": "application/json"}, json.dumps(stats).encode())

    @staticmethod
    def route_path(path: str) -> str:
        """`path` without the Engine API's version prefix."""
        parts = path.split("/")
        if len(parts) > 1 and parts[1].startswith("v") and parts[1][1:].replace(".", "").isdigit():
            return "/" + "/".join(parts[2:])
        return path

    def route(self, path: str) -> Any:
        """The route answering `path` (the Engine API's version prefix is ignored)."""
        path = self.route_path(path)
        if path in self.routes:
            return self.routes[path]
        for key, value in self.routes.items():
            if key.endswith("/*") and path.startswith(key[:-1]):
                return value
        return None

    def _answer(self, sock: socket.socket, method: str, target: str) -> bool:
        """Send one answer in the current mode; False when the connection must end after it."""
        bare = self.route_path(urlsplit(target).path)
        mode = next((m for prefix, m in self.path_modes.items() if bare.startswith(prefix)), self.mode)
        if mode == "silent":
            while True:
                self._recv(sock)  # until the client goes (_Gone)
        if mode in ("huge", "huge_declared"):
            return self._huge(sock, 200, self.huge_bytes, declared=mode == "huge_declared")
        if mode == "huge_error":
            return self._huge(sock, 500, self.error_bytes, declared=False)
        url = urlsplit(target)
        route = self.route(url.path)
        if route is None:
            status, headers, body = 404, {"Content-Type": "application/json"}, b'{"message": "page not found"}'
        elif callable(route):
            status, headers, body = route(url.path, parse_qs(url.query))
        elif isinstance(route, tuple):
            status, body = route
            headers = {}
        else:
            status, headers, body = 200, {"Content-Type": "application/json"}, json.dumps(route).encode()
        data = _response(status, headers, body if method != "HEAD" else b"", length=len(body))
        if mode == "trickle":
            self._trickle(sock, data)
        elif mode == "trickle_body":
            head, _, rest = data.partition(b"\r\n\r\n")
            self._send_all(sock, head + b"\r\n\r\n")
            self._trickle(sock, rest)
        else:
            self._send_all(sock, data)
        return True

    def _send_all(self, sock: socket.socket, data: bytes) -> None:
        view = memoryview(data)
        while view:
            if self._stopping.is_set():
                raise _Gone
            try:
                sent = sock.send(view)
            except socket.timeout:
                continue
            view = view[sent:]

    def _trickle(self, sock: socket.socket, data: bytes) -> None:
        for i in range(len(data)):
            self._send_all(sock, data[i : i + 1])
            if self._stopping.wait(self.trickle_every):
                raise _Gone

    def _huge(self, sock: socket.socket, status: int, size: int, declared: bool) -> bool:
        headers = {"Content-Type": "application/json", "Connection": "close"}
        if declared:
            headers["Content-Length"] = str(size)
        head = f"HTTP/1.1 {status} {_REASONS.get(status, 'OK')}\r\n".encode()
        head += b"".join(f"{k}: {v}\r\n".encode() for k, v in headers.items()) + b"\r\n"
        self._send_all(sock, head)
        item = b'{"ID": "' + b"x" * 1000 + b'"},'
        chunk = item * (1024 * 1024 // len(item))
        sent = 0
        self._send_all(sock, b"[")
        sent += 1
        while sent + len(chunk) < size - 1:
            self._send_all(sock, chunk)
            sent += len(chunk)
        self._send_all(sock, b'{"ID": "' + b"x" * max(0, size - sent - 11) + b'"}]')
        return False


_REASONS = {200: "OK", 404: "Not Found", 500: "Internal Server Error"}


def _response(status: int, headers: dict[str, str], body: bytes, length: int | None = None) -> bytes:
    head = f"HTTP/1.1 {status} {_REASONS.get(status, 'Status')}\r\n"
    fields = {"Content-Length": str(len(body) if length is None else length), **headers}
    head += "".join(f"{k}: {v}\r\n" for k, v in fields.items()) + "\r\n"
    return head.encode() + body


# ---------------------------------------------------------------------------
# In a process of its own.
# ---------------------------------------------------------------------------


def control(url: str, path: str, timeout: float = 5.0) -> Any:
    """GET a control path of a (possibly spawned) server; its JSON answer."""
    if url.startswith("unix://"):
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        address: Any = url[len("unix://"):]
    else:
        sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        parts = urlsplit(url)
        address = (parts.hostname, parts.port)
    with sock:
        sock.settimeout(timeout)
        sock.connect(address)
        sock.sendall(f"GET {path} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n".encode())
        data = b""
        while True:
            head, sep, body = data.partition(b"\r\n\r\n")
            if sep:
                length = int(next(line.split(b":")[1] for line in head.split(b"\r\n")
                                  if line.lower().startswith(b"content-length")))
                if len(body) >= length:
                    return json.loads(body[:length])
            more = sock.recv(65536)
            if not more:
                raise OSError("hostile server closed the control connection")
            data += more


class Spawned:
    """A hostile server in a child process."""

    def __init__(self, process: subprocess.Popen[bytes], url: str) -> None:
        self.process = process
        self.url = url

    def set_mode(self, mode: str) -> None:
        control(self.url, f"/_hostile/mode/{mode}")

    def stats(self) -> dict[str, Any]:
        """{"open": connections open besides this one, "connections", "requests", "mode"}."""
        return control(self.url, "/_hostile/stats")


@contextlib.contextmanager
def spawned(kind: str, mode: str = "ok", *, socket_path: str | Path | None = None, **options: Any) -> Iterator[Spawned]:
    """`HostileServer` with the `kind`'s routes ("engine", "buckets", "prometheus") in a child process."""
    command = [sys.executable, str(Path(__file__).resolve()), kind, "--mode", mode]
    if socket_path:
        command += ["--socket", str(socket_path)]
    for key, value in options.items():
        command += [f"--{key.replace('_', '-')}", str(value)]
    process = subprocess.Popen(command, stdout=subprocess.PIPE, stdin=subprocess.DEVNULL)
    try:
        assert process.stdout is not None
        url = process.stdout.readline().decode().strip()
        if not url:
            raise RuntimeError(f"hostile server did not start: {command}")
        yield Spawned(process, url)
    finally:
        process.terminate()
        try:
            process.wait(5)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
        if process.stdout is not None:
            process.stdout.close()
        if socket_path:
            with contextlib.suppress(FileNotFoundError):
                os.unlink(socket_path)


def main() -> None:
    parser = argparse.ArgumentParser(description="Run a hostile server; prints its URL, serves until killed.")
    parser.add_argument("kind", choices=sorted(ROUTES))
    parser.add_argument("--mode", default="ok", choices=DELIVERY_MODES)
    parser.add_argument("--socket", help="unix socket path (an engine); default: a loopback TCP port")
    parser.add_argument("--services", type=int, default=1, help="engine: how many services")
    parser.add_argument("--trickle-every", type=float, default=0.5)
    parser.add_argument("--huge-bytes", type=int, default=100 * 1024 * 1024)
    parser.add_argument("--error-bytes", type=int, default=50 * 1024 * 1024)
    args = parser.parse_args()
    routes = engine_routes(args.services) if args.kind == "engine" else ROUTES[args.kind]()
    server = HostileServer(routes, socket_path=args.socket, mode=args.mode, trickle_every=args.trickle_every,
                           huge_bytes=args.huge_bytes, error_bytes=args.error_bytes)
    import signal

    signal.signal(signal.SIGTERM, lambda *_: (server.stop(), os._exit(0)))
    with server:
        print(server.url, flush=True)
        while True:
            time.sleep(3600)


if __name__ == "__main__":
    main()
