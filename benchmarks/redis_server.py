"""A private redis-server for the benchmark run, plus a small client facade.

Every venv the harness drives (main, peers, arq) has redis-py, so the facade wraps it; this
module imports nothing else from the project, so the peers' venvs can load it.
"""

from __future__ import annotations

import atexit
import os
import shutil
import socket
import subprocess
import tempfile
import time
from types import TracebackType

RespValue = bytes | int | str | list["RespValue"] | None


class RespError(Exception):
    """An error reply from Redis."""


class RespClient:
    """A blocking client on redis-py (present in every venv the harness drives), with the
    call/pipeline shape the scenario driver uses; replies are raw (bytes, ints, lists)."""

    def __init__(self, host: str = "127.0.0.1", port: int = 6379, timeout: float = 10.0) -> None:
        import redis

        self._redis = redis.Redis(host=host, port=port, socket_timeout=timeout,
                                  socket_connect_timeout=timeout)
        self._error = redis.RedisError
        # Raw replies, as the scenario driver expects (no INFO parsing, no PING -> True).
        self._redis.response_callbacks.clear()

    @classmethod
    def from_url(cls, url: str, timeout: float = 10.0) -> RespClient:
        host, port = parse_url(url)
        return cls(host, port, timeout)

    def call(self, *args: object) -> RespValue:
        try:
            return self._redis.execute_command(*args)  # type: ignore[no-any-return]
        except self._error as exc:
            raise RespError(str(exc)) from exc

    def pipeline(self, commands: list[tuple[object, ...]]) -> list[RespValue]:
        """Sends several commands in one round trip; error replies are returned, not raised."""
        if not commands:
            return []
        pipe = self._redis.pipeline(transaction=False)
        for command in commands:
            pipe.execute_command(*command)
        replies = pipe.execute(raise_on_error=False)
        return [str(r) if isinstance(r, Exception) else r for r in replies]

    def close(self) -> None:
        self._redis.close()


def as_int(value: RespValue) -> int:
    """An integer or bulk-string reply (``None`` counts as 0)."""
    if value is None:
        return 0
    if isinstance(value, int):
        return value
    if isinstance(value, bytes | str):
        return int(value)
    raise RespError(f"expected an integer reply, got {value!r}")


def parse_url(url: str) -> tuple[str, int]:
    """``redis://127.0.0.1:6379[/0]`` -> (host, port)."""
    rest = url.split("://", 1)[-1].split("/", 1)[0]
    host, _, port = rest.rpartition(":")
    return host or "127.0.0.1", int(port or 6379)


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def parse_info(text: bytes | str) -> dict[str, str]:
    raw = text.decode() if isinstance(text, bytes) else text
    out: dict[str, str] = {}
    for line in raw.splitlines():
        if line and not line.startswith("#") and ":" in line:
            key, _, value = line.partition(":")
            out[key] = value
    return out


class RedisServer:
    """Start ``redis-server`` on a free loopback port; stop it on exit (also via atexit)."""

    def __init__(self, binary: str = "redis-server") -> None:
        found = shutil.which(binary)
        if found is None:
            raise RuntimeError(f"{binary} not found on PATH (apt-get install redis-server)")
        self.binary = found
        self.port = free_port()
        self.host = "127.0.0.1"
        self.proc: subprocess.Popen[bytes] | None = None
        self.workdir = tempfile.mkdtemp(prefix="bench-redis-")
        self.logfile = os.path.join(self.workdir, "redis.log")

    @property
    def url(self) -> str:
        return f"redis://{self.host}:{self.port}"

    def start(self, timeout: float = 10.0) -> RedisServer:
        cmd = [
            self.binary,
            "--port",
            str(self.port),
            "--bind",
            self.host,
            "--save",
            "",
            "--appendonly",
            "no",
            "--daemonize",
            "no",
            "--dir",
            self.workdir,
            "--logfile",
            self.logfile,
        ]
        self.proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        atexit.register(self.stop)
        deadline = time.monotonic() + timeout
        while True:
            if self.proc.poll() is not None:
                raise RuntimeError(f"redis-server exited with {self.proc.returncode}; see {self.logfile}")
            try:
                client = RespClient(self.host, self.port, timeout=1.0)
                try:
                    if client.call("PING") in (True, "PONG", b"PONG"):
                        return self
                finally:
                    client.close()
            except (OSError, RespError):
                pass
            if time.monotonic() > deadline:
                self.stop()
                raise RuntimeError("redis-server did not answer PING in time")
            time.sleep(0.05)

    def call(self, *args: object) -> RespValue:
        client = RespClient(self.host, self.port)
        try:
            return client.call(*args)
        finally:
            client.close()

    def flushall(self) -> None:
        self.call("FLUSHALL")

    def info(self, section: str = "server") -> dict[str, str]:
        reply = self.call("INFO", section)
        assert isinstance(reply, bytes)
        return parse_info(reply)

    def version(self) -> str:
        return self.info("server").get("redis_version", "?")

    def stop(self) -> None:
        proc, self.proc = self.proc, None
        if proc is not None and proc.poll() is None:
            proc.terminate()
            try:
                proc.wait(5)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait(5)
        shutil.rmtree(self.workdir, ignore_errors=True)

    def __enter__(self) -> RedisServer:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()
