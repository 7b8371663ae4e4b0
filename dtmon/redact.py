"""Secrets used, never shown: URLs for display without their password, webhooks as scheme + host, and
known secrets scrubbed from any text (errors, crash output). Pure; no Textual.

Keep the full value only where it is used (the HTTP client, the POST); everything that is printed,
drawn, logged or audited goes through these.
"""

from __future__ import annotations

from collections.abc import Iterable
from urllib.parse import unquote, urlsplit

MASK = "***"


def _split(url: str):
    try:
        parts = urlsplit(url)
        parts.port  # noqa: B018 - raises ValueError for a bad port
        return parts
    except ValueError:
        return None


def redact_url(url: str | None) -> str:
    """`url` with the password of its userinfo masked: `http://user:pass@host` -> `http://user:***@host`.

    A URL that does not parse has everything between "://" and the last "@" before the path masked.
    """
    if not url:
        return url or ""
    parts = _split(url)
    if parts is None or not parts.netloc:
        head, sep, rest = url.partition("://")
        if not sep or "@" not in rest.split("/", 1)[0]:
            return url
        return f"{head}://{MASK}@{rest.split('/', 1)[0].rpartition('@')[2]}" + (
            "/" + rest.split("/", 1)[1] if "/" in rest else ""
        )
    if "@" not in parts.netloc:
        return url
    userinfo, _, hostport = parts.netloc.rpartition("@")
    user, colon, _password = userinfo.partition(":")
    shown = f"{user}:{MASK}" if colon else user
    return parts._replace(netloc=f"{shown}@{hostport}").geturl()


def webhook_url(url: str | None) -> str:
    """A webhook (or any URL whose path or query may hold a token) for display: scheme + host + `/…`."""
    if not url:
        return ""
    parts = _split(url)
    if parts is None or not parts.scheme or not parts.hostname:
        return f"{url.partition('://')[0]}://…" if "://" in url else "…"
    host = parts.hostname if ":" not in parts.hostname else f"[{parts.hostname}]"
    port = f":{parts.port}" if parts.port else ""
    return f"{parts.scheme}://{host}{port}/…"


def url_secrets(url: str | None, *, whole: bool = False) -> list[str]:
    """The secret parts of `url` to scrub from text: its password (as written and decoded); with `whole`,
    also the URL itself and its path and query (a webhook's token)."""
    if not url:
        return []
    found: list[str] = []
    parts = _split(url)
    if parts is not None and parts.password:
        found += [parts.password, unquote(parts.password)]
    elif parts is None and "@" in url:
        userinfo = url.partition("://")[2].split("/", 1)[0].rpartition("@")[0]
        if ":" in userinfo:
            found.append(userinfo.partition(":")[2])
    if whole:
        found.append(url)
        if parts is not None:
            tail = parts.path + (f"?{parts.query}" if parts.query else "")
            if len(tail.strip("/")) >= 4:
                found.append(tail)
    return found


def scrub(text: str, secrets: Iterable[str]) -> str:
    """`text` with every occurrence of each secret (of 3 characters or more) replaced by `***`, longest first."""
    for secret in sorted({s for s in secrets if s and len(s) >= 3}, key=len, reverse=True):
        if secret in text:
            text = text.replace(secret, MASK)
    return text


def config_secrets(config) -> list[str]:
    """Every secret of a loaded config: the passwords of its URLs, the announce webhook whole, and the
    Buckets token of the environment."""
    found: list[str] = []
    for site in getattr(config, "sites", ()):
        for url in getattr(site, "endpoints", (site.docker,)):
            found += url_secrets(url)
    for source in (getattr(config, "buckets", None), getattr(config, "prometheus", None)):
        if source is not None:
            for url in getattr(source, "urls", None) or (source.url,):
                found += url_secrets(url)
    buckets = getattr(config, "buckets", None)
    if buckets is not None:
        from .workflow_env import find_token

        token, _note = find_token(getattr(buckets, "token_env", None))
        if token is not None:
            found.append(token.value)
    deploy = getattr(config, "deploy", None)
    if deploy is not None and deploy.announce:
        found += url_secrets(deploy.announce, whole=True)
    return found
