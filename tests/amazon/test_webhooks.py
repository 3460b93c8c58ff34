"""Webhook signatures and delivery outcomes."""

from __future__ import annotations

import asyncio
import json
import logging
import socket
import threading
import time
from collections.abc import AsyncIterator
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


# ----- receivers that misbehave (brk-hooks) ------------------------------------------------

TOKEN_URL = "https://user:hunter2@hooks.example/services/T0/SECRETPATH?token=abc"


@pytest.mark.parametrize("status", [301, 302, 303, 307, 308])
async def test_a_redirect_is_not_a_delivery(status: int) -> None:
    """Redirects are not followed (the signed body must not go elsewhere), so a 3xx means the
    event did not arrive: it must not complete as delivered."""
    transport = httpx.MockTransport(
        lambda request: httpx.Response(status, headers={"location": "http://10.0.0.1/x?k=secret"}))
    async with httpx.AsyncClient(transport=transport, follow_redirects=False) as http:
        with pytest.raises(WebhookRejected, match=f"redirect.*{status}") as caught:
            await deliver_webhook(http, TOKEN_URL, b"{}", SECRET)
    assert "secret" not in str(caught.value) and "token" not in str(caught.value)


@pytest.mark.parametrize("url", ["ftp://hooks.example/x", "hooks.example/x", "http://",
                                 "http://[::1/x", "mailto:ops@hooks.example"])
async def test_a_url_that_cannot_be_posted_to_is_refused_at_once(url: str) -> None:
    """Retrying the same URL cannot help: refused (failed at once), not a transient error."""
    transport = httpx.MockTransport(lambda request: httpx.Response(204))
    async with httpx.AsyncClient(transport=transport) as http:
        with pytest.raises(WebhookRejected, match="URL"):
            await deliver_webhook(http, url, b"{}", SECRET)


async def test_a_huge_answer_is_not_read_whole() -> None:
    """The status is the answer: an endless (or huge) body after a 2xx is not read into memory."""
    sent = 0

    async def endless() -> AsyncIterator[bytes]:
        nonlocal sent
        while True:
            sent += 1
            await asyncio.sleep(0)  # so that a deadline can fire
            yield b"x" * 65536

    transport = httpx.MockTransport(lambda request: httpx.Response(200, content=endless()))
    async with httpx.AsyncClient(transport=transport) as http, asyncio.timeout(5):
        assert await deliver_webhook(http, "https://hooks.example/x", b"{}", SECRET) == 200
    assert sent <= 4


def _raw_receiver(answer: bytes, trickle: bytes | None) -> tuple[socket.socket, str]:
    """A receiver on a raw socket: reads the request, sends ``answer``, then ``trickle`` one
    byte every 0.1 s, forever (until the client goes)."""
    server = socket.create_server(("127.0.0.1", 0))

    def handle(conn: socket.socket) -> None:
        with conn:
            data = b""
            while b"\r\n\r\n" not in data:
                data += conn.recv(65536)
            try:
                conn.sendall(answer)
                while trickle is not None:
                    for byte in trickle:
                        conn.sendall(bytes([byte]))
                        time.sleep(0.1)
            except OSError:
                pass

    def accept() -> None:
        while True:
            try:
                conn, _ = server.accept()
            except OSError:
                return
            threading.Thread(target=handle, args=(conn,), daemon=True).start()

    threading.Thread(target=accept, daemon=True).start()
    return server, f"http://127.0.0.1:{server.getsockname()[1]}/hooks"


async def test_a_receiver_that_trickles_its_answer_is_cut_at_the_deadline() -> None:
    """httpx's timeout is per read: headers sent a byte at a time never trip it. The whole
    exchange has a deadline, so a slow receiver cannot hold a worker slot for ever."""
    server, url = _raw_receiver(b"HTTP/1.1 200 OK\r\n", trickle=b"X-Slow: " + b"a" * 10_000)
    try:
        async with httpx.AsyncClient() as http, asyncio.timeout(5):
            with pytest.raises(WebhookDeliveryError, match="timed out"):
                await deliver_webhook(http, url, b"{}", SECRET, timeout_s=0.5)
    finally:
        server.close()


async def test_a_2xx_whose_body_never_ends_is_a_delivery() -> None:
    server, url = _raw_receiver(b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n",
                                trickle=b"1\r\nx\r\n" * 1000)
    try:
        async with httpx.AsyncClient() as http, asyncio.timeout(5):
            assert await deliver_webhook(http, url, b"{}", SECRET, timeout_s=0.5) == 200
    finally:
        server.close()


async def test_webhook_urls_keep_their_secrets_out_of_the_logs(caplog: pytest.LogCaptureFixture) -> None:
    """httpx logs every request's URL at INFO (the worker's default level); a webhook URL may
    carry credentials and tokens, so only its scheme and host may be logged."""
    transport = httpx.MockTransport(lambda request: httpx.Response(204))
    caplog.set_level(logging.INFO)
    async with httpx.AsyncClient(transport=transport) as http:
        await deliver_webhook(http, TOKEN_URL, b"{}", SECRET)
    assert "hooks.example" in caplog.text
    for secret in ("hunter2", "SECRETPATH", "token=abc", "user"):
        assert secret not in caplog.text


@pytest.mark.parametrize(("status", "header", "expected"), [
    (429, "120", 120.0),
    (503, "7", 7.0),
    (429, "86400", 180.0),              # a day: capped, the events are not parked that long
    (429, "-5", None),                  # nothing to wait for: a plain transient failure
    (429, "0", None),
    (429, "soon", None),
    (429, "nan", None),
    (500, "30", None),                  # only 429 and 503 ask to wait
    (429, "Wed, 21 Oct 2099 07:28:00 GMT", 180.0),
    (429, "Wed, 21 Oct 2015 07:28:00 GMT", None),  # a date in the past
])
async def test_retry_after_is_read_sanely(status: int, header: str, expected: float | None) -> None:
    transport = httpx.MockTransport(
        lambda request: httpx.Response(status, headers={"retry-after": header}))
    async with httpx.AsyncClient(transport=transport) as http:
        with pytest.raises(WebhookDeliveryError) as caught:
            await deliver_webhook(http, "https://hooks.example/x", b"{}", SECRET)
    assert caught.value.retry_after == expected


def test_a_header_with_several_signatures_verifies_with_any_of_them() -> None:
    """Senders rotating a secret sign with both (``t=..,v1=<new>,v1=<old>``, as Stripe does):
    a receiver holding either secret must accept. Only the last v1 used to be checked."""
    body = "{\"subject\":\"Größe 42 \u2013 ✓\"}".encode()
    ts = int(time.time())
    new = sign("new-secret", body, timestamp=ts).split(",")[1]
    old = sign("old-sécret", body, timestamp=ts).split(",")[1]
    header = f"t={ts},{new},{old}"
    assert verify_signature("new-secret", body, header)
    assert verify_signature("old-sécret", body, header)
    assert verify_signature("new-secret", body, f"t={ts}, {new}")  # a space after the comma
    assert not verify_signature("third", body, header)
    assert not verify_signature("new-secret", body, f"t={ts},v1=,{old}")
