"""Processors that the process-level tests run in real worker processes."""

from __future__ import annotations

import asyncio
from typing import Any

from minique import Registry

registry = Registry()


def effects_key(job: Any) -> str:
    return f"{job.queue.keys.base}:effects"


@registry.processor("procs", name="effect")
async def effect(job: Any) -> str:
    """Records its side effect, then takes a while: a kill lands while some are in flight."""
    await job.queue.redis.hincrby(effects_key(job), job.id, 1)
    await asyncio.sleep(job.data.get("sleep", 0.3))
    return "done"


@registry.processor("procs", name="stamp")
async def stamp(job: Any) -> None:
    """Records the server-side start time, for the rate-limit test."""
    await job.queue.redis.rpush(f"{job.queue.keys.base}:starts", repr(job.processed_on))


@registry.processor("procs", name="stamp_noop")
async def stamp_noop(job: Any) -> None:
    """Does nothing: the memory test is about what Redis keeps, not about the work."""


@registry.processor("procs", name="echo")
async def echo(job: Any) -> Any:
    """Returns its payload's "value" after its "sleep" seconds, or fails with its "error"."""
    await asyncio.sleep(job.data.get("sleep", 0))
    if "error" in job.data:
        raise ValueError(job.data["error"])
    return job.data.get("value")


# A registry that carries its own worker settings: `minique worker` applies them unless a
# flag says otherwise.
limited = Registry(worker_options={"limiter": {"max": 5, "duration": 0.5}, "concurrency": 7})
limited.add("procs", stamp, name="stamp")
