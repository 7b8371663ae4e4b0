"""Which manager of a site dtmon talks to, and how: endpoints in order, ssh tunnels, TLS, and why one failed.

A site lists one or more managers (`docker = [...]`). Each poll asks them in order and keeps the first
answer; a manager that is down, is a worker, or is cut off from the swarm's quorum is passed over and
its reason kept. This module knows nothing of the Engine API's payloads: it says where to connect
(a URL any HTTP client can use, plus TLS files) and turns a failure into one line for people.
"""

from __future__ import annotations

import ssl
from dataclasses import dataclass
from urllib.parse import urlsplit

from ..config import SiteConfig, TlsConfig
from ..redact import redact_url
from .tunnel import SshTunnel, TunnelError

#: Why a manager could not answer.
DOWN = "down"  #: nothing answered (refused, timed out, tunnel down, TLS refused)
NOT_MANAGER = "not a manager"  #: the engine answered but is a worker, or not in a swarm
NO_QUORUM = "no quorum"  #: a manager that cannot reach a leader: the swarm lost its quorum

#: What a site's outage is called when no manager answered (SiteStatus.outage).
UNREACHABLE = "unreachable"
RECONNECTING = "reconnecting"
NO_LEADER = "no leader"  #: most managers are up, but none is the leader yet (an election after a leader died)


@dataclass(frozen=True)
class Attempt:
    """One manager asked during a poll, and why it could not answer."""

    url: str  #: the manager as configured
    kind: str  #: DOWN, NOT_MANAGER or NO_QUORUM
    reason: str  #: one line

    def __str__(self) -> str:
        return f"{redact_url(self.url)}: {self.reason}"


class NoManagerAnswered(Exception):
    """Every manager of a site failed; the message says why, the swarm's quorum first.

    `managers` is how many managers the swarm has, as far as dtmon knows (the last node list, or the
    configured ones): when those that answer "no leader" are a majority, a leader is being elected;
    otherwise the swarm has lost its quorum.
    """

    def __init__(self, attempts: list[Attempt], managers: int = 0) -> None:
        self.attempts = tuple(attempts)
        self.managers = max(managers, len(self.attempts))
        super().__init__(summarize(self.attempts, self.managers))

    @property
    def outage(self) -> str:
        return outage(self.attempts, self.managers)


def _leaderless(attempts: tuple[Attempt, ...]) -> int:
    return sum(1 for a in attempts if a.kind == NO_QUORUM)


def outage(attempts: tuple[Attempt, ...], managers: int = 0) -> str:
    """The name of a site's outage when none of its managers answered."""
    leaderless = _leaderless(attempts)
    if leaderless:
        return NO_LEADER if leaderless > max(managers, len(attempts)) / 2 else NO_QUORUM
    if attempts and all(a.reason.startswith("reconnecting") for a in attempts):
        return RECONNECTING
    return UNREACHABLE


def summarize(attempts: tuple[Attempt, ...], managers: int = 0) -> str:
    """One line for a site none of whose managers answered."""
    kind = outage(attempts, managers)
    if len(attempts) == 1 and kind not in (NO_QUORUM, NO_LEADER):
        return attempts[0].reason
    each = "; ".join(str(a) for a in attempts)
    total = max(managers, len(attempts))
    up = _leaderless(attempts)
    if kind == NO_QUORUM:
        return (f"the swarm has lost its quorum: {up} of {total} managers up, too few to elect a leader, so no "
                f"manager can answer; {each}")
    if kind == NO_LEADER:
        return f"the swarm has no leader yet ({up} of {total} managers up: electing one); {each}"
    return f"no manager answered: {each}"


# ---------------------------------------------------------------------------
# Reading a failure.
# ---------------------------------------------------------------------------


def _chain(exc: BaseException):
    """The exception and everything it wraps (causes, contexts, and exceptions among its args)."""
    seen: set[int] = set()
    todo: list[BaseException] = [exc]
    while todo:
        current = todo.pop(0)
        if id(current) in seen:
            continue
        seen.add(id(current))
        yield current
        for nested in (current.__cause__, current.__context__, *getattr(current, "args", ())):
            if isinstance(nested, BaseException):
                todo.append(nested)
        reason = getattr(current, "reason", None)  # urllib3's MaxRetryError keeps the cause here
        if isinstance(reason, BaseException):
            todo.append(reason)


def engine_message(exc: BaseException) -> tuple[int | None, str]:
    """(HTTP status, the engine's message) of an API error from `engine.Engine`, docker-py or httpx; (None, "")
    otherwise."""
    from .engine import EngineError

    for current in _chain(exc):
        if isinstance(current, EngineError) and current.status is not None and current.status >= 400:
            return current.status, current.message
        response = getattr(current, "response", None)
        status = getattr(response, "status_code", None)
        if isinstance(status, int) and status >= 400:
            explanation = getattr(current, "explanation", None)
            if not explanation:
                try:
                    explanation = response.json().get("message", "")
                except Exception:
                    explanation = getattr(response, "text", "") or ""
            return status, str(explanation)
    return None, ""


