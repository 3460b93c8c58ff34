"""Webhook delivery: a JSON POST signed with HMAC-SHA256, and the receiver's check.

Header: ``X-Minique-Signature: t=<unix seconds>,v1=<hex hmac>`` where the MAC covers
``f"{t}.".encode() + body``. The timestamp lets receivers reject replays.
"""

from __future__ import annotations

import hashlib
import hmac
import time
import uuid
from datetime import UTC, datetime
from typing import Any

import httpx
import msgspec

from processors.sync_logic.alerts import Alert

SIGNATURE_HEADER = "X-Minique-Signature"
DEFAULT_TOLERANCE = 300


class WebhookEvent(msgspec.Struct, frozen=True):
    id: str
    type: str
    created_at: datetime
    data: dict[str, Any]


class WebhookDeliveryError(Exception):
    """Transient: the receiver timed out, was unreachable or answered 5xx/429. Retry."""


class WebhookRejected(Exception):
    """The receiver answered 4xx: retrying the same body will not help (the job fails at once)."""


def make_event(event_type: str, data: dict[str, Any]) -> WebhookEvent:
    return WebhookEvent(id=str(uuid.uuid4()), type=event_type, created_at=datetime.now(UTC), data=data)


def alert_event(alert: Alert) -> WebhookEvent:
    return make_event(
        "alert.raised",
        {
            "account_id": alert.account_id,
            "kind": alert.kind,
            "subject": alert.subject,
            "day": alert.day.isoformat(),
            "severity": alert.severity,
            "message": alert.message,
            "value": alert.value,
            "threshold": alert.threshold,
        },
    )


def encode_event(event: WebhookEvent) -> bytes:
    return msgspec.json.encode(event)


def sign(secret: str, body: bytes, timestamp: int | None = None) -> str:
    ts = int(time.time()) if timestamp is None else timestamp
    mac = hmac.new(secret.encode(), f"{ts}.".encode() + body, hashlib.sha256).hexdigest()
    return f"t={ts},v1={mac}"


def verify_signature(
    secret: str,
    body: bytes,
    header: str,
    *,
    now: float | None = None,
    tolerance: int = DEFAULT_TOLERANCE,
) -> bool:
    """Constant-time check of the MAC, and of the timestamp's age."""
    parts = dict(part.split("=", 1) for part in header.split(",") if "=" in part)
    try:
        ts = int(parts["t"])
        given = parts["v1"]
    except (KeyError, ValueError):
        return False
    current = time.time() if now is None else now
    if abs(current - ts) > tolerance:
        return False
    expected = hmac.new(secret.encode(), f"{ts}.".encode() + body, hashlib.sha256).hexdigest()
    return hmac.compare_digest(expected, given)


async def deliver_webhook(
    http: httpx.AsyncClient,
    url: str,
    body: bytes,
    secret: str,
    *,
    timeout_s: float = 10.0,
    event_type: str | None = None,
) -> int:
    """POST once. Returns the status on 2xx; raises WebhookDeliveryError or WebhookRejected."""
    headers = {"content-type": "application/json", SIGNATURE_HEADER: sign(secret, body)}
    if event_type:
        headers["X-Minique-Event"] = event_type
    try:
        response = await http.post(url, content=body, headers=headers, timeout=timeout_s)
    except httpx.TimeoutException:
        raise WebhookDeliveryError(f"webhook to {_host(url)} timed out") from None
    except httpx.TransportError as exc:
        raise WebhookDeliveryError(f"webhook to {_host(url)} failed: {type(exc).__name__}") from None
    if response.status_code >= 500 or response.status_code == 429:
        raise WebhookDeliveryError(f"webhook to {_host(url)} answered {response.status_code}")
    if response.status_code >= 400:
        raise WebhookRejected(f"webhook to {_host(url)} rejected with {response.status_code}")
    return response.status_code


def _host(url: str) -> str:
    # Webhook URLs sometimes embed tokens in the path or query; name only the host.
    return httpx.URL(url).host
