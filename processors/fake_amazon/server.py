"""Runs the fake under uvicorn on 127.0.0.1, in a background thread for tests."""

from __future__ import annotations

import logging
import socket
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager

import uvicorn

from processors.fake_amazon.app import build_app
from processors.fake_amazon.state import FakeAmazon


def bind_socket(host: str = "127.0.0.1", port: int = 0) -> socket.socket:
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind((host, port))
    sock.listen(128)
    sock.set_inheritable(True)
    return sock


def make_server(fake: FakeAmazon, log_level: str = "warning") -> uvicorn.Server:
    config = uvicorn.Config(
        build_app(fake),
        log_level=log_level,
        access_log=False,
        lifespan="off",
        timeout_graceful_shutdown=1,
    )
    return uvicorn.Server(config)


class FakeAmazonServer:
    """``with FakeAmazonServer(FakeAmazon(seed=7)) as server: server.url``."""

    def __init__(self, fake: FakeAmazon | None = None, host: str = "127.0.0.1", port: int = 0) -> None:
        self.fake = fake or FakeAmazon()
        self._socket = bind_socket(host, port)
        self._server = make_server(self.fake)
        self._thread = threading.Thread(target=self._run, name="fake-amazon", daemon=True)
        bound_host, bound_port = self._socket.getsockname()[:2]
        self.url = f"http://{bound_host}:{bound_port}"

    def _run(self) -> None:
        self._server.run(sockets=[self._socket])

    def start(self, timeout: float = 10.0) -> FakeAmazonServer:
        self._thread.start()
        deadline = time.monotonic() + timeout
        while not self._server.started:
            if not self._thread.is_alive() or time.monotonic() > deadline:
                raise RuntimeError("fake Amazon server did not start")
            time.sleep(0.005)
        return self

    def stop(self, timeout: float = 10.0) -> None:
        self._server.should_exit = True
        self._thread.join(timeout)
        self._socket.close()

    def __enter__(self) -> FakeAmazonServer:
        return self.start()

    def __exit__(self, *exc_info: object) -> None:
        self.stop()


@contextmanager
def running_fake_amazon(seed: int = 7, **options: object) -> Iterator[FakeAmazonServer]:
    """Start a seeded fake on a free port; stop it on exit. Options go to ``FakeAmazon``."""
    server = FakeAmazonServer(FakeAmazon(seed=seed, **options))  # type: ignore[arg-type]
    with server:
        yield server


def quiet_dropped_connection_logs() -> None:
    """uvicorn logs the deliberate ``drop`` fault as an application error; tests silence it."""
    logging.getLogger("uvicorn.error").setLevel(logging.CRITICAL)
