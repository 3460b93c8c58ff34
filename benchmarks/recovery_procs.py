"""Processor for benchmarks/recovery.py: records who started the job and when."""

from __future__ import annotations

import asyncio
import os
import time
from typing import Any

from minique import Registry

registry = Registry()


@registry.processor("recovery", name="hold")
async def hold(job: Any) -> None:
    await job.queue.redis.rpush(f"{job.queue.keys.base}:starts", f"{os.getpid()} {time.time()}")
    await asyncio.sleep(job.data["hold"])
