"""A registry with start-up and shutdown hooks, for the `minique worker` hook tests: each
hook appends its name to a Redis list of the queue, where the test reads the order."""

from __future__ import annotations

from typing import Any

import redis.asyncio as redis_async

from minique import Registry

registry = Registry()


async def _note(url: str, prefix: str, what: str) -> None:
    client = redis_async.Redis.from_url(url)
    try:
        await client.rpush(f"hooks-test:{prefix}", what)
    finally:
        await client.aclose()


@registry.on_startup
async def opened(url: str, prefix: str) -> None:
    await _note(url, prefix, "startup")


@registry.on_shutdown
async def closed(url: str, prefix: str) -> None:
    await _note(url, prefix, "shutdown")


@registry.on_shutdown
async def broken(url: str, prefix: str) -> None:
    raise RuntimeError("a shutdown hook that fails")


@registry.on_shutdown
async def after_broken(url: str, prefix: str) -> None:
    await _note(url, prefix, "shutdown-2")


@registry.processor("hooked")
async def work(job: Any) -> None:
    await job.queue.redis.rpush(f"hooks-test:{job.data['prefix']}", f"job {job.id}")
