"""The downtime announcement: one JSON POST to the configured webhook; any failure stops the plan."""

from __future__ import annotations

import json

import httpx

from ..redact import scrub, url_secrets, webhook_url
from ..sanitize import clean


class AnnounceError(Exception):
    """The announcement was not accepted; the message says why."""


def post(url: str, payload: str | dict, timeout: float = 10.0, transport: httpx.BaseTransport | None = None) -> str:
    """POST the JSON payload; returns a short summary, raises AnnounceError unless the answer is 2xx."""
    body = payload if isinstance(payload, str) else json.dumps(payload, sort_keys=True)
    try:
        with httpx.Client(timeout=timeout, transport=transport) as client:
            response = client.post(url, content=body, headers={"Content-Type": "application/json"})
    except httpx.HTTPError as exc:  # the webhook's token is in its URL: shown as scheme + host only
        reason = scrub(clean(f"{type(exc).__name__}: {exc}"), url_secrets(url, whole=True))
        raise AnnounceError(f"announcement to {webhook_url(url)} failed: {reason}") from None
    if not response.is_success:
        body = scrub(clean(response.text[:200], 200), url_secrets(url, whole=True))
        raise AnnounceError(f"announcement to {webhook_url(url)} refused: HTTP {response.status_code} {body}")
    return f"announced: HTTP {response.status_code}"
