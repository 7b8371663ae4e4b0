"""Buckets collector: queue depths from the workflow system's Buckets service (httpx, async), linked to consumers.

The Buckets REST API as the official `workflow-core` client uses it: `GET /status/pipelines` lists
bucket names, `GET /status/details/{name}` gives `{"total", "queued", "running", "success", "failure"}`.
Like that client, it sends the token of WORKFLOW_HTTP_TOKEN & co in `x-access-token` (see
`dtmon.workflow_env`), and with several base URLs uses the first that answers `HEAD /version`.

Each bucket is consumed by swarm services named by a pattern "site/stack_service" (shell globs allowed
on both sides). `[buckets.consumers]` (bucket glob -> pattern) is tried first, in file order; then the
defaults, which follow Datatrail's naming:

- `datatrail-replicator-{site}-minoc` -> `{site}/datatrail-client_replicator`
- `datatrail-replica-heal` -> `*/datatrail-client_*_healer` (both healers at every watched site: heal works
  carry a site, so a healer down anywhere stalls part of the queue)
- `datatrail-state-updater` -> `*/datatrail-daemons_state_updater` (wherever the daemons stack is watched:
  chime)
- `datatrail-unregistered-datasets` -> `*/datatrail-client_reattempt_unregistered` (the operations page: it
  performs the works of that results database, at every site)

Datatrail's other buckets (`datatrail-deleter-{site}`, `datatrail-registration`, `datatrail-register-dataset`,
`datatrail-deletion-notifications`) have no documented consumer: with work waiting they are shown as
"consumer unknown", a problem until `[buckets.consumers]` maps them.
"""

from __future__ import annotations

import asyncio
import re
import time
from collections.abc import Callable, Iterable, Mapping
from dataclasses import replace
from datetime import datetime, timezone
from fnmatch import fnmatchcase
from typing import TYPE_CHECKING, Any
from urllib.parse import quote

from .. import sanitize
from ..config import BucketsConfig, Config
from ..model import RUNNING, STATE_RANK, BucketsReport, BucketStatus, SiteStatus
from ..redact import redact_url, scrub, url_secrets
from ..workflow_env import TOKEN_HEADER, TOKEN_VARS, Token, find_token
from . import bounded
from .background import in_background

if TYPE_CHECKING:  # httpx is imported where a poll needs it: `dtmon status` without [buckets] never pays for it
    import httpx

#: Detail requests in flight at once.
CONCURRENCY = 8

COUNT_KEYS = ("queued", "running", "success", "failure")

#: Seconds between looks back at the first base URL while a later one is in use.
RECHECK_FIRST = 300.0

_DEFAULT_CONSUMERS: tuple[tuple[re.Pattern[str], str], ...] = (
    (re.compile(r"datatrail-replicator-(?P<site>[A-Za-z0-9_.]+)-minoc"), "{site}/datatrail-client_replicator"),
    (re.compile(r"datatrail-replica-heal"), "*/datatrail-client_*_healer"),
    (re.compile(r"datatrail-state-updater"), "*/datatrail-daemons_state_updater"),
    (re.compile(r"datatrail-unregistered-datasets"), "*/datatrail-client_reattempt_unregistered"),
)

#: The problem of a bucket with work waiting that no known service consumes.
UNKNOWN_CONSUMER = "consumer unknown: map it in [buckets.consumers]"


class BucketsError(Exception):
    """The Buckets service could not be read; the message names the URL and what went wrong."""


def unauthorized_text(status: int, token: Token | None, token_env: str | None, token_note: str) -> str:
    """What a 401/403 means for the operator: which variable to set, or that the token was refused."""
    if token is not None:
        return f"unauthorized: the token in ${token.variable} was refused (HTTP {status})"
    if "set but empty" in token_note:
        return f"unauthorized: {token_note.split(':')[0]} (HTTP {status})"
    wanted = f"{token_env} or {TOKEN_VARS[0]}" if token_env and token_env != TOKEN_VARS[0] else TOKEN_VARS[0]
    return f"unauthorized: set {wanted} (HTTP {status})"


# ---------------------------------------------------------------------------
# Pure functions.
# ---------------------------------------------------------------------------


def select(names: Iterable[str], include: Iterable[str]) -> list[str]:
    """The bucket names matching any of the `include` globs, sorted, each once."""
    patterns = tuple(include)
    return sorted({name for name in names if any(fnmatchcase(name, p) for p in patterns)})


