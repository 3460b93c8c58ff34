"""A batch processor can see which of its jobs were cancelled during its call (brk-hooks):
it used to have no way to know, so it did their work (a webhook sent) for a job then
recorded as cancelled."""

from __future__ import annotations

import asyncio

import pytest
from helpers import wait_until

from minique import Batch, JobFailed, Queue, Registry, Worker


async def test_batch_cancelled_tells_the_processor(queue: Queue, redis_url: str) -> None:
    registry = Registry()
    inside, go = asyncio.Event(), asyncio.Event()
    seen: dict[str, bool] = {}
    done: list[str] = []

    @registry.processor(queue.name, batch={"size": 2, "timeout": 5.0})
    async def work(batch: Batch) -> None:
        assert not any(batch.cancelled(job) for job in batch)
        inside.set()
        await go.wait()
        for job in batch:
            seen[job.name] = batch.cancelled(job)
            if not batch.cancelled(job):
                done.append(job.name)
                batch.complete(job, "done")

    keep = await queue.add("keep", None)
    drop = await queue.add("drop", None)
    worker = Worker(queue.name, registry, url=redis_url)
    task = asyncio.create_task(worker.run())
    try:
        await asyncio.wait_for(inside.wait(), 5)
        assert await queue.cancel(drop.id)

        # The cancel reaches the worker through Redis: wait until the batch knows of it.
        await wait_until(lambda: worker._running[drop.id].cancel_reason is not None,
                         timeout=5, message="the worker told of the cancel")
        go.set()
        assert await keep.wait_until_finished(timeout=5) == "done"
        with pytest.raises(JobFailed, match="cancelled"):
            await drop.wait_until_finished(timeout=5)
        assert seen == {"keep": False, "drop": True} and done == ["keep"]
        with pytest.raises(ValueError):
            Batch([keep]).cancelled(drop)
    finally:
        go.set()
        await worker.close()
        await asyncio.wait_for(task, 5)

