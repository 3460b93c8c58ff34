"""Processors for the held-job tests: each records when it started, by the Redis clock."""

from __future__ import annotations

import asyncio
import os
from typing import Any

from minique import Delayed, RateLimited, Registry

registry = Registry()

# One round trip: the start is stamped with Redis' own clock, the clock pause() and the
# control scripts use, so "started after pause() returned" is a comparison on one clock.
_STAMP = """
local t = redis.call('TIME')
redis.call('RPUSH', KEYS[1], ARGV[1] .. '|' .. (t[1] * 1000 + math.floor(t[2] / 1000)) .. '|' .. ARGV[2])
"""


def starts_key(job: Any) -> str:
    return f"{job.queue.keys.base}:starts"


@registry.processor("held", name="tick")
async def tick(job: Any) -> None:
    await job.queue.redis.eval(_STAMP, 1, starts_key(job), job.id, os.getpid())
    data = job.data or {}
    # The first run only: the job is back at the head of the queue once the limit passes.
    if data.get("limit") and await job.queue.redis.set(f"{starts_key(job)}:limited", 1, nx=True):
        # The moment of the raise, on the same clock (under "limited:<id>").
        await job.queue.redis.eval(_STAMP, 1, starts_key(job), f"limited:{job.id}", os.getpid())
        raise RateLimited(float(data["limit"]))
    # The first run only: Delayed(0) sends it to the head of the line, to run again next.
    if data.get("again") and await job.queue.redis.set(f"{starts_key(job)}:again", 1, nx=True):
        await job.queue.redis.eval(_STAMP, 1, starts_key(job), f"again:{job.id}", os.getpid())
        raise Delayed(0)
    if data.get("sleep"):
        await asyncio.sleep(float(data["sleep"]))
