"""A Buckets-compatible HTTP server with in-memory state, for tests and the demo (stdlib only).

It answers the endpoints the official `workflow-core` client (1.12.x) uses::

    HEAD|GET /version                 {"version": ...}
    POST   /work?return_ids=bool      deposit a list of works (they become "queued")
    POST   /work/withdraw             a query -> the best queued work, now "running" (null when none)
    PUT    /work                      update works by id (e.g. status "success" or "failure")
    DELETE /work?ids=...              delete works by id
    POST   /view                      {"query", "projection", "skip", "limit"} -> works
    GET    /status                    counts over every bucket
    GET    /status/pipelines          bucket names
    GET    /status/details/{name}     {"total", "queued", "running", "success", "failure"}
    GET    /audit/failed|expired|stale/{days}

With `server.token` set, every request but `/version` must carry that token in the header
`x-access-token`, as the gateway in front of the public Buckets URL checks it: none answers 401, another
403. (`/version` stays open: the official client checks a base URL with a bare `HEAD /version`.)

Fault modes for tests: `server.fault = "500"` (every request answers HTTP 500), `"garbage"` (200 with a
body that is not JSON), `"slow"` (answers after `server.delay` seconds). `None` is normal service.

Run it alone with ``python -m dtmon.demo.buckets_server --port 8004`` (``--token-from VAR`` to require the
token held in $VAR; never on the command line, where `ps` would show it).
"""

from __future__ import annotations

import argparse
import hmac
import json
import os
import threading
import time
import uuid
from collections.abc import Iterable
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs, unquote, urlsplit

VERSION = "dtmon-buckets-sim 1.0"
STATUSES = ("queued", "running", "success", "failure")
FAULTS = (None, "500", "garbage", "slow")


def _matches(work: dict[str, Any], query: dict[str, Any]) -> bool:
    """A small subset of MongoDB queries: equality, `$in`, dotted keys, list fields matching any element."""
    for key, want in query.items():
        value: Any = work
        for part in key.split("."):
            value = value.get(part) if isinstance(value, dict) else None
        if isinstance(want, dict) and "$in" in want:
            choices = want["$in"]
            values = value if isinstance(value, list) else [value]
            if not any(v in choices for v in values):
                return False
        elif isinstance(value, list) and not isinstance(want, list):
            if want not in value:
                return False
        elif value != want:
            return False
    return True