def consumer_for(bucket: str, overrides: Mapping[str, str] | None = None) -> str | None:
    """The "site/stack_service" pattern of the services consuming `bucket`: overrides first, then defaults."""
    for glob, consumer in (overrides or {}).items():
        if fnmatchcase(bucket, glob):
            return consumer
    for pattern, template in _DEFAULT_CONSUMERS:
        match = pattern.fullmatch(bucket)
        if match:
            return template.format(**match.groupdict())
    return None


def parse_counts(name: str, data: Any) -> BucketStatus:
    """A bucket's counts from its `/status/details` JSON; ValueError when the shape is not the API's."""
    if not isinstance(data, dict):
        raise ValueError(f"expected a JSON object of counts, got {type(data).__name__}")
    if "error" in data and not all(key in data for key in COUNT_KEYS):
        raise ValueError(f"the service answered an error: {sanitize.clean(data['error'], 200)}")
    missing = [key for key in COUNT_KEYS if key not in data]
    if missing:  # read as 0 they would make a broken answer look like an empty, healthy queue
        keys = ", ".join(sanitize.clean(k, 40) for k in list(data)[:8])
        raise ValueError(f"missing {', '.join(repr(k) for k in missing)} (the answer has: {keys or 'nothing'})")
    counts: dict[str, int] = {}
    for key in (*COUNT_KEYS, "total"):
        value = data.get(key)
        if value is None and key == "total":
            continue
        # A negative count, a fraction or a 10**4000 is the server's error, never a row (nor a float overflow
        # in the rate, after seconds of big-integer arithmetic).
        counts[key] = sanitize.count(value, key)
    total = counts.get("total", sum(counts[k] for k in COUNT_KEYS))
    return BucketStatus(name=sanitize.name(name), total=total, **{k: counts[k] for k in COUNT_KEYS})


def _worst(states: Iterable[str]) -> str:
    """The worst consumer state: anything but running (stopped included: a consumer scaled to 0 does no work)."""
    return min(states, key=lambda s: (s == RUNNING, STATE_RANK.get(s, -1)))


def consumer_services(pattern: str, sites: Iterable[SiteStatus]) -> tuple[tuple[str, str], ...] | None:
    """("site/stack_service", state) of every watched service matching `pattern`.

    None when the consumer's state is unknown here: no site matching the pattern has been polled
    successfully, or none of them watches the consumer's stack (the part before the first "_").
    """
    site_glob, _, service_glob = pattern.partition("/")
    stack_glob = service_glob.split("_", 1)[0] if "_" in service_glob else "*"
    watching = [
        site
        for site in sites
        if fnmatchcase(site.name, site_glob)
        and (site.polled_at is not None or site.reachable)
        and any(fnmatchcase(stack.name, stack_glob) for stack in site.stacks)
    ]
    if not watching:
        return None
    return tuple(
        (f"{site.name}/{service.name}", service.state)
        for site in watching
        for service in site.services
        if fnmatchcase(service.name, service_glob)
    )


def link_consumers(report: BucketsReport, sites: Iterable[SiteStatus]) -> BucketsReport:
    """The report with each bucket's consumer state and problem filled in from the sites' services.

    A bucket with work queued is a problem when any of its consumers is not running (down, degraded, crash
    loop, missing, stopped: each is named with its site), or when no consumer is known for it at all. A
    consumer on a site that is not watched here has an unknown state and is not judged.
    """
    sites = tuple(sites)
    linked = []
    for bucket in report.buckets:
        state: str | None = None
        matches: tuple[tuple[str, str], ...] = ()
        if bucket.consumer:
            found = consumer_services(bucket.consumer, sites)
            if found is not None:
                matches = found
                state = _worst(s for _, s in found) if found else "missing"
        problem = None
        if bucket.queued > 0 and state is not None and state != RUNNING:
            bad = [f"{key} {s}" for key, s in matches if s != RUNNING]
            who = ", ".join(bad) if bad else f"{bucket.consumer} missing"
            problem = f"{bucket.queued} queued, consumer not running: {who}"
        elif bucket.queued > 0 and not bucket.consumer:
            problem = f"{bucket.queued} queued, {UNKNOWN_CONSUMER}"
        linked.append(replace(bucket, consumer_state=state, consumers=matches, problem=problem))
    return replace(report, buckets=tuple(linked))


