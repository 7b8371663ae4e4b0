"""HTTP for every source, bounded in time and size: a whole-request deadline and a cap on each answer.

A socket timeout bounds one read, not a request: a server that trickles one byte every half second never
trips it. Here every connect, TLS handshake, write and read of a request is given at most the time left
before the request's deadline (and fails once it has passed), so a trickling server ends at the deadline
like a silent one, in the calling thread or task: nothing is left behind to finish later, no thread and
no socket. Answers are read as they arrive and refused once they pass `max_bytes`; an error answer is
read no further than `ERROR_BYTES` and shown as one short line.

The Docker engine (`engine.py`), the Buckets service and Prometheus all go through `get`/`aget` here.
httpx is imported by the functions that need it, so importing this module costs nothing.
"""

from __future__ import annotations

import contextvars
import json
import ssl
import threading
import time
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import httpx

#: Largest answer read from any server by default (`max_response_mb`). Measured on a 20.10 engine: ~0.9 KB
#: per service in `/services?status=true`, ~1.2 KB per task in `/tasks`, so 600 services with 5 tasks
#: each (the default history) come to ~4.3 MB; a hostile 100 MB answer is refused at this size.
DEFAULT_MAX_BYTES = 8 * 1024 * 1024
#: Bytes of an error answer read at most: its first line is all that is shown.
ERROR_BYTES = 4096
#: Characters of an error answer shown at most.
ERROR_CHARS = 200

#: The monotonic time by which the current request must be done (None: no deadline).
_deadline: contextvars.ContextVar[float | None] = contextvars.ContextVar("dtmon_deadline", default=None)


class FetchError(Exception):
    """A request that did not give a usable answer; the message is one line, without the URL."""


class TimedOut(FetchError):
    """The deadline passed before the answer was complete."""


class Unreachable(FetchError):
    """No connection, or the connection ended without a whole answer."""


class ConnectFailed(Unreachable):
    """No connection could be made (refused, no such socket, TLS refused); the message says why."""


class TooLarge(FetchError):
    """The answer is larger than the cap."""


class NotJson(FetchError):
    """The answer is not JSON."""


@dataclass(frozen=True)
class Answer:
    """A server's answer: status, headers and body (an error's body cut at ERROR_BYTES)."""

    status: int
    reason: str
    headers: Mapping[str, str]
    body: bytes
    truncated: bool = False  #: the body is the start of a longer error answer

    @property
    def ok(self) -> bool:
        return 200 <= self.status < 300

    def json(self) -> Any:
        """The body as JSON; NotJson when it is not (the message quotes its start)."""
        try:
            return json.loads(self.body)
        except (ValueError, RecursionError):
            raise NotJson(f"not JSON ({one_line(self.body, 40)!r})") from None

    def error_line(self) -> str:
        """An error answer as one short line: "HTTP 500 Internal Server Error: <message or body>"."""
        head = f"HTTP {self.status} {self.reason}".rstrip()
        said = error_message(self.body) if not self.truncated else None
        said = said if said is not None else one_line(self.body)
        return f"{head}: {said}" if said else head


def one_line(body: bytes | str, limit: int = ERROR_CHARS) -> str:
    """Text on one line, at most `limit` characters: whitespace runs become one space, other control
    characters are shown (`sanitize.clean`), and a longer text is cut with "…"."""
    from .. import sanitize

    text = body.decode("utf-8", "replace") if isinstance(body, (bytes, bytearray)) else body
    return sanitize.clean(" ".join(text[: limit * 4].split()), limit)


def error_message(body: bytes) -> str | None:
    """The message of a JSON error body (`{"message": ...}` from the Engine API, `{"error": ...}` from
    Prometheus and others, with Prometheus's `errorType` in front), on one line; None when there is none."""
    try:
        data = json.loads(body)
    except (ValueError, RecursionError):
        return None
    if not isinstance(data, dict):
        return None
    for key in ("message", "error", "detail"):
        value = data.get(key)
        if isinstance(value, str) and value.strip():
            kind = data.get("errorType")
            text = f"{kind}: {value}" if isinstance(kind, str) and kind else value
            return one_line(text)
    return None


# ---------------------------------------------------------------------------
# The deadline.
# ---------------------------------------------------------------------------


@contextmanager
def deadline(at: float) -> Iterator[float]:
    """Requests made inside must be done by monotonic time `at` (or an enclosing, earlier deadline)."""
    current = _deadline.get()
    at = at if current is None else min(at, current)
    token = _deadline.set(at)
    try:
        yield at
    finally:
        _deadline.reset(token)