class BucketsStore:
    """Works by id, thread-safe; the state the HTTP handlers and the demo share."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.works: dict[str, dict[str, Any]] = {}

    def deposit(self, works: Iterable[dict[str, Any]]) -> list[str]:
        ids = []
        with self.lock:
            for work in works:
                work = dict(work)
                work["id"] = work.get("id") or uuid.uuid4().hex[:24]
                work["status"] = "queued"
                work.setdefault("creation", time.time())
                work.setdefault("priority", 3)
                work.setdefault("attempt", 0)
                self.works[work["id"]] = work
                ids.append(work["id"])
        return ids

    def withdraw(self, query: dict[str, Any]) -> dict[str, Any] | None:
        """The queued work with the highest priority (oldest first among equals), marked running."""
        with self.lock:
            queued = [w for w in self.works.values() if w.get("status") == "queued" and _matches(w, query)]
            if not queued:
                return None
            work = min(queued, key=lambda w: (-int(w.get("priority") or 0), w.get("creation") or 0))
            work["status"] = "running"
            work["attempt"] = int(work.get("attempt") or 0) + 1
            work["start"] = time.time()
            return dict(work)

    def update(self, works: Iterable[dict[str, Any]]) -> bool:
        with self.lock:
            for work in works:
                current = self.works.get(str(work.get("id")))
                if current is None:
                    return False
                current.update(work)
        return True

    def delete(self, ids: Iterable[str]) -> bool:
        with self.lock:
            found = [self.works.pop(i, None) for i in ids]
        return any(w is not None for w in found)

    def view(self, query: dict[str, Any], skip: int = 0, limit: int | None = 100) -> list[dict[str, Any]]:
        with self.lock:
            found = [dict(w) for w in self.works.values() if _matches(w, query)]
        found = found[skip:]
        return found if limit is None else found[:limit]

    def pipelines(self) -> list[str]:
        with self.lock:
            return sorted({str(w.get("pipeline")) for w in self.works.values()})

    def details(self, pipeline: str | None = None) -> dict[str, int]:
        """Counts in the order the official CLI prints them: total, queued, running, success, failure."""
        counts = dict.fromkeys(STATUSES, 0)
        with self.lock:
            for work in self.works.values():
                if pipeline is None or work.get("pipeline") == pipeline:
                    status = work.get("status")
                    if status in counts:
                        counts[status] += 1
        return {"total": sum(counts.values()), **counts}

    # Conveniences for the demo and tests (not part of the HTTP API).

    def add(self, pipeline: str, count: int, status: str = "queued", **fields: Any) -> None:
        """Put `count` works in `pipeline` directly in `status`."""
        ids = self.deposit({"pipeline": pipeline, "site": "chime", "user": "dtmon", **fields} for _ in range(count))
        if status != "queued":
            with self.lock:
                for i in ids:
                    self.works[i]["status"] = status

    def move(self, pipeline: str, count: int, source: str, target: str) -> int:
        """Move up to `count` works of `pipeline` from one status to another; returns how many moved."""
        moved = 0
        with self.lock:
            for work in self.works.values():
                if moved >= count:
                    break
                if work.get("pipeline") == pipeline and work.get("status") == source:
                    work["status"] = target
                    moved += 1
        return moved


class _Handler(BaseHTTPRequestHandler):
    server: _Server
    protocol_version = "HTTP/1.1"

    def log_message(self, format: str, *args: Any) -> None:  # noqa: A002 - quiet by default
        pass

    # -- plumbing --------------------------------------------------------------------------

    def _body(self) -> Any:
        length = int(self.headers.get("Content-Length") or 0)
        raw = self.rfile.read(length) if length else b""
        return json.loads(raw) if raw else None

    def _send(self, status: int, payload: Any, head: bool = False) -> None:
        body = json.dumps(payload).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        if not head:
            self.wfile.write(body)

    def _fault(self, head: bool = False) -> bool:
        """Answer according to the server's fault mode; True when the request was answered."""
        fault = self.server.owner.fault
        if fault == "slow":
            if self.server.owner.stopping.wait(self.server.owner.delay):
                return True
            return False
        if fault == "500":
            self._send(500, {"error": "simulated failure"}, head)
            return True
        if fault == "garbage":
            body = b"<html>502 Bad Gateway</html>\x00{not json"
            self.send_response(200)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            if not head:
                self.wfile.write(body)
            return True
        return False

    def _authorized(self, path: str, head: bool) -> bool:
        """True when no token is required or the request carries it; else answers 401/403."""
        owner = self.server.owner
        if owner.token is None or path == "/version":
            return True
        given = self.headers.get("x-access-token")
        if given is None:
            owner.refused += 1
            self._send(401, {"error": "x-access-token required"}, head)
            return False
        if not hmac.compare_digest(given.encode(), owner.token.encode()):
            owner.refused += 1
            self._send(403, {"error": "x-access-token not valid"}, head)
            return False
        return True

    def _route(self, method: str) -> None:
        head = method == "HEAD"
        self.server.owner.requests += 1
        try:
            body = self._body() if method in ("POST", "PUT") else None
        except ValueError:
            self._send(422, {"error": "body is not JSON"})
            return
        if self._fault(head):
            return
        parts = urlsplit(self.path)
        path = parts.path.rstrip("/") or "/"
        if not self._authorized(path, head):
            return
        params = parse_qs(parts.query)
        store = self.server.owner.store
        if method in ("GET", "HEAD") and path == "/version":
            self._send(200, {"version": VERSION}, head)
        elif method == "GET" and path == "/status":
            self._send(200, store.details())
        elif method == "GET" and path == "/status/pipelines":
            self._send(200, store.pipelines())
        elif method == "GET" and path.startswith("/status/details/"):
            name = unquote(path[len("/status/details/") :])
            self._send(200, store.details(name))
        elif method == "POST" and path == "/work":
            if not isinstance(body, list):
                self._send(422, {"error": "expected a list of works"})
                return
            ids = store.deposit(body)
            wants_ids = params.get("return_ids", ["false"])[-1].lower() == "true"
            self._send(200, ids if wants_ids else True)
        elif method == "POST" and path == "/work/withdraw":
            self._send(200, store.withdraw(body if isinstance(body, dict) else {}))
        elif method == "PUT" and path == "/work":
            if not isinstance(body, list):
                self._send(422, {"error": "expected a list of works"})
                return
            updated = store.update(body)
            self._send(200 if updated else 404, True if updated else {"error": "unknown work id"})
        elif method == "DELETE" and path == "/work":
            self._send(200, store.delete(params.get("ids", [])))
        elif method == "POST" and path == "/view":
            body = body if isinstance(body, dict) else {}
            limit = body.get("limit", 100)
            self._send(200, store.view(body.get("query") or {}, int(body.get("skip") or 0), limit))
        elif method == "GET" and path.startswith("/audit/"):
            self._send(200, {})
        else:
            self._send(404, {"error": f"no route for {method} {path}"}, head)

    def do_GET(self) -> None:  # noqa: N802 - http.server's naming
        self._route("GET")

    def do_HEAD(self) -> None:  # noqa: N802
        self._route("HEAD")

    def do_POST(self) -> None:  # noqa: N802
        self._route("POST")

    def do_PUT(self) -> None:  # noqa: N802
        self._route("PUT")

    def do_DELETE(self) -> None:  # noqa: N802
        self._route("DELETE")


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    owner: BucketsServer


