"""A Prometheus HTTP query API (`/api/v1/query`, `/api/v1/query_range`) over the simulated world's series.

It evaluates the PromQL subset dtmon's default queries use — selectors with label matchers,
`increase(...[d])`, `rate(...[d])`, `sum [by (labels)] (...)`, `time() - ...` — and answers
anything else as Prometheus does a parse error (HTTP 400, errorType bad_data).
"""

from __future__ import annotations

import json
import math
import re
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs, urlsplit

from .flow import Flow, Series

_UNITS = {"ms": 0.001, "s": 1, "m": 60, "h": 3600, "d": 86400, "w": 604800, "y": 31536000}
_TOKEN = re.compile(
    r"\s*(?:(?P<number>\d+(?:\.\d+)?(?:ms|[smhdwy])?)|(?P<name>[A-Za-z_:][A-Za-z0-9_:]*)"
    r'|(?P<string>"(?:[^"\\]|\\.)*")|(?P<op>=~|!=|!~|[-=(){}\[\],]))'
)


class PromQLError(ValueError):
    """A query this server cannot parse; the message reads like Prometheus's."""


def duration(text: str) -> float:
    match = re.fullmatch(r"(\d+(?:\.\d+)?)(ms|[smhdwy])?", text)
    if not match:
        raise PromQLError(f'bad duration "{text}"')
    return float(match.group(1)) * _UNITS[match.group(2) or "s"]


class _Parser:
    def __init__(self, query: str) -> None:
        self.query = query
        self.tokens: list[tuple[str, str, int]] = []
        pos = 0
        while pos < len(query):
            if query[pos:].strip() == "":
                break
            match = _TOKEN.match(query, pos)
            if not match:
                raise PromQLError(f'1:{pos + 1}: parse error: unexpected character "{query[pos:].strip()[0]}"')
            kind = match.lastgroup or ""
            self.tokens.append((kind, match.group(kind), match.start(kind)))
            pos = match.end()
        self.i = 0

    def peek(self) -> tuple[str, str, int]:
        return self.tokens[self.i] if self.i < len(self.tokens) else ("end", "", len(self.query))

    def take(self, value: str | None = None, kind: str | None = None) -> str:
        tok_kind, tok, pos = self.peek()
        if (value is not None and tok != value) or (kind is not None and tok_kind != kind):
            shown = tok or "end of input"
            raise PromQLError(f"1:{pos + 1}: parse error: unexpected {shown!r}, expected {value or kind}")
        self.i += 1
        return tok

    def parse(self) -> Any:
        node = self.expr()
        if self.peek()[0] != "end":
            _, tok, pos = self.peek()
            raise PromQLError(f"1:{pos + 1}: parse error: unexpected {tok!r}")
        return node

    def expr(self) -> Any:
        left = self.term()
        while self.peek()[1] == "-":
            self.take("-")
            left = ("sub", left, self.term())
        return left

    def term(self) -> Any:
        kind, tok, _ = self.peek()
        if kind == "number":
            self.take()
            return ("number", float(tok))
        if tok == "(":
            self.take("(")
            inner = self.expr()
            self.take(")")
            return inner
        name = self.take(kind="name")
        if name == "time" and self.peek()[1] == "(":
            self.take("(")
            self.take(")")
            return ("time",)
        if name in ("sum", "max", "min") and self.peek()[1] in ("(", "by", "without"):
            by = None
            if self.peek()[1] == "by":
                self.take("by")
                by = self.labels()
            self.take("(")
            inner = self.expr()
            self.take(")")
            if self.peek()[1] == "by":
                self.take("by")
                by = self.labels()
            return ("agg", name, by, inner)
        if name in ("increase", "rate") and self.peek()[1] == "(":
            self.take("(")
            selector = self.selector(self.take(kind="name"))
            self.take("[")
            window = duration(self.take(kind="number"))
            self.take("]")
            self.take(")")
            return ("range_fn", name, selector, window)
        return self.selector(name)

    def labels(self) -> tuple[str, ...]:
        self.take("(")
        names = []
        while self.peek()[1] != ")":
            names.append(self.take(kind="name"))
            if self.peek()[1] == ",":
                self.take(",")
        self.take(")")
        return tuple(names)

    def selector(self, name: str) -> Any:
        matchers = []
        if self.peek()[1] == "{":
            self.take("{")
            while self.peek()[1] != "}":
                label = self.take(kind="name")
                op = self.take(kind="op")
                if op not in ("=", "!=", "=~", "!~"):
                    raise PromQLError(f"1:{self.peek()[2] + 1}: parse error: unexpected {op!r} in label matching")
                value = json.loads(self.take(kind="string"))
                matchers.append((label, op, value))
                if self.peek()[1] == ",":
                    self.take(",")
            self.take("}")
        return ("selector", name, tuple(matchers))