def time_left(timeout: float | None, expired: type[Exception]) -> float | None:
    """The time one network operation may take: `timeout`, no more than what is left before the
    deadline; raises `expired` when the deadline has passed."""
    end = _deadline.get()
    if end is None:
        return timeout
    left = end - time.monotonic()
    if left <= 0:
        raise expired("deadline passed")
    return left if timeout is None else min(timeout, left)


# ---------------------------------------------------------------------------
# The deadline-aware network layer under httpx (httpcore's network backend interface).
# ---------------------------------------------------------------------------


def _backends() -> tuple[type, type]:
    """(sync backend, async backend) classes; built on first use so that importing costs nothing."""
    global _BACKENDS
    if _BACKENDS is not None:
        return _BACKENDS
    import httpcore

    def shut(sock: Any) -> None:
        try:
            sock.shutdown(2)  # SHUT_RDWR: a blocked handshake read returns at once
        except OSError:
            pass

    class Stream(httpcore.NetworkStream):
        def __init__(self, inner: httpcore.NetworkStream) -> None:
            self._inner = inner

        def read(self, max_bytes: int, timeout: float | None = None) -> bytes:
            return self._inner.read(max_bytes, time_left(timeout, httpcore.ReadTimeout))

        def write(self, buffer: bytes, timeout: float | None = None) -> None:
            self._inner.write(buffer, time_left(timeout, httpcore.WriteTimeout))

        def close(self) -> None:
            self._inner.close()

        def start_tls(self, ssl_context: ssl.SSLContext, server_hostname: str | None = None,
                      timeout: float | None = None) -> httpcore.NetworkStream:
            left = time_left(timeout, httpcore.ConnectTimeout)
            # The handshake is one blocking call whose socket timeout bounds each read, not the whole:
            # a watchdog ends it at the deadline.
            sock = self._inner.get_extra_info("socket")
            watchdog = threading.Timer(left, shut, (sock,)) if left is not None and sock is not None else None
            if watchdog is not None:
                watchdog.daemon = True
                watchdog.start()
            try:
                return Stream(self._inner.start_tls(ssl_context, server_hostname, left))
            finally:
                if watchdog is not None:
                    watchdog.cancel()

        def get_extra_info(self, info: str) -> Any:
            return self._inner.get_extra_info(info)

    class Backend(httpcore.NetworkBackend):
        def __init__(self) -> None:
            self._inner = httpcore.SyncBackend()

        def connect_tcp(self, host: str, port: int, timeout: float | None = None, local_address: str | None = None,
                        socket_options: Any = None) -> httpcore.NetworkStream:
            left = time_left(timeout, httpcore.ConnectTimeout)
            return Stream(self._inner.connect_tcp(host, port, left, local_address, socket_options))

        def connect_unix_socket(self, path: str, timeout: float | None = None,
                                socket_options: Any = None) -> httpcore.NetworkStream:
            left = time_left(timeout, httpcore.ConnectTimeout)
            return Stream(self._inner.connect_unix_socket(path, left, socket_options))

        def sleep(self, seconds: float) -> None:
            self._inner.sleep(seconds)

    class AsyncStream(httpcore.AsyncNetworkStream):
        def __init__(self, inner: httpcore.AsyncNetworkStream) -> None:
            self._inner = inner

        async def read(self, max_bytes: int, timeout: float | None = None) -> bytes:
            return await self._inner.read(max_bytes, time_left(timeout, httpcore.ReadTimeout))

        async def write(self, buffer: bytes, timeout: float | None = None) -> None:
            await self._inner.write(buffer, time_left(timeout, httpcore.WriteTimeout))

        async def aclose(self) -> None:
            await self._inner.aclose()

        async def start_tls(self, ssl_context: ssl.SSLContext, server_hostname: str | None = None,
                            timeout: float | None = None) -> httpcore.AsyncNetworkStream:
            # anyio bounds the whole handshake by the timeout given.
            left = time_left(timeout, httpcore.ConnectTimeout)
            return AsyncStream(await self._inner.start_tls(ssl_context, server_hostname, left))

        def get_extra_info(self, info: str) -> Any:
            return self._inner.get_extra_info(info)

    class AsyncBackend(httpcore.AsyncNetworkBackend):
        def __init__(self) -> None:
            self._inner = httpcore.AnyIOBackend()

        async def connect_tcp(self, host: str, port: int, timeout: float | None = None,
                              local_address: str | None = None, socket_options: Any = None
                              ) -> httpcore.AsyncNetworkStream:
            left = time_left(timeout, httpcore.ConnectTimeout)
            return AsyncStream(await self._inner.connect_tcp(host, port, left, local_address, socket_options))

        async def connect_unix_socket(self, path: str, timeout: float | None = None,
                                      socket_options: Any = None) -> httpcore.AsyncNetworkStream:
            left = time_left(timeout, httpcore.ConnectTimeout)
            return AsyncStream(await self._inner.connect_unix_socket(path, left, socket_options))

        async def sleep(self, seconds: float) -> None:
            await self._inner.sleep(seconds)

    _BACKENDS = (Backend, AsyncBackend)
    return _BACKENDS


