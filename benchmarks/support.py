"""Shared by the group and batch benchmarks: a Redis to run against, and timing a worker."""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Iterator

from minique import Queue, Worker
from minique.server import RedisServer


@contextlib.contextmanager
def redis_url(url: str | None) -> Iterator[str]:
    """``url``, or a Redis server of its own for the benchmark's duration."""
    if url is not None:
        yield url
        return
    server = RedisServer()
    server.start()
    try:
        yield server.url
    finally:
        server.stop()


async def seconds_to_complete(q: Queue, worker: Worker, n: int) -> float:
    """Runs ``worker`` until ``q`` has ``n`` completed jobs; then stops it. Returns seconds."""
    start = time.perf_counter()
    task = asyncio.create_task(worker.run())
    while (await q.get_stats())["completed"] < n:
        await asyncio.sleep(0.02)
    took = time.perf_counter() - start
    await worker.close()
    await task
    return took
