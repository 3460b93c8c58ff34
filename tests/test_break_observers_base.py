"""Observers that raise what is not an Exception (brk-hooks): a hook's SystemExit or
asyncio.CancelledError (a hook that calls ``result()`` on a cancelled future) must be logged
and never change the job's outcome, for a job alone and for a batch."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

from minique import Batch, Job, Queue, Registry, Worker, WorkerObserver
from minique.observers import Outcome


class Raising(WorkerObserver):
    def __init__(self, hook: str, error: type[BaseException]) -> None:
        self.hook, self.error = hook, error

    def _maybe(self, hook: str) -> None:
        if hook == self.hook:
            raise self.error("observer broke")

    def job_started(self, queue: str, job: Job) -> None:
        self._maybe("job_started")

    def job_finished(self, queue: str, job: Job, outcome: Outcome, seconds: float) -> None:
        self._maybe("job_finished")

    def job_failed(self, queue: str, job: Job, reason: str, stacktrace: str, final: bool) -> None:
        self._maybe("job_failed")


@pytest.mark.parametrize("error", [SystemExit, asyncio.CancelledError])
@pytest.mark.parametrize("hook", ["job_started", "job_finished", "job_failed"])
@pytest.mark.parametrize("batch", [False, True])
async def test_a_hook_that_raises_a_base_exception_changes_nothing(
        queue: Queue, redis_url: str, hook: str, error: type[BaseException], batch: bool) -> None:
    registry = Registry()
    if batch:
        @registry.processor(queue.name, batch={"size": 2, "timeout": 0.05})
        async def run_batch(b: Batch) -> None:
            for job in b:
                if job.name == "bad":
                    b.fail(job, "refused")
                else:
                    b.complete(job, "ok")
    else:
        @registry.processor(queue.name)
        async def run_one(job: Job) -> Any:
            if job.name == "bad":
                raise ValueError("refused")
            return "ok"

    worker = Worker(queue.name, registry, url=redis_url, observers=[Raising(hook, error)])
    good = await queue.add("good", None)
    bad = await queue.add("bad", None, attempts=1)
    task = asyncio.create_task(worker.run())
    try:
        assert await good.wait_until_finished(timeout=4) == "ok"
        with pytest.raises(Exception, match="refused"):
            await bad.wait_until_finished(timeout=4)
        assert not task.done()
    finally:
        await worker.close()
        await asyncio.wait_for(task, 5)