_BACKENDS: tuple[type, type] | None = None

#: Sent with every request: a compressed answer could expand far past the cap within one read.
_HEADERS = {"Accept-Encoding": "identity"}


def client(base_url: str, *, uds: str | None = None, ssl_context: ssl.SSLContext | None = None,
           max_connections: int = 10, headers: Mapping[str, str] | None = None) -> httpx.Client:
    """An httpx client whose every request is bounded by the deadline in force (see `deadline`).

    `uds`: the unix socket to reach `base_url` through (a Docker engine); `ssl_context`: for https://,
    the CA and client certificate to use (default: httpx's CAs). No proxy from the environment.
    """
    import httpcore
    import httpx

    backend, _ = _backends()
    transport = httpx.HTTPTransport(verify=False, trust_env=False)  # its pool is replaced just below
    transport._pool = httpcore.ConnectionPool(
        ssl_context=_ssl(base_url, ssl_context),
        max_connections=max_connections,
        max_keepalive_connections=max_connections,
        uds=uds,
        network_backend=backend(),
    )
    return httpx.Client(base_url=base_url, transport=transport, trust_env=False, headers={**_HEADERS, **(headers or {})})


def async_client(base_url: str, *, ssl_context: ssl.SSLContext | None = None, max_connections: int = 10,
                 headers: Mapping[str, str] | None = None) -> httpx.AsyncClient:
    """`client` for asyncio: the same bounds, in the calling task."""
    import httpcore
    import httpx

    _, backend = _backends()
    transport = httpx.AsyncHTTPTransport(verify=False, trust_env=False)
    transport._pool = httpcore.AsyncConnectionPool(
        ssl_context=_ssl(base_url, ssl_context),
        max_connections=max_connections,
        max_keepalive_connections=max_connections,
        network_backend=backend(),
    )
    return httpx.AsyncClient(base_url=base_url, transport=transport, trust_env=False,
                             headers={**_HEADERS, **(headers or {})})


_SYSTEM_CONTEXT: ssl.SSLContext | None = None


def _ssl(base_url: str, given: ssl.SSLContext | None) -> ssl.SSLContext | None:
    """The TLS context for `base_url`: the one given, else (https only) httpx's default, made once (loading
    the CAs costs ~0.2 s)."""
    global _SYSTEM_CONTEXT
    if given is not None or not base_url.startswith("https://"):
        return given
    if _SYSTEM_CONTEXT is None:
        import httpx

        _SYSTEM_CONTEXT = httpx.create_ssl_context()
    return _SYSTEM_CONTEXT


# ---------------------------------------------------------------------------
# Requests.
# ---------------------------------------------------------------------------


def _too_large(limit: int) -> TooLarge:
    return TooLarge(f"answer larger than {limit / 1024 / 1024:.3g} MB (max_response_mb)")


def _declared_length(response: httpx.Response) -> int | None:
    value = response.headers.get("content-length", "")
    return int(value) if value.isdigit() and len(value) < 20 else None


def _failure(exc: Exception, seconds: float) -> FetchError:
    """An httpx error as one of ours."""
    import httpx

    if isinstance(exc, FetchError):
        return exc
    if isinstance(exc, httpx.TimeoutException):
        return TimedOut(f"timed out after {seconds:g}s")
    if isinstance(exc, (httpx.ConnectError, httpx.ReadError)) and _is_tls(exc):
        # A refused handshake; with TLS 1.3 a refused client certificate shows at the first read.
        failed = ConnectFailed(tls_reason(exc))
        failed.__cause__ = exc  # the ssl.SSLError, for whoever explains TLS failures in more detail (managers)
        return failed
    if isinstance(exc, httpx.ConnectError):
        failed = ConnectFailed(connect_reason(exc))
        failed.__cause__ = exc
        return failed
    if isinstance(exc, (httpx.RemoteProtocolError, httpx.ReadError, httpx.WriteError)):
        text = str(exc)
        if "without sending" in text or "closed" in text.lower() or not text:
            return Unreachable("connection closed without an answer")
        return Unreachable(f"{type(exc).__name__}: {one_line(text)}")
    if isinstance(exc, httpx.HTTPError):
        return Unreachable(f"{type(exc).__name__}: {one_line(str(exc))}")
    return FetchError(f"{type(exc).__name__}: {one_line(str(exc))}")


