"""Webhook signatures and delivery outcomes."""

from __future__ import annotations

import json
import time
from datetime import date

import httpx
import pytest

from processors.sync_logic import (
    SIGNATURE_HEADER,
    Alert,
    WebhookDeliveryError,
    WebhookRejected,
    alert_event,
    deliver_webhook,
    encode_event,
    sign,
    verify_signature,
)

SECRET = "whsec_test"


def test_signature_verifies_and_detects_tampering() -> None:
    body = b'{"type":"alert.raised"}'
    header = sign(SECRET, body)
    assert verify_signature(SECRET, body, header)
    assert not verify_signature(SECRET, body + b" ", header)
    assert not verify_signature("other", body, header)
    assert not verify_signature(SECRET, body, "garbage")


def test_old_signatures_are_rejected() -> None:
    body = b"{}"
    header = sign(SECRET, body, timestamp=int(time.time()) - 3600)
    assert not verify_signature(SECRET, body, header)
    assert verify_signature(SECRET, body, header, tolerance=7200)


async def test_delivery_posts_a_verifiable_alert() -> None:
    received: list[httpx.Request] = []

    def receiver(request: httpx.Request) -> httpx.Response:
        received.append(request)
        ok = verify_signature(SECRET, request.content, request.headers[SIGNATURE_HEADER])
        return httpx.Response(204 if ok else 401)

    alert = Alert("acct-0", "low_stock", "SKU-1", date(2026, 8, 1), "warning", "low", 3.0, 14.0)
    body = encode_event(alert_event(alert))
    async with httpx.AsyncClient(transport=httpx.MockTransport(receiver)) as http:
        status = await deliver_webhook(
            http, "https://hooks.example/x", body, SECRET, event_type="alert.raised"
        )
    assert status == 204
    payload = json.loads(received[0].content)
    assert payload["type"] == "alert.raised" and payload["data"]["subject"] == "SKU-1"


@pytest.mark.parametrize(("status", "error"), [(503, WebhookDeliveryError), (410, WebhookRejected)])
async def test_delivery_failures_are_classified(status: int, error: type[Exception]) -> None:
    transport = httpx.MockTransport(lambda request: httpx.Response(status))
    async with httpx.AsyncClient(transport=transport) as http:
        with pytest.raises(error) as caught:
            await deliver_webhook(http, "https://hooks.example/path?token=abc", b"{}", SECRET)
    assert "token=abc" not in str(caught.value)
