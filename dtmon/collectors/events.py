"""Live events: one site's Docker event stream, used only as a "refresh now" hint (polling stays the truth).

`GET /events` with `type=service` and `type=container` stays open and sends one JSON object per line.
Measured on the 20.10 engines here: a `label` filter would also drop every service event (their
attributes carry only the service's name, not its labels), and service events are the only ones that
reach a manager from every node; so the stream is filtered by type only, and events are matched to
the watched stacks here: a container by its `com.docker.stack.namespace` label, a service by its
`<stack>_` name prefix.

The stream has its own bounded reader (a header and chunk-size cap, a line cap, an idle limit after
which it is reopened) rather than the HTTP client the polls use: it is long-lived by nature, and no
whole-request deadline fits it. It reaches the engine through whatever the site's collector uses (a
unix socket, an ssh tunnel's local socket, tcp with TLS), asked each time it (re)connects; it reopens
by itself with backoff, and `close()` ends its thread and socket.
"""

from __future__ import annotations

import json
import socket
import ssl
import threading
import time
from collections.abc import Callable, Collection
from typing import Any
from urllib.parse import quote, urlsplit

from ..config import TlsConfig

STACK_LABEL = "com.docker.stack.namespace"
EVENT_TYPES = ("service", "container")

MAX_HEADER = 16 * 1024  #: bytes of status line and headers
MAX_LINE = 64 * 1024  #: bytes of one event; a longer line is dropped (a container's labels are ~1 KB)
IDLE_REOPEN = 300.0  #: seconds without a byte after which the stream is reopened (a link that died quietly)
BACKOFF_FIRST = 0.5  #: seconds before the first reconnect
BACKOFF_MAX = 15.0  #: seconds between reconnects at most
STEADY = 10.0  #: a connection that lived this long resets the backoff
DEBOUNCE = 0.25  #: seconds events are gathered before one hint is given
MIN_GAP = 0.5  #: seconds between two hints at least (a crash-looping service is not polled nonstop)


class StreamError(Exception):
    """The stream could not be opened or broke; the message says why in one line."""


class _Idle(StreamError):
    """Nothing came for `idle_reopen` seconds: the stream is reopened at once, without a word."""


# ---------------------------------------------------------------------------
# Pure parts.
# ---------------------------------------------------------------------------


def events_path() -> str:
    """The request path: unversioned (the engine answers it at its own API version), filtered by type."""
    return "/events?filters=" + quote(json.dumps({"type": list(EVENT_TYPES)}, separators=(",", ":")))


def concerns(event: Any, stacks: Collection[str]) -> bool:
    """Whether an engine event is about one of the watched stacks."""
    if not isinstance(event, dict):
        return False
    actor = event.get("Actor")
    attributes = actor.get("Attributes") if isinstance(actor, dict) else None
    if not isinstance(attributes, dict):
        return False
    kind = event.get("Type")
    if kind == "container":
        return attributes.get(STACK_LABEL) in stacks
    if kind == "service":
        name = attributes.get("name")
        return isinstance(name, str) and any(name.startswith(f"{stack}_") for stack in stacks)
    return False


class LineReader:
    """Splits a byte stream into lines, each at most `limit` bytes; longer ones are dropped and counted."""

    def __init__(self, limit: int = MAX_LINE) -> None:
        self.limit = limit
        self._buffer = bytearray()
        self._skipping = False  #: inside a line that is already too long
        self.dropped = 0

    def feed(self, data: bytes) -> list[bytes]:
        lines = []
        start = 0
        while True:
            end = data.find(b"\n", start)
            if end < 0:
                break
            piece = data[start:end]
            start = end + 1
            if self._skipping or len(self._buffer) + len(piece) > self.limit:
                self.dropped += 1
            elif self._buffer or piece:
                lines.append(bytes(self._buffer + piece))
            self._buffer.clear()
            self._skipping = False
        rest = data[start:]
        if not self._skipping:
            if len(self._buffer) + len(rest) > self.limit:
                self._buffer.clear()
                self._skipping = True
            else:
                self._buffer += rest
        return lines


