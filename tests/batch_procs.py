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
    sleep = next((float(job.data["sleep_once"]) for job in batch
                  if job.data and job.data.get("sleep_once")), 0.0)
    # The sleep is claimed before the call is recorded: the tests stop or kill the worker on
    # seeing the call, and a claim left for after that would go to the worker taking over.
    if sleep and not await queue.redis.set(f"{queue.keys.base}:slept", os.getpid(), nx=True):
        sleep = 0.0
    await queue.redis.rpush(f"{queue.keys.base}:batch-calls", json.dumps({"ids": ids, "pid": os.getpid()}))
    if sleep:
        try:
            await asyncio.sleep(sleep)
        except asyncio.CancelledError:
            # The worker gave the call up (leases lost, shutdown past its grace).
            await queue.redis.rpush(f"{queue.keys.base}:batch-cancelled", os.getpid())
            raise
    for job in batch:
        if (job.data or {}).get("fail"):
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
