"""Processors for tests/test_break_differential.py, run by real worker processes."""

from __future__ import annotations

import os
from typing import Any

from minique import Registry

registry = Registry()


@registry.processor("diff", name="tick")
async def tick(job: Any) -> None:
    data = job.data or {}
    if data.get("poison"):
        # Kills its worker at its start, before the worker can tell Redis it started.
        os._exit(9)
    await job.queue.redis.rpush(f"{job.queue.keys.base}:runs", job.id)
