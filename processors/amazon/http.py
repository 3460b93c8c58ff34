"""One HTTP exchange, classified by status before anything is decoded."""

from __future__ import annotations

import asyncio
import email.utils
import math
import time
from typing import TypeVar

import httpx
import msgspec

from processors.amazon.errors import (
    AmazonClientError,
    AmazonConnectionError,
    AmazonDecodeError,
    AmazonServerError,
    AmazonTimeoutError,
)
from processors.amazon.models.common import AdsErrorBody, SpApiErrorBody

T = TypeVar("T")
# The longest a throttled job waits before it asks again, whatever Retry-After says: a day-long
# (or unparseable, infinite) value must not park an account's syncs for that long.
MAX_RETRY_AFTER = 180.0
# Whole-exchange deadline when the caller gives none.
DEFAULT_DEADLINE = 90.0


async def exchange(
    http: httpx.AsyncClient,
    request: httpx.Request,
    *,
    operation: str,
    timeout: httpx.Timeout,
    deadline: float = DEFAULT_DEADLINE,
) -> httpx.Response:
    """Send and read the whole body within ``deadline`` seconds; transport failures become
    transient errors.

    ``timeout`` bounds each connect, read and write, but a read timeout is per read: a body
    that trickles in a few bytes at a time never trips it, so the whole exchange has a
    deadline too. The request's headers are never put into an exception message.
    """
    request.extensions["timeout"] = timeout.as_dict()
    try:
        async with asyncio.timeout(deadline):
            response = await http.send(request)
    except httpx.TimeoutException as exc:
        raise AmazonTimeoutError(operation, type(exc).__name__) from None
    except TimeoutError:
        raise AmazonTimeoutError(operation, f"no whole answer within {deadline:g}s") from None
    except httpx.TransportError as exc:
        raise AmazonConnectionError(operation, type(exc).__name__) from None
    return response


def retry_after(response: httpx.Response) -> float | None:
    """Retry-After as seconds (delta-seconds or an HTTP date), if present and sane: a value
    that is not a finite number or a date is ignored, and at most ``MAX_RETRY_AFTER``."""
    raw = response.headers.get("retry-after")
    if raw is None:
        return None
    try:
        seconds = float(raw)
    except ValueError:
        try:
            seconds = email.utils.parsedate_to_datetime(raw).timestamp() - time.time()
        except (TypeError, ValueError, OverflowError):
            return None
    if not math.isfinite(seconds):
        return None
    return min(MAX_RETRY_AFTER, max(0.0, seconds))


def raise_for_failure(response: httpx.Response, operation: str) -> None:
    """5xx → transient; other non-2xx except 401/403/429 (handled by the caller) → client error."""
    status = response.status_code
    if status >= 500:
        code, message = error_summary(response)
        # Amazon's own code and message when the body is its error JSON (not an HTML page).
        detail = f"{code}: {message}" if code != str(status) else None
        raise AmazonServerError(operation, status, detail)
    if status < 400 or status in (401, 403, 429):
        return
    code, message = error_summary(response)
    raise AmazonClientError(operation, status, code, message)


def error_summary(response: httpx.Response) -> tuple[str, str]:
    """Amazon's error code and message, from either the SP-API or the Ads error shape."""
    try:
        sp = msgspec.json.decode(response.content, type=SpApiErrorBody)
        if sp.errors:
            first = sp.errors[0]
            return first.code, first.message
    except msgspec.MsgspecError:
        pass
    try:
        ads = msgspec.json.decode(response.content, type=AdsErrorBody)
        return ads.code or str(response.status_code), ads.details or ads.detail or ""
    except msgspec.MsgspecError:
        return str(response.status_code), "non-JSON error body"


def decode(response: httpx.Response, type_: type[T], operation: str) -> T:
    try:
        return msgspec.json.decode(response.content, type=type_)
    except msgspec.MsgspecError as exc:
        raise AmazonDecodeError(operation, response.status_code, str(exc)) from None
