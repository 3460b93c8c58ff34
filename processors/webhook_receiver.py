"""A local webhook receiver that checks signatures: for the demo and the tests.

    with WebhookReceiver(secret) as receiver:
        receiver.url           # http://127.0.0.1:PORT/hooks
        receiver.received      # [(event type, decoded body, signature ok)]
"""

from __future__ import annotations

import json
import threading
import time
from dataclasses import dataclass
from typing import Any

import uvicorn
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from processors.fake_amazon.server import bind_socket
from processors.sync_logic import SIGNATURE_HEADER, verify_signature


@dataclass(frozen=True)
class Received:
    event_type: str
    body: dict[str, Any]
    verified: bool


class WebhookReceiver:
    """Answers 204 to a correctly signed POST and 401 otherwise (every POST is recorded)."""

    def __init__(self, secret: str) -> None:
        self.secret = secret
        self.received: list[Received] = []
        self._lock = threading.Lock()
        app = Starlette(routes=[Route("/hooks", self._hook, methods=["POST"])])
        self._socket = bind_socket()
        self._server = uvicorn.Server(uvicorn.Config(app, log_level="warning", access_log=False,
                                                     lifespan="off", timeout_graceful_shutdown=1))
        self._thread = threading.Thread(target=self._server.run, kwargs={"sockets": [self._socket]},
                                        name="webhook-receiver", daemon=True)
        host, port = self._socket.getsockname()[:2]
        self.url = f"http://{host}:{port}/hooks"

    async def _hook(self, request: Request) -> Response:
        body = await request.body()
        ok = verify_signature(self.secret, body, request.headers.get(SIGNATURE_HEADER, ""))
        with self._lock:
            self.received.append(Received(request.headers.get("x-minique-event", ""),
                                          json.loads(body), ok))
        return Response(status_code=204 if ok else 401)

    def events(self, event_type: str | None = None) -> list[Received]:
        with self._lock:
            return [r for r in self.received if event_type is None or r.event_type == event_type]

    def __enter__(self) -> WebhookReceiver:
        self._thread.start()
        deadline = time.monotonic() + 10.0
        while not self._server.started:
            if not self._thread.is_alive() or time.monotonic() > deadline:
                raise RuntimeError("webhook receiver did not start")
            time.sleep(0.005)
        return self

    def __exit__(self, *exc: object) -> None:
        self._server.should_exit = True
        self._thread.join(10.0)
        self._socket.close()