def tls_problem(exc: BaseException, tls: TlsConfig | None) -> str | None:
    """One line for a failed TLS handshake (wrong CA, no client certificate, an expired one), else None."""
    text = ""
    for current in _chain(exc):
        if isinstance(current, ssl.SSLError):
            text = f"{getattr(current, 'reason', '') or ''} {current}"
            break
    else:
        joined = " ".join(str(c) for c in _chain(exc))
        if "SSL" not in joined and "TLS" not in joined and "tlsv" not in joined:
            return None
        text = joined
    lower = text.lower()
    ca = f" ({tls.ca})" if tls is not None and tls.ca else ""
    cert = f" ({tls.cert})" if tls is not None and tls.cert else ""
    if "certificate has expired" in lower:
        return "TLS: the engine's certificate has expired: refused"
    if "certificate expired" in lower:
        return f"TLS: the engine refused our client certificate{cert}: it has expired"
    if "certificate verify failed" in lower or "self-signed certificate" in lower or "unable to get local issuer" in lower:
        detail = text.split("certificate verify failed:", 1)[-1].strip(" )'\"") if "verify failed" in lower else ""
        return f"TLS: the engine's certificate is not signed by our CA{ca}: refused" + (f" ({detail})" if detail else "")
    refused = ("certificate required", "handshake failure", "unknown ca", "bad certificate", "certificate unknown")
    if any(word in lower for word in refused):
        # An engine (Go) says "bad certificate" for a missing, expired or foreign client certificate alike:
        # what is wrong is read from our own side.
        if tls is None or not tls.cert:
            return ("TLS: the engine requires a client certificate: set `cert` and `key` in the site's tls "
                    "(or a tls directory with cert.pem and key.pem)")
        validity = _validity(tls.cert)
        if validity:
            return f"TLS: the engine refused our client certificate{cert}: {validity}"
        return f"TLS: the engine refused our client certificate{cert}: not signed by a CA it trusts (or not for client use)"
    if "wrong version number" in lower or "record layer failure" in lower or "packet length too long" in lower:
        return "TLS: the engine did not answer in TLS (is it listening without --tlsverify?)"
    return f"TLS handshake failed: {' '.join(text.split())[:200]}"


def _validity(cert) -> str | None:
    """"it has expired (...)" or "it is not valid yet (...)" for a PEM certificate file, else None."""
    import time as _time

    try:
        decoded = ssl._ssl._test_decode_cert(str(cert))  # type: ignore[attr-defined]  # the stdlib's own PEM reader
        not_before = ssl.cert_time_to_seconds(decoded["notBefore"])
        not_after = ssl.cert_time_to_seconds(decoded["notAfter"])
    except Exception:
        return None
    now = _time.time()
    if now > not_after:
        return f"it has expired (not after {decoded['notAfter']})"
    if now < not_before:
        return f"it is not valid yet (not before {decoded['notBefore']})"
    return None


def classify(exc: BaseException, describe) -> tuple[str, str]:
    """(kind, one line) for a manager that could not answer; `describe` turns other failures into a line."""
    status, message = engine_message(exc)
    lower = message.lower()
    if status is not None:
        if "does not have a leader" in lower or "lost quorum" in lower or "no leader" in lower:
            return NO_QUORUM, f"no leader: {message.splitlines()[0][:200]}"
        if "not a swarm manager" in lower:
            if "worker nodes" in lower:
                return NOT_MANAGER, "a worker, not a manager"
            return NOT_MANAGER, "not part of a swarm"
    return DOWN, describe(exc)


# ---------------------------------------------------------------------------
# One manager endpoint.
# ---------------------------------------------------------------------------


class Endpoint:
    """One manager URL of a site: the URL to connect to (through a supervised ssh tunnel for ssh://)."""

    def __init__(self, url: str, site: SiteConfig, connect_timeout: float) -> None:
        self.url = url
        self.scheme = urlsplit(url).scheme
        self.tls = site.tls if self.scheme in ("tcp", "https") else None
        self.tunnel = (
            SshTunnel(url, site.socket, site.ssh_config, connect_timeout) if self.scheme == "ssh" else None
        )

    def __repr__(self) -> str:
        return f"Endpoint({redact_url(self.url)!r})"

    def base_url(self, timeout: float) -> str:
        """Where an HTTP client connects: the URL itself, or the tunnel's local socket (raises TunnelError)."""
        if self.tunnel is not None:
            return self.tunnel.ensure(timeout)
        return self.url

    def cli_host(self, timeout: float) -> list[str]:
        """`--host URL` and TLS flags for the docker CLI to reach this manager (through the same tunnel)."""
        argv = ["--host", self.base_url(timeout)]
        tls = self.tls
        if tls is not None:
            argv.append("--tlsverify" if tls.verify else "--tls")
            if tls.ca:
                argv.append(f"--tlscacert={tls.ca}")
            if tls.cert:
                argv.append(f"--tlscert={tls.cert}")
            if tls.key:
                argv.append(f"--tlskey={tls.key}")
        return argv

    def explain(self, exc: BaseException, describe) -> tuple[str, str]:
        """(kind, one line) for a failure of this manager."""
        if isinstance(exc, TunnelError):
            return DOWN, str(exc)
        problem = tls_problem(exc, self.tls) if self.tls is not None or self.scheme == "tcp" else None
        if problem:
            return DOWN, problem
        kind, reason = classify(exc, describe)
        if kind == DOWN and self.tunnel is not None:
            said = self.tunnel.failed() or self.tunnel.channel_error()
            if said:
                return DOWN, said
        return kind, reason

    def close(self) -> None:
        if self.tunnel is not None:
            self.tunnel.close()
