"""The Docker Engine API of one manager, read through `bounded` (httpx): unix socket, tcp://, tcp:// + TLS.

Polls read three lists (services with status, tasks, nodes) and the detail screen one service's tasks
and logs; each request has the caller's deadline and the size cap. The API version is the engine's own
(`GET /version`, asked once per connection), as docker-py's `version="auto"` does. Actions (restart)
still use docker-py, which `SwarmCollector.client()` makes.
"""

from __future__ import annotations

import json
import re
import ssl
from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit

from . import bounded
from .bounded import FetchError

if TYPE_CHECKING:
    import httpx

    from ..config import TlsConfig


class EngineError(FetchError):
    """The engine answered with an error: `status` and its own `message` (one line)."""

    def __init__(self, text: str, status: int | None = None, message: str = "") -> None:
        super().__init__(text)
        self.status = status
        self.message = message


def tls_context(tls: TlsConfig) -> ssl.SSLContext:
    """A client TLS context from a site's `tls` table: the CA that signed the engine's certificate (the
    system's CAs without one), the client certificate and key, and whether to verify at all."""
    context = ssl.create_default_context(cafile=str(tls.ca) if tls.ca and tls.verify else None)
    if not tls.verify:
        context.check_hostname = False
        context.verify_mode = ssl.CERT_NONE
    if tls.cert and tls.key:
        context.load_cert_chain(str(tls.cert), str(tls.key))
    return context


def engine_http(url: str, tls: TlsConfig | None = None) -> httpx.Client:
    """An httpx client for the Engine API at `url` (`unix:///path`, `tcp://host:port`, `http(s)://host:port`),
    every request bounded by `bounded`'s deadline. With `tls` (or https://), tcp:// speaks TLS with it.

    This is the one place that turns a site's `docker` URL into a connection: ssh:// sites come here
    as the unix:// URL of their tunnel's local end.
    """
    if url.startswith("unix://"):
        return bounded.client("http://docker", uds=url[len("unix://"):], max_connections=4)
    parts = urlsplit(url)
    if parts.scheme not in ("tcp", "http", "https") or not parts.hostname:
        raise ValueError(f"not a Docker engine URL: {url!r}")
    secure = tls is not None or parts.scheme == "https"
    port = parts.port or (2376 if secure else 2375)
    host = f"[{parts.hostname}]" if ":" in parts.hostname else parts.hostname
    base = f"{'https' if secure else 'http'}://{host}:{port}"
    return bounded.client(base, ssl_context=tls_context(tls) if tls is not None else None, max_connections=4)


_API_VERSION = re.compile(r"1\.\d{1,3}")


class Engine:
    """One manager's Engine API; safe for one poller thread plus detail fetches."""

    def __init__(self, url: str, tls: TlsConfig | None = None, max_bytes: int = bounded.DEFAULT_MAX_BYTES) -> None:
        self.url = url
        self.max_bytes = max_bytes
        self.http = engine_http(url, tls)
        self.api_version: str | None = None

    def close(self) -> None:
        self.http.close()

    def _get(self, path: str, params: Any, seconds: float) -> bounded.Answer:
        answer = bounded.get(self.http, path, params=params, seconds=seconds, max_bytes=self.max_bytes)
        if not answer.ok:
            message = bounded.error_message(answer.body) if not answer.truncated else None
            # The engine's own message when it gives one ({"message": ...}), as the docker CLI shows it;
            # else the status and the start of the body.
            text = f"engine said: {message}" if message else f"engine said: {answer.error_line()}"
            raise EngineError(text, answer.status, message or bounded.one_line(answer.body))
        return answer

    def negotiate(self, seconds: float) -> str:
        """The engine's API version (asked once; the paths of every later request carry it)."""
        if self.api_version is None:
            data = self._get("/version", None, seconds).json()
            version = data.get("ApiVersion") if isinstance(data, dict) else None
            if not isinstance(version, str) or not _API_VERSION.fullmatch(version):
                raise EngineError(f"engine's /version has no usable ApiVersion ({bounded.one_line(str(version), 40)})")
            self.api_version = version
        return self.api_version

    def get(self, path: str, params: dict[str, Any] | None = None, *, seconds: float) -> bounded.Answer:
        """GET an API path (e.g. "/services") at the engine's version, within `seconds`, capped."""
        self.negotiate(seconds)
        return self._get(f"/v{self.api_version}{path}", params, seconds)

    def get_json(self, path: str, params: dict[str, Any] | None = None, *, seconds: float) -> Any:
        return self.get(path, params, seconds=seconds).json()

    def get_list(self, path: str, params: dict[str, Any] | None = None, *, seconds: float) -> list[Any]:
        """A list endpoint (services, tasks, nodes); EngineError when the answer is not a JSON list."""
        data = self.get_json(path, params, seconds=seconds)
        if not isinstance(data, list):
            raise EngineError(f"{path}: engine answered with something other than a list")
        return data


def filters(**by: str | list[str]) -> str:
    """The Engine API's `filters` parameter: {"label": ["a"], ...} as JSON."""
    return json.dumps({key: value if isinstance(value, list) else [value] for key, value in by.items()})


def demux_logs(raw: bytes) -> bytes:
    """Log bytes from the Engine API's multiplexed stream (8-byte frame headers: stream, 0, 0, 0, size);
    a stream without those headers (a TTY service) as it is."""
    out = bytearray()
    at = 0
    while at + 8 <= len(raw):
        head = raw[at : at + 8]
        if head[0] not in (0, 1, 2) or head[1:4] != b"\0\0\0":
            return raw if at == 0 else bytes(out) + raw[at:]
        size = int.from_bytes(head[4:8], "big")
        out += raw[at + 8 : at + 8 + size]
        at += 8 + size
    if at == 0:
        return raw
    return bytes(out) + raw[at:] if at < len(raw) else bytes(out)
