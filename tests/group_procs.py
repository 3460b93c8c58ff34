"""Processors for the group tests with real workers: each records its start and end by the
Redis clock, with its group (carried in the payload) and its process id."""

from __future__ import annotations

import asyncio
import os
from typing import Any

from minique import GroupRateLimited, Registry

registry = Registry()

_STAMP = """
local t = redis.call('TIME')
redis.call('RPUSH', KEYS[1], ARGV[1] .. '|' .. (t[1] * 1000 + math.floor(t[2] / 1000)) .. '|' .. ARGV[2])
"""


async def stamp(job: Any, what: str) -> None:
    data = job.data or {}
    await job.queue.redis.eval(_STAMP, 1, f"{job.queue.keys.base}:stamps",
                               f"{what}|{job.id}|{data.get('g', '')}", os.getpid())


@registry.processor("groups", name="work")
async def work(job: Any) -> None:
    data = job.data or {}
    # Marked before the start stamp: a kill -9 right after the stamp (the tests kill on
    # seeing it) must not leave the retry thinking it is the first run.
    first_run = bool(await job.queue.redis.set(f"{job.queue.keys.base}:once:{job.id}", 1, nx=True))
    await stamp(job, "start")
    if data.get("throttle") and first_run:
        await stamp(job, "throttled")
        raise GroupRateLimited(float(data["throttle"]))
    sleep = (data.get("sleep_once") if first_run else None) or data.get("sleep")
    if sleep:
        try:
            await asyncio.sleep(float(sleep))
        except asyncio.CancelledError:
            await stamp(job, "cancelled")  # the worker gave the run up (lease lost, cancel)
            raise
    await stamp(job, "end")