class ChunkedDecoder:
    """HTTP/1.1 chunked transfer coding, fed as bytes arrive; raises StreamError on bad framing."""

    def __init__(self) -> None:
        self._pending = bytearray()
        self._left = 0  #: bytes of the current chunk still to come
        self._trailer = False  #: the CRLF after a chunk's data is next
        self.done = False

    def feed(self, data: bytes) -> bytes:
        self._pending += data
        out = bytearray()
        while self._pending and not self.done:
            if self._left:
                take = self._pending[: self._left]
                out += take
                del self._pending[: len(take)]
                self._left -= len(take)
                if not self._left:
                    self._trailer = True
                continue
            if self._trailer:
                if len(self._pending) < 2:
                    break
                if self._pending[:2] != b"\r\n":
                    raise StreamError("malformed chunked stream (no CRLF after a chunk)")
                del self._pending[:2]
                self._trailer = False
                continue
            end = self._pending.find(b"\r\n")
            if end < 0:
                if len(self._pending) > 64:
                    raise StreamError("malformed chunked stream (chunk size line too long)")
                break
            size_text = bytes(self._pending[:end]).split(b";", 1)[0].strip()
            try:
                size = int(size_text, 16)
            except ValueError:
                raise StreamError(f"malformed chunked stream (chunk size {size_text[:20]!r})") from None
            del self._pending[: end + 2]
            if size == 0:
                self.done = True
                break
            self._left = size
        return bytes(out)


class Debouncer:
    """When to give a hint: `debounce` after the first event of a burst, and `min_gap` after the last hint."""

    def __init__(self, debounce: float = DEBOUNCE, min_gap: float = MIN_GAP) -> None:
        self.debounce = debounce
        self.min_gap = min_gap
        self.pending_since: float | None = None
        self.last_hint = float("-inf")

    def event(self, now: float) -> None:
        if self.pending_since is None:
            self.pending_since = now

    def due_at(self) -> float | None:
        """The moment the pending hint is due; None when nothing is pending."""
        if self.pending_since is None:
            return None
        return max(self.pending_since + self.debounce, self.last_hint + self.min_gap)

    def take(self, now: float) -> bool:
        """True (and the burst is over) when a hint is due at `now`."""
        due = self.due_at()
        if due is None or now < due:
            return False
        self.pending_since = None
        self.last_hint = now
        return True


def next_backoff(previous: float | None) -> float:
    """The wait before the next reconnect: doubling from BACKOFF_FIRST up to BACKOFF_MAX."""
    return BACKOFF_FIRST if previous is None else min(BACKOFF_MAX, previous * 2)


# ---------------------------------------------------------------------------
# Connecting.
# ---------------------------------------------------------------------------


def _tls_context(tls: TlsConfig) -> ssl.SSLContext:
    context = ssl.create_default_context(cafile=str(tls.ca) if tls.ca else None)
    if tls.cert and tls.key:
        context.load_cert_chain(str(tls.cert), str(tls.key))
    if not tls.verify:
        context.check_hostname = False
        context.verify_mode = ssl.CERT_NONE
    return context


def open_socket(base_url: str, tls: TlsConfig | None, timeout: float) -> socket.socket:
    """A connected socket to the engine at `base_url` (unix://, tcp://, http://, https://)."""
    parts = urlsplit(base_url)
    if parts.scheme == "unix":
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        sock.settimeout(timeout)
        try:
            sock.connect(parts.path)
        except OSError:
            sock.close()
            raise
        return sock
    if parts.scheme not in ("tcp", "http", "https") or not parts.hostname:
        raise StreamError(f"cannot follow events at {base_url!r}")
    default_port = 2376 if tls is not None or parts.scheme == "https" else 2375
    sock = socket.create_connection((parts.hostname, parts.port or default_port), timeout)
    # A link that dies without a word (no FIN, no RST) is found within ~30 s, not the kernel's 2 hours.
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_KEEPALIVE, 1)
    for option, value in (("TCP_KEEPIDLE", 15), ("TCP_KEEPINTVL", 5), ("TCP_KEEPCNT", 3)):
        if hasattr(socket, option):
            sock.setsockopt(socket.IPPROTO_TCP, getattr(socket, option), value)
    if tls is not None or parts.scheme == "https":
        context = _tls_context(tls) if tls is not None else ssl.create_default_context()
        try:
            sock = context.wrap_socket(sock, server_hostname=parts.hostname)
        except OSError:
            sock.close()
            raise
    return sock


