"""The downtime announcement: one JSON POST to the configured webhook; any failure stops the plan."""

from __future__ import annotations

import json

import httpx


class AnnounceError(Exception):
    """The announcement was not accepted; the message says why."""


def post(url: str, payload: str | dict, timeout: float = 10.0, transport: httpx.BaseTransport | None = None) -> str:
    """POST the JSON payload; returns a short summary, raises AnnounceError unless the answer is 2xx."""
    body = payload if isinstance(payload, str) else json.dumps(payload, sort_keys=True)
    try:
        with httpx.Client(timeout=timeout, transport=transport) as client:
            response = client.post(url, content=body, headers={"Content-Type": "application/json"})
    except httpx.HTTPError as exc:
        raise AnnounceError(f"announcement to {url} failed: {type(exc).__name__}: {exc}") from None
    if not response.is_success:
        raise AnnounceError(f"announcement to {url} refused: HTTP {response.status_code} {response.text[:200]}")
    return f"announced: HTTP {response.status_code}"