class BucketsServer:
    """A Buckets service on loopback in a background thread: `start()`, `url`, `store`, `fault`, `stop()`."""

    def __init__(self, host: str = "127.0.0.1", port: int = 0, store: BucketsStore | None = None,
                 token: str | None = None) -> None:
        self.store = store or BucketsStore()
        self.token = token  #: when set, required in `x-access-token` on every request but /version
        self.refused = 0  #: requests answered 401/403 for want of the token
        self.fault: str | None = None
        self.delay = 30.0  #: seconds a "slow" answer takes
        self.requests = 0  #: requests received, faults included
        self.stopping = threading.Event()
        self._httpd = _Server((host, port), _Handler)
        self._httpd.owner = self
        self._thread: threading.Thread | None = None

    @property
    def port(self) -> int:
        return self._httpd.server_address[1]

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self) -> BucketsServer:
        self._thread = threading.Thread(target=self._httpd.serve_forever, daemon=True, name="buckets-server")
        self._thread.start()
        return self

    def stop(self) -> None:
        """Stop serving, wake slow answers, close the socket."""
        self.stopping.set()
        self._httpd.shutdown()
        self._httpd.server_close()
        if self._thread is not None:
            self._thread.join(5)

    def __enter__(self) -> BucketsServer:
        return self.start()

    def __exit__(self, *_exc: object) -> None:
        self.stop()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="A Buckets-compatible server with in-memory state.")
    parser.add_argument("--port", type=int, default=8004)
    parser.add_argument("--fault", choices=[f for f in FAULTS if f], default=None)
    parser.add_argument("--token-from", metavar="VAR", help="require the token held in $VAR (x-access-token)")
    args = parser.parse_args(argv)
    token = None
    if args.token_from:
        token = os.environ.get(args.token_from)
        if not token:
            parser.error(f"--token-from {args.token_from}: ${args.token_from} is not set or empty")
    server = BucketsServer(port=args.port, token=token)
    server.fault = args.fault
    print(f"Buckets service on {server.url}", flush=True)
    try:
        server._httpd.serve_forever()
    except KeyboardInterrupt:
        pass
    finally:
        server._httpd.server_close()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
