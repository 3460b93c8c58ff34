"""Stopping a job wherever it is (arq's Job.abort, Celery's revoke): docs/guide/workers.md,
"Timeouts and cancel"."""

from __future__ import annotations

import asyncio
from typing import Any

import driver
from helpers import wait_until

from minique import Queue, Worker


async def test_a_job_not_started_is_removed_and_a_finished_one_left(queue: Queue) -> None:
    waiting = await queue.add("t", 1)
    delayed = await queue.add("t", 2, delay=3600)
    done = await queue.add("t", 3)
    [(_, token)] = await driver.fetch(queue, 1)  # the first waiting job: `waiting`
    await driver.finish(queue, [driver.complete(waiting.id, token)])
    assert await queue.abort(waiting.id) is False  # completed meanwhile: left as it is
    assert await queue.get_state(waiting.id) == "completed"
    assert await delayed.abort() is True
    assert await queue.get_state(delayed.id) == "unknown"
    assert await queue.abort(done.id) is True
    assert await queue.abort(done.id) is False  # gone
    assert await queue.abort("no-such-job") is False
    assert (await queue.get_stats())["total"] == 1


async def test_a_running_job_is_cancelled(queue: Queue, redis_url: str) -> None:
    running = asyncio.Event()

    async def work(job: Any) -> None:
        running.set()
        await asyncio.sleep(60)

    job = await queue.add("t", 1)
    worker = Worker(queue.name, work, url=redis_url)
    task = asyncio.create_task(worker.run(handle_signals=False))
    try:
        await asyncio.wait_for(running.wait(), 20)
        assert await queue.abort(job.id) is True

        async def failed() -> bool:
            return await queue.get_state(job.id) == "failed"
        await wait_until(failed, timeout=20, message="the job failed as cancelled")
        stored = await queue.get_job(job.id)
        assert stored is not None and stored.failed_reason == "cancelled"
    finally:
        await worker.close()
        await task


async def test_a_held_job_is_removed_or_if_started_cancelled(queue: Queue) -> None:
    jobs = await queue.add_bulk([("t", i) for i in range(2)])
    tokens = await driver.hold(queue, 2, 5000)
    first, second = jobs[0].id, jobs[1].id
    aborting = asyncio.create_task(queue.abort(first))

    async def marked() -> bool:
        return await queue.redis.hget(queue.keys.job(first), "st") == b"removed"
    await wait_until(marked, timeout=5, message="the removal reached Redis")
    await driver.hand_back(queue, {first: tokens[first]})
    assert await asyncio.wait_for(aborting, 10) is True
    assert await queue.get_state(first) == "unknown"
    # The second one its holder had started before the removal reached it: cancelled.
    aborting = asyncio.create_task(queue.abort(second))
    await wait_until(lambda: _st(queue, second, b"removed"), timeout=5, message="marked")
    statuses, _, _ = await driver.finish(
        queue, [(second, tokens[second], "s", "", "", 0, -1, -1, "1")], worker="holder")
    assert statuses == [1]
    await wait_until(lambda: _cx(queue, second), timeout=5, message="the cancel was asked")
    # Its worker hears of the cancel and fails it so: abort() answers then.
    await driver.finish(queue, [driver.fail(second, tokens[second], "cancelled")],
                        worker="holder")
    assert await asyncio.wait_for(aborting, 10) is True


async def _cx(q: Queue, job_id: str) -> bool:
    return await q.redis.hget(q.keys.job(job_id), "cx") is not None


async def _st(q: Queue, job_id: str, st: bytes) -> bool:
    return await q.redis.hget(q.keys.job(job_id), "st") == st


async def test_a_job_that_went_back_for_another_attempt_in_between_is_removed(
        queue: Queue) -> None:
    """The removal finds the job active; before the cancel reaches it, its attempt fails
    and it is delayed for a retry: a cancel finds nothing active (False), but the job
    would run again. abort() removes it then."""
    job = await queue.add("t", 1, attempts=3)
    [(_, token)] = await driver.fetch(queue, 1)
    cancel = queue.cancel

    async def retried_first(job_id: str) -> bool:
        await driver.finish(queue, [driver.retry(job_id, token, delay_ms=60_000)])
        return await cancel(job_id)

    queue.cancel = retried_first  # type: ignore[method-assign]
    try:
        assert await queue.abort(job.id) is True
    finally:
        queue.cancel = cancel  # type: ignore[method-assign]
    assert await queue.get_state(job.id) == "unknown"
