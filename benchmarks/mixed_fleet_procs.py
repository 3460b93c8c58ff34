"""Processors for benchmarks/mixed_fleet.py (queue "b18")."""

from __future__ import annotations

import asyncio
import os
from typing import Any

from minique import Registry

registry = Registry()

_STAMP = """
local t = redis.call('TIME')
local us = t[1] .. string.format('%06d', tonumber(t[2]))
redis.call('RPUSH', KEYS[1], ARGV[1] .. '|' .. us .. '|' .. ARGV[2])
"""


@registry.processor("b18", name="rec")
async def rec(job: Any) -> None:
    """Records its start (id|Redis clock in us|pid), one round trip."""
    await job.queue.redis.eval(_STAMP, 1, f"{job.queue.keys.base}:starts", job.id,
                               os.getpid())
    sleep = (job.data or {}).get("sleep")
    if sleep:
        await asyncio.sleep(float(sleep))


@registry.processor("b18", name="noop")
async def noop(job: Any) -> None:
    """Does nothing."""
