"""An ASGI app under uvicorn in a daemon thread (its own event loop), for the demo's local
servers: the webhook receiver and the dashboard."""

from __future__ import annotations

import socket
import threading
import time
from typing import Any, Literal

import uvicorn


class BackgroundServer:
    """Serves ``app`` on ``sock`` (bound and listening) from ``start()`` to ``stop()``."""

    def __init__(self, app: Any, sock: socket.socket, *, name: str,
                 lifespan: Literal["auto", "on", "off"] = "auto") -> None:
        self._socket = sock
        self._server = uvicorn.Server(uvicorn.Config(app, log_level="warning", access_log=False,
                                                     lifespan=lifespan, timeout_graceful_shutdown=1))
        self._thread = threading.Thread(target=self._server.run, kwargs={"sockets": [sock]},
                                        name=name, daemon=True)
        host, port = sock.getsockname()[:2]
        self.base_url = f"http://{host}:{port}"

    def start(self, timeout: float = 10.0) -> None:
        """Returns once the server accepts connections; RuntimeError if it does not start."""
        self._thread.start()
        deadline = time.monotonic() + timeout
        while not self._server.started:
            if not self._thread.is_alive() or time.monotonic() > deadline:
                raise RuntimeError(f"{self._thread.name} did not start")
            time.sleep(0.005)

    def stop(self) -> None:
        self._server.should_exit = True
        self._thread.join(10.0)
        self._socket.close()