def parse(query: str) -> Any:
    return _Parser(query).parse()


def _matches(series: Series, name: str, matchers: tuple[tuple[str, str, str], ...]) -> bool:
    if series.name != name:
        return False
    labels = dict(series.labels)
    for label, op, value in matchers:
        have = labels.get(label, "")
        ok = {"=": have == value, "!=": have != value,
              "=~": re.fullmatch(value, have) is not None, "!~": re.fullmatch(value, have) is None}[op]
        if not ok:
            return False
    return True


Sample = tuple[dict[str, str], float]


def evaluate(node: Any, series: list[Series], at: float) -> list[Sample] | float:
    """An instant vector (labels, value) or a scalar at time `at`."""
    kind = node[0]
    if kind == "number":
        return node[1]
    if kind == "time":
        return at
    if kind == "selector":
        out = []
        for s in series:
            if _matches(s, node[1], node[2]):
                value = s.value(at)
                if value is not None:
                    out.append((s.metric, value))
        return out
    if kind == "range_fn":
        _, fn, (_, name, matchers), window = node
        out = []
        for s in series:
            if _matches(s, name, matchers):
                now, before = s.value(at), s.value(at - window)
                if now is not None and before is not None:
                    delta = max(0.0, now - before)
                    labels = {k: v for k, v in s.metric.items() if k != "__name__"}
                    out.append((labels, delta if fn == "increase" else delta / window))
        return out
    if kind == "agg":
        _, op, by, inner = node
        vector = evaluate(inner, series, at)
        if not isinstance(vector, list):
            raise PromQLError("expected type instant vector in aggregation expression, got scalar")
        groups: dict[tuple[tuple[str, str], ...], list[float]] = {}
        for labels, value in vector:
            key = tuple((k, labels[k]) for k in (by or ()) if k in labels)
            groups.setdefault(key, []).append(value)
        fold = {"sum": sum, "max": max, "min": min}[op]
        return [(dict(key), float(fold(values))) for key, values in groups.items()]
    if kind == "sub":
        left, right = evaluate(node[1], series, at), evaluate(node[2], series, at)
        if isinstance(left, float) and isinstance(right, float):
            return left - right
        if isinstance(left, float):
            return [({k: v for k, v in m.items() if k != "__name__"}, left - v) for m, v in right]
        if isinstance(right, float):
            return [({k: v for k, v in m.items() if k != "__name__"}, v - right) for m, v in left]
        raise PromQLError("vector - vector is not supported by the simulated Prometheus")
    raise PromQLError(f"unsupported expression {kind}")


def _fmt(value: float) -> str:
    if math.isnan(value):
        return "NaN"
    if math.isinf(value):
        return "+Inf" if value > 0 else "-Inf"
    return str(int(value)) if value == int(value) and abs(value) < 1e15 else repr(value)


def instant(query: str, series: list[Series], at: float) -> dict[str, Any]:
    result = evaluate(parse(query), series, at)
    if isinstance(result, float):
        return {"resultType": "scalar", "result": [at, _fmt(result)]}
    return {"resultType": "vector", "result": [{"metric": m, "value": [at, _fmt(v)]} for m, v in result]}