def _is_tls(exc: BaseException) -> bool:
    seen: BaseException | None = exc
    while seen is not None:
        if isinstance(seen, ssl.SSLError):
            return True
        seen = seen.__cause__ or seen.__context__
    return "[SSL" in str(exc)


def tls_reason(exc: BaseException) -> str:
    """A refused TLS handshake, short: "TLS: certificate verify failed: unable to get local issuer certificate"."""
    import re

    text = str(exc)
    match = re.search(r"\[SSL(?:: [A-Z0-9_]+)?\] (.*?)(?: \(_ssl\.c:\d+\))?$", text)
    return f"TLS: {one_line(match.group(1) if match else text, 160)}"


def connect_reason(exc: BaseException) -> str:
    """Why a connection could not be made, short: "connection refused", "no such file or directory"."""
    import re

    text = str(exc)
    match = re.search(r"\[Errno -?\d+\] ([^'\")\]]+)", text)
    if match:
        return match.group(1).strip().lower()
    cause = exc.__cause__ or exc.__context__
    if isinstance(cause, OSError) and cause.strerror:
        return cause.strerror.lower()
    return one_line(text) or "connection failed"


class Budget:
    """Bytes that several answers read at once (one poll's queries) may take together."""

    def __init__(self, max_bytes: int) -> None:
        self.max_bytes = max_bytes
        self._left = max_bytes
        self._lock = threading.Lock()

    def spend(self, size: int) -> bool:
        """Take `size` bytes; False (taking nothing) when that is more than is left."""
        with self._lock:
            if size > self._left:
                return False
            self._left -= size
            return True


def get(http: httpx.Client, path: str, *, params: Any = None, seconds: float, max_bytes: int,
        budget: Budget | None = None) -> Answer:
    """GET `path` within `seconds` (or the deadline in force, if earlier), reading at most `max_bytes`
    (and no more than is left of `budget`, shared with other requests).

    Raises TimedOut, Unreachable or TooLarge; any HTTP status is an Answer (see `Answer.ok`).
    """
    with deadline(time.monotonic() + seconds):
        try:
            with http.stream("GET", path, params=params, timeout=seconds) as response:
                body = _Body(response, max_bytes, budget)
                for chunk in response.iter_bytes():
                    if body.take(chunk):
                        break
                return body.answer()
        except Exception as exc:  # noqa: BLE001 - every failure becomes one of ours
            failure = _failure(exc, seconds)
    # Raised here, outside the handler: the original (and the frames holding what was read) is not kept.
    raise failure


async def aget(http: httpx.AsyncClient, path: str, *, params: Any = None, seconds: float, max_bytes: int) -> Answer:
    """`get` for asyncio."""
    with deadline(time.monotonic() + seconds):
        try:
            async with http.stream("GET", path, params=params, timeout=seconds) as response:
                body = _Body(response, max_bytes)
                async for chunk in response.aiter_bytes():
                    if body.take(chunk):
                        break
                return body.answer()
        except Exception as exc:  # noqa: BLE001 - as above
            failure = _failure(exc, seconds)
    raise failure


class _Body:
    """An answer's body as it arrives: all of a good one up to the cap (refused at once when its declared
    length is larger), only the start of an error. Kept as the chunks read (each at most one network
    read) and joined once complete: a growing buffer would be copied at each step and fragment the heap."""

    def __init__(self, response: httpx.Response, max_bytes: int, budget: Budget | None = None) -> None:
        self.response = response
        self.budget = budget
        self.good = 200 <= response.status_code < 300
        self.limit = max_bytes if self.good else ERROR_BYTES
        declared = _declared_length(response)
        if self.good and declared is not None and declared > max_bytes:
            raise _too_large(max_bytes)
        self.chunks: list[bytes] = []
        self.size = 0
        self.truncated = False

    def take(self, chunk: bytes) -> bool:
        """Add a chunk; True when an error's body is all that will be read, TooLarge past the cap."""
        if self.good and self.budget is not None and not self.budget.spend(len(chunk)):
            self.chunks.clear()
            raise _too_large(self.budget.max_bytes)
        if self.size + len(chunk) > self.limit:
            if self.good:
                self.chunks.clear()
                raise _too_large(self.limit)
            chunk = chunk[: self.limit - self.size]
            self.truncated = True
        self.chunks.append(chunk)
        self.size += len(chunk)
        return self.truncated

    def answer(self) -> Answer:
        body = b"".join(self.chunks)
        self.chunks.clear()
        r = self.response
        return Answer(r.status_code, r.reason_phrase, dict(r.headers), body, truncated=self.truncated)
