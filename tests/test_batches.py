"""Batch processors (minique/batch.py): up to ``size`` jobs per call, fewer after the
timeout, per-job failure, a raised exception fails the batch, kill -9 gives every job back."""

from __future__ import annotations

import asyncio
import json
import signal
from typing import Any

import pytest
from helpers import start_worker, wait_until

import minique.worker
from minique import Batch, Queue, Registry, Worker


async def calls(q: Queue) -> list[dict[str, Any]]:
    return [json.loads(x) for x in await q.redis.lrange(f"{q.keys.base}:batch-calls", 0, -1)]


async def run_worker(redis_url: str, q: Queue, registry: Registry, **kw: Any) -> tuple[Worker, Any]:
    worker = Worker(q.name, registry, url=redis_url, **kw)
    return worker, asyncio.create_task(worker.run())


async def test_full_batches_and_per_job_failure(redis_url: str, queue: Queue) -> None:
    seen: list[list[str]] = []
    registry = Registry()

    @registry.processor(queue.name, batch={"size": 5, "timeout": 5.0})
    async def handle(batch: Batch) -> None:
        seen.append([job.id for job in batch])
        for job in batch:
            if job.data["i"] % 3 == 0:
                batch.fail(job, "refused")

    jobs = await queue.add_bulk([("j", {"i": i}) for i in range(10)])
    worker, task = await run_worker(redis_url, queue, registry, concurrency=2)
    for job in jobs:
        await wait_until(lambda j=job: _finished(queue, j.id), timeout=20, message="finished")
    await worker.close()
    await task
    assert sorted(len(b) for b in seen) == [5, 5]  # concurrency is raised to the batch size
    for job in jobs:
        state = await queue.get_state(job.id)
        assert state == ("failed" if job.data["i"] % 3 == 0 else "completed"), job.data
    failed = await queue.get_job(jobs[0].id)
    assert failed is not None and "refused" in (failed.failed_reason or "")


async def _finished(q: Queue, job_id: str) -> bool:
    return await q.get_state(job_id) in ("completed", "failed")


async def test_a_partial_batch_runs_after_the_timeout(redis_url: str, queue: Queue) -> None:
    seen: list[tuple[int, float]] = []
    registry = Registry()
    loop = asyncio.get_running_loop()

    @registry.processor(queue.name, batch={"size": 50, "timeout": 0.3})
    async def handle(batch: Batch) -> None:
        seen.append((len(batch), loop.time()))

    worker, task = await run_worker(redis_url, queue, registry)
    await wait_until(lambda: _workers(queue), timeout=10, message="worker up")
    added = loop.time()
    jobs = await queue.add_bulk([("j", i) for i in range(3)])
    for job in jobs:
        await wait_until(lambda j=job: _finished(queue, j.id), timeout=10, message="finished")
    await worker.close()
    await task
    assert [n for n, _ in seen] == [3]
    assert seen[0][1] - added >= 0.3 - 0.05  # waited for more, up to the timeout


async def _workers(q: Queue) -> bool:
    return bool(await q.get_workers())


async def test_a_raised_exception_fails_every_job_of_the_batch(redis_url: str, queue: Queue) -> None:
    registry = Registry()

    @registry.processor(queue.name, batch={"size": 4, "timeout": 0.1})
    async def handle(batch: Batch) -> None:
        raise RuntimeError("bulk endpoint down")

    jobs = await queue.add_bulk([("j", i, {"attempts": 2}) for i in range(4)])
    worker, task = await run_worker(redis_url, queue, registry)
    for job in jobs:
        await wait_until(lambda j=job: _finished(queue, j.id), timeout=10, message="finished")
    await worker.close()
    await task
    for job in jobs:
        got = await queue.get_job(job.id)
        assert got is not None and got.state == "failed" and got.attempts_made == 2
        assert "bulk endpoint down" in (got.failed_reason or "")


async def test_kill_9_during_a_batch_gives_every_job_back(redis_url: str, procs: list[Any]) -> None:
    q = Queue("batches", url=redis_url, prefix="batchkill")
    await q.obliterate(force=True)
    jobs = await q.add_bulk([("j", {"sleep_once": 60} if i == 0 else {}) for i in range(5)])
    args = ("--prefix", "batchkill", "--lock-duration", "1", "--stalled-interval", "0.3",
            "--max-stalled-count", "3")
    victim = start_worker(redis_url, "batches", *args, target="tests.batch_procs:registry")
    procs.append(victim)

    async def first_call() -> bool:
        return len(await calls(q)) >= 1

    await wait_until(first_call, timeout=20, message="first batch called")
    victim.send_signal(signal.SIGKILL)
    victim.wait()
    assert sorted((await calls(q))[0]["ids"]) == sorted(j.id for j in jobs)
    procs.append(start_worker(redis_url, "batches", *args, target="tests.batch_procs:registry"))
    for job in jobs:
        await wait_until(lambda j=job: _finished(q, j.id), timeout=30, message="job done again")
    for job in jobs:
        got = await q.get_job(job.id)
        assert got is not None and got.state == "completed" and got.stalled_count == 1
    await q.obliterate(force=True)
    await q.close()


