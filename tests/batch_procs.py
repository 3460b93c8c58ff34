"""A batch processor for the batch tests with real worker processes: it records each call
(its job ids and process) and sleeps for as long as a job of the batch asks, once."""

from __future__ import annotations

import asyncio
import json
import os

from minique import Batch, Registry, UnrecoverableError

registry = Registry()


@registry.processor("batches", batch={"size": 5, "timeout": 0.2})
async def handle(batch: Batch) -> None:
    queue = batch.jobs[0].queue
    ids = [job.id for job in batch]
    await queue.redis.rpush(f"{queue.keys.base}:batch-calls", json.dumps({"ids": ids, "pid": os.getpid()}))
    for job in batch:
        data = job.data or {}
        if data.get("sleep_once") and await queue.redis.set(f"{queue.keys.base}:slept", 1, nx=True):
            try:
                await asyncio.sleep(float(data["sleep_once"]))
            except asyncio.CancelledError:
                # The worker gave the call up (leases lost, shutdown past its grace).
                await queue.redis.rpush(f"{queue.keys.base}:batch-cancelled", os.getpid())
                raise
        if data.get("fail"):
            batch.fail(job, "refused")


@registry.processor("batches-groups", batch={"size": 4, "timeout": 0.3, "group": "same"})
async def deliver(batch: Batch) -> None:
    """One group per batch (an endpoint); per-job outcomes as each job's data asks."""
    queue = batch.jobs[0].queue
    await queue.redis.rpush(f"{queue.keys.base}:batch-calls", json.dumps(
        {"ids": [job.id for job in batch], "groups": [job.group for job in batch],
         "pid": os.getpid()}))
    for job in batch:
        outcome = (job.data or {}).get("outcome")
        if outcome == "retry":
            batch.fail(job, "endpoint said 500")
        elif outcome == "fatal":
            batch.fail(job, UnrecoverableError("endpoint gone"))
        else:
            batch.complete(job, {"delivered": job.id})