# ---------------------------------------------------------------------------
# The collector.
# ---------------------------------------------------------------------------


class BucketsCollector:
    """Polls one Buckets service; `poll()` never raises and keeps the last good buckets when it fails."""

    def __init__(self, cfg: BucketsConfig, timeout: float, transport: httpx.AsyncBaseTransport | None = None,
                 max_bytes: int = bounded.DEFAULT_MAX_BYTES):
        self.cfg = cfg
        self.timeout = timeout
        self.max_bytes = max_bytes  #: the largest answer read
        self._transport = transport
        self.last = BucketsReport(url=redact_url(cfg.url), reachable=False, error="not polled yet")
        self.token, self.token_note = find_token(cfg.token_env)
        #: What no report may show: the passwords of the URLs (reports name a URL as redact_url shows it).
        self._secrets = [secret for url in cfg.urls for secret in url_secrets(url)]
        if self.token is not None:  # a server that echoes it (in a reason phrase, a body quoted) shows it not
            self._secrets.append(self.token.value)
        #: The base URL in use: the first of `cfg.urls` that answered `HEAD /version` at the last look.
        self.active = cfg.url
        self._chosen_at: float | None = None  #: monotonic time of the last look; None: look before polling
        #: Paths of the requests sent and not yet answered in this poll, for the timeout message.
        self._unanswered: list[str] = []
        self._verify: Any = None  #: TLS context, made once (loading CAs costs ~0.2 s); none for http://

    async def poll(self) -> BucketsReport:
        """One poll of every watched bucket, within `timeout` seconds in all."""
        started = time.monotonic()
        try:
            buckets = await asyncio.wait_for(self._fetch(), self.timeout)
        except (TimeoutError, asyncio.TimeoutError):
            return self._failed(f"{self._unanswered_text()}: timed out after {self.timeout:g}s")
        except BucketsError as exc:
            return self._failed(str(exc))
        except Exception as exc:  # noqa: BLE001 - a poll never raises; the error is shown instead
            return self._failed(f"{self.active}: {type(exc).__name__}: {exc}")
        self.last = BucketsReport(
            url=redact_url(self.active),
            reachable=True,
            latency_ms=(time.monotonic() - started) * 1000.0,
            polled_at=datetime.now(timezone.utc),
            buckets=buckets,
        )
        return self.last

    def _unanswered_text(self) -> str:
        """What the poll was still waiting for: one URL, or how many detail requests."""
        waiting = self._unanswered
        if len(waiting) == 1:
            return f"{self.active}{waiting[0]}"
        if waiting:
            return f"{self.active}/status/details ({len(waiting)} requests)"
        return self.active

    def poll_blocking(self) -> BucketsReport:
        """`poll()` for callers without an event loop (threads, `dtmon status`)."""
        return asyncio.run(self.poll())

    def _failed(self, error: str) -> BucketsReport:
        self._chosen_at = None  # the next poll looks for a base URL that answers again
        self.last = replace(self.last, url=redact_url(self.active), reachable=False, error=self.shown(error))
        return self.last

    def shown(self, text: str) -> str:
        """`text` as it may be shown: clean of control sequences (it quotes the server), without a password."""
        return scrub(sanitize.clean(text), self._secrets)

    def _needs_choice(self) -> bool:
        if len(self.cfg.urls) == 1:
            return False  # nothing to choose: no extra request
        if self._chosen_at is None:
            return True
        return self.active != self.cfg.url and time.monotonic() - self._chosen_at >= RECHECK_FIRST

    async def _choose(self, client: httpx.AsyncClient) -> None:
        """Make the first base URL that answers `HEAD /version` the active one (all are asked at once).

        Each look gets half the poll's timeout, so that the poll itself still has the other half.
        """
        import httpx

        budget = self.timeout / 2

        async def answers(url: str) -> str | None:
            try:
                response = await client.head(f"{url}/version", timeout=budget)
            except httpx.TimeoutException:
                return f"timed out after {budget:g}s"
            except httpx.HTTPError as exc:
                return f"cannot connect: {exc or type(exc).__name__}"
            if response.status_code in (401, 403):
                return unauthorized_text(response.status_code, self.token, self.cfg.token_env, self.token_note)
            if response.status_code >= 400:
                return f"HTTP {response.status_code} {response.reason_phrase}".rstrip()
            return None

        tasks = [asyncio.ensure_future(answers(url)) for url in self.cfg.urls]
        reasons = []
        try:
            for url, task in zip(self.cfg.urls, tasks):
                reason = await task  # in order: an earlier URL that answers wins, however late
                if reason is None:
                    self.active = url
                    self._chosen_at = time.monotonic()
                    return
                reasons.append(f"{url}: {reason}")
        finally:
            for task in tasks:
                task.cancel()
        raise BucketsError("no Buckets URL answers HEAD /version: " + "; ".join(reasons))

    async def _fetch(self) -> tuple[BucketStatus, ...]:
        import httpx

        if self._verify is None:
            https = any(url.startswith("https://") for url in self.cfg.urls)
            self._verify = httpx.create_ssl_context() if https else False
        headers = {TOKEN_HEADER: self.token.value} if self.token else {}
        if self._transport is not None:  # a test's transport
            client = httpx.AsyncClient(timeout=httpx.Timeout(self.timeout), transport=self._transport,
                                       trust_env=False, headers=headers)
        else:
            client = bounded.async_client(self.active, ssl_context=self._verify or None,
                                          max_connections=CONCURRENCY, headers=headers)
        # The poll's own timeout (`wait_for` in `poll`) names what it was waiting for; this deadline, a
        # little later, is the backstop that ends every read on the network side.
        with bounded.deadline(time.monotonic() + self.timeout + 0.25):
            async with client:
                self._unanswered = []
                if self._needs_choice():
                    await self._choose(client)
                client.base_url = self.active
                names = await self._get_json(client, "/status/pipelines")
                if not isinstance(names, list) or not all(isinstance(n, str) for n in names):
                    raise BucketsError(f"{self.active}/status/pipelines: expected a JSON list of bucket names")
                wanted = select(names, self.cfg.include)
                gate = asyncio.Semaphore(CONCURRENCY)

                async def one(name: str) -> BucketStatus:
                    path = f"/status/details/{quote(name, safe='')}"
                    async with gate:
                        data = await self._get_json(client, path)
                    try:
                        bucket = parse_counts(name, data)
                    except ValueError as exc:
                        raise BucketsError(f"{self.active}{path}: malformed answer: {exc}") from None
                    return replace(bucket, consumer=consumer_for(name, self.cfg.consumers))

                return tuple(await asyncio.gather(*(one(n) for n in wanted)))

    async def _get_json(self, client: httpx.AsyncClient, path: str) -> Any:
        url = f"{self.active}{path}"
        # Removed only once answered (or failed): a request cancelled by the poll's timeout stays listed.
        self._unanswered.append(path)
        try:
            answer = await bounded.aget(client, path, seconds=self.timeout, max_bytes=self.max_bytes)
            self._unanswered.remove(path)
        except bounded.TimedOut:
            raise BucketsError(f"{url}: timed out after {self.timeout:g}s") from None
        except bounded.ConnectFailed as exc:
            raise BucketsError(f"{url}: cannot connect: {exc}") from None
        except bounded.FetchError as exc:
            raise BucketsError(f"{url}: {exc}") from None
        if answer.status in (401, 403):
            text = unauthorized_text(answer.status, self.token, self.cfg.token_env, self.token_note)
            raise BucketsError(f"{url}: {text}")
        if answer.status != 200:
            raise BucketsError(f"{url}: HTTP {answer.status} {bounded.one_line(answer.reason, 60)}".rstrip())
        try:
            return answer.json()
        except bounded.NotJson:
            start = answer.body[:40].decode("utf-8", "replace")
            raise BucketsError(f"{url}: malformed answer: not JSON ({start!r})") from None


def start_poll(config: Config) -> Callable[[float], BucketsReport | None]:
    """Start one poll of the configured Buckets service in a thread; returns `wait(seconds)` for its report.

    `wait` gives None when no [buckets] is configured, and an unreachable report when the poll has not
    finished in time, so a slow Buckets service never delays the rest of `dtmon status`.
    """
    if config.buckets is None:
        return lambda _seconds: None
    collector = BucketsCollector(config.buckets, config.timeout, max_bytes=config.max_bytes)
    return in_background(
        collector.poll_blocking,
        failed=lambda message: collector._failed(f"{collector.active}: {message}"),
        late=lambda: replace(collector.last, reachable=False,
                             error=collector.shown(f"{collector.active}: timed out after {config.timeout:g}s")),
        name="poll-buckets",
    )
