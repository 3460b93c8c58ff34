"""Observers that raise what is not an Exception (brk-hooks): a hook's SystemExit or
asyncio.CancelledError (a hook that calls ``result()`` on a cancelled future) must be logged
and never change the job's outcome, for a job alone and for a batch."""

from __future__ import annotations

import asyncio
from typing import Any, get_args

import pytest
from helpers import wait_until

from minique import Batch, GroupRateLimited, Job, Queue, Registry, Worker, WorkerObserver
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


class Outcomes(WorkerObserver):
    def __init__(self) -> None:
        self.seen: list[str] = []
        self.started: list[str] = []

    def job_started(self, queue: str, job: Job) -> None:
        self.started.append(job.id)

    def job_finished(self, queue: str, job: Job, outcome: Outcome, seconds: float) -> None:
        self.seen.append(outcome)


async def test_job_finished_gets_only_the_documented_outcomes(queue: Queue, redis_url: str) -> None:
    """GroupRateLimited and a batch handed back at shutdown reached observers as "group
    throttled" and "returned", outside the five outcomes WorkerObserver promises (a
    ``match`` on them, or a metric name built from them, broke)."""
    registry = Registry()
    throttled = asyncio.Event()

    @registry.processor(queue.name, name="throttle")
    async def throttle(job: Job) -> None:
        throttled.set()
        raise GroupRateLimited(30.0)

    @registry.processor(queue.name, name="gather", batch={"size": 5, "timeout": 30.0})
    async def gather(batch: Batch) -> None:
        pass

    seen = Outcomes()
    worker = Worker(queue.name, registry, url=redis_url, observers=[seen])
    await queue.add("throttle", None, group="g1")
    task = asyncio.create_task(worker.run())
    await asyncio.wait_for(throttled.wait(), 5)
    gathered = await queue.add("gather", None)  # gathered, waiting for 4 more until close()
    await wait_until(lambda: len(seen.seen) >= 1, timeout=5, message="the throttle recorded")
    # In the worker's gathering batch (it starts when it joins one): neither the stats' one
    # active job (it could still be the throttled one, its hand-back written after its
    # observers ran) nor the gathered job's state (active once taken, before the worker
    # gathers it) says so; CI runs closed before the batch had it.
    await wait_until(lambda: gathered.id in seen.started, timeout=5,
                     message="the batch gathering")
    await worker.close()
    await asyncio.wait_for(task, 5)
    assert len(seen.seen) == 2 and set(seen.seen) <= set(get_args(Outcome)), seen.seen



class AsyncHooks(WorkerObserver):
    async def job_finished(self, queue: str, job: Job, outcome: Outcome,  # type: ignore[override]
                           seconds: float) -> None:
        pass


def test_an_observer_with_async_hooks_is_refused() -> None:
    """An ``async def`` hook was called and never awaited: it silently never ran (a
    RuntimeWarning at best). Refused where the worker is made, naming the hook."""
    with pytest.raises(TypeError, match="job_finished"):
        Worker("q", Registry.single("q", lambda job: None), url="redis://127.0.0.1:1/0",
               observers=[AsyncHooks()])