def range_query(query: str, series: list[Series], start: float, end: float, step: float) -> dict[str, Any]:
    if step <= 0:
        raise PromQLError("zero or negative query resolution step widths are not accepted. Try a positive integer")
    if (end - start) / step > 11000:
        raise PromQLError("exceeded maximum resolution of 11,000 points per timeseries. Try decreasing the query "
                          "resolution (?step=XX)")
    node = parse(query)
    matrix: dict[tuple[tuple[str, str], ...], list[list[Any]]] = {}
    t = start
    while t <= end + 1e-9:
        result = evaluate(node, series, t)
        vector = [({}, result)] if isinstance(result, float) else result
        for labels, value in vector:
            matrix.setdefault(tuple(sorted(labels.items())), []).append([t, _fmt(value)])
        t += step
    return {"resultType": "matrix", "result": [{"metric": dict(k), "values": v} for k, v in matrix.items()]}


def _time(text: str | None, default: float) -> float:
    if not text:
        return default
    try:
        return float(text)
    except ValueError:
        from datetime import datetime

        return datetime.fromisoformat(text.replace("Z", "+00:00")).timestamp()


class _Handler(BaseHTTPRequestHandler):
    server: "_Server"
    # One request per connection: nothing lingers on a kept-alive connection after stop().
    protocol_version = "HTTP/1.0"

    def log_message(self, format: str, *args: Any) -> None:  # noqa: A002 - the stdlib's name
        pass

    def _send(self, code: int, payload: Any) -> None:
        body = json.dumps(payload, separators=(",", ":")).encode()
        self.send_response(code)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(body)

    def _params(self) -> dict[str, str]:
        url = urlsplit(self.path)
        params = {k: v[-1] for k, v in parse_qs(url.query).items()}
        if self.command == "POST":
            length = int(self.headers.get("Content-Length") or 0)
            body = self.rfile.read(length).decode() if length else ""
            params.update({k: v[-1] for k, v in parse_qs(body).items()})
        return params

    def do_GET(self) -> None:  # noqa: N802 - http.server's naming
        owner = self.server.owner
        path = urlsplit(self.path).path
        params = self._params()
        now = owner.clock()
        try:
            if path == "/api/v1/query":
                data = instant(params.get("query", ""), owner.series, _time(params.get("time"), now))
            elif path == "/api/v1/query_range":
                for key in ("start", "end", "step"):
                    if key not in params:
                        raise PromQLError(f'invalid parameter "{key}": missing')
                data = range_query(params["query"], owner.series, _time(params["start"], now),
                                   _time(params["end"], now), duration(params["step"]))
            elif path in ("/-/healthy", "/-/ready"):
                self._send(200, "Prometheus Server is Ready.")
                return
            elif path == "/api/v1/status/buildinfo":
                data = {"version": "2.42.0", "revision": "dtmon-demo", "branch": "", "buildUser": "",
                        "buildDate": "", "goVersion": "go1.19.8"}
            else:
                self.send_response(404)
                self.send_header("Content-Length", "19")
                self.end_headers()
                self.wfile.write(b"404 page not found\n")
                return
        except PromQLError as exc:
            self._send(400, {"status": "error", "errorType": "bad_data", "error": str(exc)})
            return
        except Exception as exc:  # noqa: BLE001 - answered as Prometheus answers an internal failure
            self._send(422, {"status": "error", "errorType": "execution", "error": f"{type(exc).__name__}: {exc}"})
            return
        self._send(200, {"status": "success", "data": data})

    do_POST = do_GET
    do_HEAD = do_GET


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    owner: "PrometheusServer"


class PrometheusServer:
    """The simulated Prometheus on loopback (port chosen by the OS) in a background thread."""

    def __init__(self, flow: Flow, host: str = "127.0.0.1", port: int = 0) -> None:
        self.flow = flow
        self.clock = flow.world.now
        self.series = flow.series()
        self._httpd = _Server((host, port), _Handler)
        self._httpd.owner = self
        self._thread: threading.Thread | None = None

    @property
    def url(self) -> str:
        host, port = self._httpd.server_address[:2]
        return f"http://{host}:{port}"

    def start(self) -> "PrometheusServer":
        self._thread = threading.Thread(
            target=self._httpd.serve_forever, kwargs={"poll_interval": 0.1}, daemon=True, name="demo-prometheus"
        )
        self._thread.start()
        return self

    def stop(self) -> None:
        if self._thread is not None:
            self._httpd.shutdown()
            self._thread.join()
            self._thread = None
        self._httpd.server_close()
