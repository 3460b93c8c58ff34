"""One HTTP exchange, classified by status before anything is decoded."""

from __future__ import annotations

import email.utils
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


async def exchange(
    http: httpx.AsyncClient,
    request: httpx.Request,
    *,
    operation: str,
    timeout: httpx.Timeout,
) -> httpx.Response:
    """Send and read the whole body; transport failures become transient errors.

    The request's headers are never put into an exception message.
    """
    request.extensions["timeout"] = timeout.as_dict()
    try:
        response = await http.send(request)
    except httpx.TimeoutException as exc:
        raise AmazonTimeoutError(operation, type(exc).__name__) from None
    except httpx.TransportError as exc:
        raise AmazonConnectionError(operation, type(exc).__name__) from None
    return response


def retry_after(response: httpx.Response) -> float | None:
    """Retry-After as seconds (delta-seconds or an HTTP date), if present and sane."""
    raw = response.headers.get("retry-after")
    if raw is None:
        return None
    try:
        return max(0.0, float(raw))
    except ValueError:
        pass
    try:
        when = email.utils.parsedate_to_datetime(raw)
    except (TypeError, ValueError):
        return None
    return max(0.0, when.timestamp() - time.time())


def raise_for_failure(response: httpx.Response, operation: str) -> None:
    """5xx → transient; other non-2xx except 401/403/429 (handled by the caller) → client error."""
    status = response.status_code
    if status >= 500:
        raise AmazonServerError(operation, status)
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