@pytest.mark.parametrize(("batch", "exc"), [
    ({"size": -1, "timeout": 1.0}, ValueError), ({"size": 0}, ValueError),
    ({"size": 5, "timeout": 0}, ValueError), ({"timeout": 1.0}, TypeError),
    ({"size": 5, "group": "one"}, ValueError), ({"size": 5, "group": None}, ValueError),
    ({"group": "same"}, TypeError), ({"size": 5, "groups": "same"}, TypeError),
    (5, TypeError)])
def test_bad_batch_options(batch: Any, exc: type[Exception]) -> None:
    registry = Registry()

    async def handle(b: Batch) -> None:
        return None

    with pytest.raises(exc, match="batch"):
        registry.add("q", handle, batch=batch)
    assert registry.queues() == []


def test_a_sync_function_cannot_be_a_batch_processor() -> None:
    def handle(b: Batch) -> None:
        return None

    with pytest.raises(TypeError, match="async"):
        Registry().add("q", handle, batch={"size": 2})


async def test_a_batch_full_before_its_gatherer_wakes_leaves_the_next_batch_gathering(
        redis_url: str, queue: Queue, monkeypatch: pytest.MonkeyPatch) -> None:
    """Break round 24: a runner back from a batch call found jobs buffered while another
    batch of the same key was gathering one job. In one loop turn, before that batch's
    gatherer woke, the first job filled it and the second began the next batch, which the
    third filled. Two batches of one key were then gathered at once, and whichever ended
    second found its entry gone (KeyError): its runner died before calling the processor,
    its jobs stayed active (leases renewed) for good, and close() never returned."""
    seen: list[list[int]] = []
    errors: list[BaseException | None] = []
    loop = asyncio.get_running_loop()
    loop.set_exception_handler(lambda _loop, ctx: errors.append(ctx.get("exception")))
    release = asyncio.Event()
    registry = Registry()

    @registry.processor(queue.name, batch={"size": 2, "timeout": 3.0})
    async def handle(batch: Batch) -> None:
        data = sorted(job.data for job in batch)
        if data == [1, 2]:
            await release.wait()
        seen.append(data)

    # The runner back from the first call takes the buffered jobs without yielding first
    # (it yields after RUNNER_SLICE of running, which its wait in the call counts).
    monkeypatch.setattr(minique.worker, "RUNNER_SLICE", 3600.0)
    worker, task = await run_worker(redis_url, queue, registry, concurrency=10)
    real_start = worker._start
    armed = False

    def start(*args: Any, **kwargs: Any) -> None:
        # The first batch's call returns in the loop turn that buffers jobs 4 to 6, its
        # runner woken first: it takes them before the gatherer of job 3's batch wakes
        # (more buffered than results: it does not yield to the dispatcher first).
        if armed:
            release.set()
        real_start(*args, **kwargs)

    worker._start = start  # type: ignore[method-assign]
    try:
        jobs = await queue.add_bulk([("j", 1), ("j", 2)])

        async def active(job_id: str) -> bool:
            return await queue.get_state(job_id) == "active"
        await wait_until(lambda: active(jobs[1].id), message="the first batch called")
        third = await queue.add("j", 3)
        await wait_until(lambda: active(third.id), message="job 3's batch gathering")
        armed = True
        await queue.add_bulk([("j", 4), ("j", 5), ("j", 6)])
        await wait_until(lambda: len(seen) >= 3, timeout=10, message="three batches called")
        assert sorted(seen) == [[1, 2], [3, 4], [5, 6]]
        async with asyncio.timeout(10):
            await worker.close()
            await task
        assert not errors, errors
    finally:
        loop.set_exception_handler(None)
        if not task.done():
            task.cancel()


async def test_a_fault_while_gathering_still_runs_the_gathered_jobs(
        redis_url: str, queue: Queue, monkeypatch: pytest.MonkeyPatch) -> None:
    """The class of the test above: whatever goes wrong in the gathering's own bookkeeping,
    the jobs it gathered still reach the processor and end; none stays active for good."""
    seen: list[list[int]] = []
    registry = Registry()

    @registry.processor(queue.name, batch={"size": 2, "timeout": 0.2})
    async def handle(batch: Batch) -> None:
        seen.append(sorted(job.data for job in batch))

    worker, task = await run_worker(redis_url, queue, registry, concurrency=4)
    real_pull = worker._pull_batch_jobs
    faults = [1]

    def pull(*args: Any) -> None:
        if faults:
            faults.pop()
            raise RuntimeError("a fault in the gathering")
        real_pull(*args)

    worker._pull_batch_jobs = pull  # type: ignore[method-assign]
    try:
        jobs = await queue.add_bulk([("j", 1), ("j", 2), ("j", 3)])
        for job in jobs:
            await wait_until(lambda j=job: _finished(queue, j.id), timeout=10,
                             message="every job ended")
        assert not faults and sorted(i for b in seen for i in b) == [1, 2, 3]
        async with asyncio.timeout(10):
            await worker.close()
            await task
    finally:
        if not task.done():
            task.cancel()
