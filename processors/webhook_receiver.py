"""A local webhook receiver that checks signatures: for the demo and the tests.

    with WebhookReceiver(secret) as receiver:
        receiver.url           # http://127.0.0.1:PORT/hooks
        receiver.received      # [(event type, decoded body, signature ok)]
"""

from __future__ import annotations

import contextlib
import json
import threading
from dataclasses import dataclass
from typing import Any

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from processors.background_server import BackgroundServer
from processors.fake_amazon.server import bind_socket
from processors.sync_logic import SIGNATURE_HEADER, verify_signature


@dataclass(frozen=True)
class Received:
    event_type: str
    body: dict[str, Any]
    verified: bool


class WebhookReceiver:
    """Answers 204 to a correctly signed POST of a JSON object, 401 to a bad signature and
    400 to a signed body that is no JSON object (recorded with an empty body). Every POST
    is recorded."""

    def __init__(self, secret: str) -> None:
        self.secret = secret
        self.received: list[Received] = []
        self._lock = threading.Lock()
        app = Starlette(routes=[Route("/hooks", self._hook, methods=["POST"])])
        self._server = BackgroundServer(app, bind_socket(), name="webhook-receiver", lifespan="off")
        self.url = self._server.base_url + "/hooks"

    async def _hook(self, request: Request) -> Response:
        body = await request.body()
        ok = verify_signature(self.secret, body, request.headers.get(SIGNATURE_HEADER, ""))
        decoded: Any = None
        with contextlib.suppress(ValueError):  # bad JSON, and bytes that are not UTF-8
            decoded = json.loads(body)
        is_object = isinstance(decoded, dict)
        with self._lock:
            self.received.append(Received(request.headers.get("x-minique-event", ""),
                                          decoded if is_object else {}, ok))
        return Response(status_code=401 if not ok else 204 if is_object else 400)

    def events(self, event_type: str | None = None) -> list[Received]:
        with self._lock:
            return [r for r in self.received if event_type is None or r.event_type == event_type]

    def __enter__(self) -> WebhookReceiver:
        self._server.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._server.stop()
