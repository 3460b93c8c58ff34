"""Webhook delivery: a JSON POST signed with HMAC-SHA256, and the receiver's check.

Header: ``X-Minique-Signature: t=<unix seconds>,v1=<hex hmac>`` where the MAC covers
``f"{t}.".encode() + body``. The timestamp lets receivers reject replays.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import hmac
import logging
import re
import time
import uuid
from contextvars import ContextVar
from datetime import UTC, datetime
from typing import Any

import httpx
import msgspec

from processors.amazon.http import retry_after
from processors.sync_logic.alerts import Alert

SIGNATURE_HEADER = "X-Minique-Signature"
DEFAULT_TOLERANCE = 300


class WebhookEvent(msgspec.Struct, frozen=True):
    id: str
    type: str
    created_at: datetime
    data: dict[str, Any]


class WebhookDeliveryError(Exception):
    """Transient: the receiver timed out, was unreachable or answered 5xx/429. Retry.

    ``retry_after``: seconds the receiver asked for (a 429 or 503 with a sane
    ``Retry-After``, delta-seconds or an HTTP date, at most ``MAX_RETRY_AFTER``), else None."""

    def __init__(self, message: str, retry_after: float | None = None) -> None:
        super().__init__(message)
        self.retry_after = retry_after


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
    """Constant-time check of the MAC, and of the timestamp's age. A header may carry several
    ``v1`` signatures (a sender rotating its secret signs with both): any one that matches
    will do."""
    pairs = [part.strip().split("=", 1) for part in header.split(",") if "=" in part]
    stamps = [value for key, value in pairs if key == "t"]
    given = [value for key, value in pairs if key == "v1"]
    try:
        [stamp] = stamps
        ts = int(stamp)
    except ValueError:
        return False
    current = time.time() if now is None else now
    if abs(current - ts) > tolerance:
        return False
    expected = hmac.new(secret.encode(), f"{ts}.".encode() + body, hashlib.sha256).hexdigest()
    # Every one compared (no early exit), so the time taken says nothing of which matched.
    matches = [hmac.compare_digest(expected.encode(), value.encode()) for value in given]
    return any(matches)


# The most of a receiver's answer that is read (so that its connection can be used again):
# the status is the answer, and a huge or endless body must not fill the worker's memory.
MAX_ANSWER_BYTES = 64 * 1024

# What an X-Minique-Event header may hold: printable ASCII, at most 200 characters.
_HEADER_SAFE = re.compile(r"[\x20-\x7e]{1,200}")

# The URL of the webhook being sent, and what the logs may show of it (see _HideWebhookUrls).
_sending: ContextVar[tuple[str, str] | None] = ContextVar("minique_webhook_url", default=None)


class _HideWebhookUrls(logging.Filter):
    """httpx logs each request's URL at INFO (the worker's default level). A webhook URL may
    hold credentials (``user:pass@``) and tokens (in its path or query), so the records
    logged while one is sent show its scheme and host only."""

    def filter(self, record: logging.LogRecord) -> bool:
        sending = _sending.get()
        if sending is not None:
            message = record.getMessage()
            full, shown = sending
            if full in message:
                record.msg, record.args = message.replace(full, shown), None
        return True


_FILTER = _HideWebhookUrls()


def _hide_urls_in_logs() -> None:
    for name in ("httpx", "httpcore"):
        logger = logging.getLogger(name)
        if _FILTER not in logger.filters:
            logger.addFilter(_FILTER)


def webhook_url_problem(url: str) -> str | None:
    """Why ``url`` cannot be a webhook URL (an http(s) URL with a host), or None. The answer
    never quotes the URL: it may hold credentials and tokens."""
    try:
        parsed = httpx.URL(url)
    except (httpx.InvalidURL, TypeError, ValueError):
        return "not a valid http(s) URL"
    if parsed.scheme not in ("http", "https") or not parsed.host:
        return f"not an http(s) URL with a host (scheme {parsed.scheme or 'missing'!r})"
    return None


def _target(url: str) -> httpx.URL:
    """``url`` parsed; WebhookRejected (retrying cannot help) unless it is an http(s) URL with
    a host (a URL stored before the check at the door, or a job added by hand)."""
    problem = webhook_url_problem(url)
    if problem is not None:
        raise WebhookRejected(f"webhook URL is {problem}")
    return httpx.URL(url)


async def deliver_webhook(
    http: httpx.AsyncClient,
    url: str,
    body: bytes,
    secret: str,
    *,
    timeout_s: float = 10.0,
    event_type: str | None = None,
) -> int:
    """POST once. Returns the status on 2xx; raises WebhookDeliveryError (5xx, 429, timeout,
    network error: retry) or WebhookRejected (any other answer, a redirect included, or a URL
    that is not http(s): retrying the same POST will not help).

    ``timeout_s`` bounds the whole exchange until the status arrives, not only each read
    (httpx's timeout is per read: a receiver that trickles its answer would never trip it).
    After the status, at most ``MAX_ANSWER_BYTES`` of the body are read, within what is left
    of ``timeout_s``; the rest is dropped with the connection."""
    target = _target(url)
    host = target.host
    headers = {"content-type": "application/json", SIGNATURE_HEADER: sign(secret, body)}
    if event_type:
        if not _HEADER_SAFE.fullmatch(event_type):
            # Non-ASCII, a control character or CR/LF (a header injected) cannot be sent:
            # this event is refused, the receiver is not to blame.
            raise WebhookRejected("the event type cannot be sent as a header (printable "
                                  "ASCII only)")
        headers["X-Minique-Event"] = event_type
    _hide_urls_in_logs()
    shown = f"{target.scheme}://{host}" + (f":{target.port}" if target.port else "") + "/..."
    hiding = _sending.set((str(target), shown))
    try:
        request = http.build_request("POST", target, content=body, headers=headers,
                                     timeout=timeout_s)
        deadline = asyncio.get_running_loop().time() + timeout_s
        try:
            async with asyncio.timeout_at(deadline):
                response = await http.send(request, stream=True)
        except (httpx.TimeoutException, TimeoutError):
            raise WebhookDeliveryError(f"webhook to {host} timed out") from None
        except httpx.UnsupportedProtocol:
            raise WebhookRejected(f"webhook to {host}: the URL's scheme is not supported") from None
        except httpx.TransportError as exc:
            raise WebhookDeliveryError(f"webhook to {host} failed: {type(exc).__name__}") from None
        try:
            # The body is not the answer: read a little (so the connection can be used again).
            with contextlib.suppress(TimeoutError, httpx.HTTPError, httpx.StreamError):
                async with asyncio.timeout_at(deadline):
                    read = 0
                    async for chunk in response.aiter_raw():
                        read += len(chunk)
                        if read > MAX_ANSWER_BYTES:
                            break
        finally:
            await response.aclose()
    finally:
        _sending.reset(hiding)
    status = response.status_code
    if status >= 500 or status == 429:
        wait = retry_after(response) if status in (429, 503) else None
        if wait is not None and wait > 0:
            raise WebhookDeliveryError(f"webhook to {host} answered {status}, retry after "
                                       f"{wait:g}s", retry_after=wait)
        raise WebhookDeliveryError(f"webhook to {host} answered {status}")
    if 300 <= status < 400:
        # Not followed (the signed body must not go where the receiver points), so the
        # event did not arrive: a receiver that moved must be given its new URL.
        raise WebhookRejected(f"webhook to {host} answered a redirect ({status}), not followed")
    if not 200 <= status < 300:
        raise WebhookRejected(f"webhook to {host} rejected with {status}")
    return status