def read_head(sock: socket.socket) -> tuple[int, dict[str, str], bytes]:
    """Status code, headers (lower-cased names) and the bytes already read past them."""
    data = bytearray()
    while b"\r\n\r\n" not in data:
        if len(data) > MAX_HEADER:
            raise StreamError(f"answer headers longer than {MAX_HEADER} bytes")
        chunk = sock.recv(4096)
        if not chunk:
            raise StreamError("connection closed before an answer")
        data += chunk
    head, _, rest = bytes(data).partition(b"\r\n\r\n")
    lines = head.decode("latin-1").split("\r\n")
    status = lines[0].split(" ", 2)
    if len(status) < 2 or not status[0].startswith("HTTP/") or not status[1].isdigit():
        raise StreamError("not an HTTP answer")
    headers = {}
    for line in lines[1:]:
        name, _, value = line.partition(":")
        headers[name.strip().lower()] = value.strip()
    return int(status[1]), headers, rest


# ---------------------------------------------------------------------------
# The stream.
# ---------------------------------------------------------------------------


class EventStream:
    """Follows one site's events in a thread of its own; calls `on_hint()` (debounced) when a watched
    stack changes, and `on_state(connected, error)` when the stream opens or breaks.

    `endpoint(timeout)` gives the engine's base URL and client TLS each time the stream (re)opens: the
    site collector's answer, so an ssh site's tunnel (or whichever manager answers) is followed, not a
    fixed path.
    """

    def __init__(
        self,
        name: str,
        endpoint: Callable[[float], tuple[str, TlsConfig | None]],
        stacks: Collection[str],
        on_hint: Callable[[], None],
        on_state: Callable[[bool, str | None], None] = lambda _connected, _error: None,
        *,
        timeout: float = 5.0,
        debounce: float = DEBOUNCE,
        min_gap: float = MIN_GAP,
        idle_reopen: float = IDLE_REOPEN,
    ) -> None:
        self.name = name
        self.endpoint = endpoint
        self.stacks = frozenset(stacks)
        self.on_hint = on_hint
        self.on_state = on_state
        self.timeout = timeout
        self.debounce = debounce
        self.min_gap = min_gap
        self.idle_reopen = idle_reopen
        self.connected = False
        self.error: str | None = None  #: why the stream is not open, when it is not
        self.connections = 0  #: times the stream was opened
        self.events = 0  #: events about the watched stacks received
        self.dropped = 0  #: lines too long or not JSON
        self._stop = threading.Event()
        self._reopen = threading.Event()
        self.base_url: str | None = None  #: where the stream was last opened
        self._sock: socket.socket | None = None
        self._sock_lock = threading.Lock()
        self._thread: threading.Thread | None = None

    def start(self) -> EventStream:
        self._thread = threading.Thread(target=self._run, daemon=True, name=f"events-{self.name}")
        self._thread.start()
        return self

    def close(self, wait: float = 5.0) -> None:
        """End the stream: its socket is shut down, its thread joined."""
        self._stop.set()
        with self._sock_lock:
            sock = self._sock
        if sock is not None:
            try:
                sock.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass
        if wait:
            self.join(wait)

    def join(self, wait: float = 5.0) -> None:
        """Wait (at most `wait` seconds) for the stream's thread to end after `close()`."""
        if self._thread is not None and self._thread is not threading.current_thread():
            self._thread.join(wait)

    def reopen(self) -> None:
        """Reopen the stream at once, quietly, asking `endpoint` again (the site answers from another manager)."""
        self._reopen.set()
        with self._sock_lock:
            sock = self._sock
        if sock is not None:
            try:
                sock.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass

    @property
    def alive(self) -> bool:
        """True while the stream's thread runs."""
        return self._thread is not None and self._thread.is_alive()

    # -- the thread ---------------------------------------------------------------

    def _set_state(self, connected: bool, error: str | None) -> None:
        changed = connected != self.connected or (not connected and error != self.error)
        self.connected, self.error = connected, error
        if changed:
            try:
                self.on_state(connected, error)
            except Exception:  # noqa: BLE001 - a callback's failure must not end the stream
                pass

    def _hint(self) -> None:
        try:
            self.on_hint()
        except Exception:  # noqa: BLE001 - as above
            pass

    def _run(self) -> None:
        backoff: float | None = None
        while not self._stop.is_set():
            opened = time.monotonic()
            quiet = False
            try:
                self._follow()
                reason = "stream ended"
            except _Idle as exc:  # a quiet stream is the usual case: reopened at once, the chip unchanged
                quiet, reason = True, str(exc)
            except (OSError, StreamError, ValueError) as exc:
                reason = _describe(exc)
            except Exception as exc:  # noqa: BLE001 - the stream's thread never dies of a surprise
                reason = f"{type(exc).__name__}: {exc}"
            finally:
                with self._sock_lock:
                    sock, self._sock = self._sock, None
                if sock is not None:
                    sock.close()
            if self._stop.is_set():
                break
            if self._reopen.is_set():  # asked for: no word, no backoff
                self._reopen.clear()
                quiet = True
            if quiet:
                continue
            self._set_state(False, reason)
            backoff = None if time.monotonic() - opened >= STEADY and self.connections else backoff
            backoff = next_backoff(backoff)
            self._stop.wait(backoff)
        self.connected = False

    def _follow(self) -> None:
        """One connection: open, read events until it ends; raises on failure."""
        base_url, tls = self.endpoint(self.timeout)
        self.base_url = base_url
        sock = open_socket(base_url, tls, self.timeout)
        with self._sock_lock:
            self._sock = sock
        if self._stop.is_set():
            return
        sock.sendall(f"GET {events_path()} HTTP/1.1\r\nHost: docker\r\nUser-Agent: dtmon\r\n\r\n".encode())
        status, headers, rest = read_head(sock)
        if status != 200:
            body = rest[:200].decode("utf-8", "replace")
            try:
                message = json.loads(body).get("message", body)
            except (ValueError, AttributeError):
                message = body
            raise StreamError(f"engine answered HTTP {status}: {' '.join(str(message).split())[:120]}")
        chunked = "chunked" in headers.get("transfer-encoding", "").lower()
        decoder = ChunkedDecoder() if chunked else None
        lines = LineReader()
        debouncer = Debouncer(self.debounce, self.min_gap)
        self.connections += 1
        self._set_state(True, None)
        if self.connections > 1:
            self._hint()  # whatever changed while the stream was closed is seen by a poll now
        debouncer.last_hint = time.monotonic()
        last_byte = time.monotonic()
        data = rest
        while not self._stop.is_set():
            if data:
                last_byte = time.monotonic()
                payload = decoder.feed(data) if decoder else data
                for line in lines.feed(payload):
                    self._take(line, debouncer)
                self.dropped = self.dropped + lines.dropped
                lines.dropped = 0
                if decoder is not None and decoder.done:
                    return
            now = time.monotonic()
            if debouncer.take(now):
                self._hint()
            if now - last_byte >= self.idle_reopen:
                raise _Idle(f"no event for {self.idle_reopen:g}s")
            due = debouncer.due_at()
            wait = min(1.0, self.idle_reopen - (now - last_byte))
            if due is not None:
                wait = min(wait, max(0.01, due - now))
            sock.settimeout(wait)
            try:
                data = sock.recv(65536)
            except (socket.timeout, TimeoutError):
                data = b""
                continue
            if not data:
                return

    def _take(self, line: bytes, debouncer: Debouncer) -> None:
        try:
            event = json.loads(line)
        except ValueError:
            self.dropped += 1
            return
        if concerns(event, self.stacks):
            self.events += 1
            debouncer.event(time.monotonic())


def _describe(exc: BaseException) -> str:
    """One line for a failed stream."""
    if isinstance(exc, StreamError):
        return str(exc)
    if isinstance(exc, ssl.SSLError):
        return f"TLS: {exc.reason or exc}"
    if isinstance(exc, (socket.timeout, TimeoutError)):
        return "timed out"
    if isinstance(exc, FileNotFoundError):
        return "connection failed: no such socket"
    if isinstance(exc, ConnectionRefusedError):
        return "connection failed: connection refused"
    if isinstance(exc, OSError):
        return f"connection failed: {exc.strerror or exc}"
    return str(exc)
