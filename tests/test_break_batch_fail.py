"""Attacks on batch.fail(job, GroupRateLimited | RateLimited | Delayed) (minique/worker.py
``_put_back``): jobs without a group, every job of a batch, a queue-wide limit given for one
job, a cancel, and the last-call-wins rule."""

from __future__ import annotations

import asyncio
import time

from helpers import wait_until
from test_batches_semantics import all_in, run_worker, stop

from minique import Batch, Delayed, GroupRateLimited, Queue, RateLimited, Registry


async def test_group_rate_limited_for_every_job_of_a_batch_without_groups(
        redis_url: str, queue: Queue) -> None:
    """batch.fail(job, GroupRateLimited) for jobs that have no group: each waits alone (a
    Delayed), and every one completes on its single attempt. (Holds.)"""
    calls: dict[str, int] = {}
    registry = Registry()

    @registry.processor(queue.name, batch={"size": 4, "timeout": 0.2})
    async def handle(batch: Batch) -> None:
        for job in batch:
            calls[job.id] = calls.get(job.id, 0) + 1
            if calls[job.id] == 1:
                batch.fail(job, GroupRateLimited(0.2, "upstream 429"))

    jobs = await queue.add_bulk([("j", i, {"attempts": 1}) for i in range(4)])
    worker, task = await run_worker(redis_url, queue, registry)
    ids = [j.id for j in jobs]
    await wait_until(lambda: all_in(queue, ids), timeout=20, message="all ran")
    await stop(worker, task)
    for job_id in ids:
        got = await queue.get_job(job_id)
        assert got is not None and got.state == "completed" and got.attempts_made == 1, got
        assert calls[job_id] == 2


async def test_a_queue_rate_limit_from_batch_fail_stops_the_queue_and_costs_no_attempt(
        redis_url: str, queue: Queue) -> None:
    """batch.fail(one job, RateLimited(d)): that job goes back with no attempt used, the rest
    of the batch completes, and the queue takes nothing for d (no job starts inside the
    window). (Holds.)"""
    delay = 1.5
    starts: list[tuple[str, float]] = []
    limited_at: list[float] = []
    registry = Registry()

    @registry.processor(queue.name, batch={"size": 3, "timeout": 0.2})
    async def handle(batch: Batch) -> None:
        now = time.time()
        for job in batch:
            starts.append((job.id, now))
        if not limited_at:
            limited_at.append(time.time())
            batch.fail(batch.jobs[0], RateLimited(delay, "upstream 429"))

    first = await queue.add_bulk([("j", i, {"attempts": 1}) for i in range(3)])
    worker, task = await run_worker(redis_url, queue, registry)
    await wait_until(lambda: bool(limited_at), timeout=10, message="the first batch ran")
    more = await queue.add_bulk([("j", i, {"attempts": 1}) for i in range(3, 6)])
    ids = [j.id for j in first + more]
    await wait_until(lambda: all_in(queue, ids), timeout=20, message="all ran")
    await stop(worker, task)
    for job_id in ids:
        got = await queue.get_job(job_id)
        assert got is not None and got.state == "completed" and got.attempts_made == 1, got
    later = [t for job_id, t in starts if t > limited_at[0]]
    assert later and min(later) >= limited_at[0] + delay * 0.9, (limited_at, starts)


async def test_complete_after_a_put_back_fail_wins(redis_url: str, queue: Queue) -> None:
    """The last of complete / fail wins, for the put-back kinds too. (Holds.)"""
    calls = [0]
    registry = Registry()

    @registry.processor(queue.name, batch={"size": 2, "timeout": 0.2})
    async def handle(batch: Batch) -> None:
        calls[0] += 1
        for job in batch:
            batch.fail(job, Delayed(30))
            batch.complete(job, "done")

    jobs = await queue.add_bulk([("j", i) for i in range(2)])
    worker, task = await run_worker(redis_url, queue, registry)
    ids = [j.id for j in jobs]
    await wait_until(lambda: all_in(queue, ids), timeout=20, message="all ran")
    await stop(worker, task)
    for job_id in ids:
        got = await queue.get_job(job_id)
        assert got is not None and got.state == "completed" and got.return_value == "done"


async def test_a_cancel_during_the_call_beats_a_put_back(redis_url: str, queue: Queue) -> None:
    """A job cancelled while its batch runs ends cancelled even if the processor put it back
    with Delayed / GroupRateLimited: a cancel is not undone by a retry later. (Holds.)"""
    entered = asyncio.Event()
    go = asyncio.Event()
    registry = Registry()

    @registry.processor(queue.name, batch={"size": 2, "timeout": 0.2})
    async def handle(batch: Batch) -> None:
        entered.set()
        await go.wait()
        batch.fail(batch.jobs[0], Delayed(0.1))
        batch.fail(batch.jobs[1], GroupRateLimited(0.1))

    jobs = await queue.add_bulk([("j", 0), ("j", 1, {"group": "g"})])
    worker, task = await run_worker(redis_url, queue, registry)
    await wait_until(entered.is_set, timeout=10, message="the batch runs")
    for job in jobs:
        assert await queue.cancel(job.id)
    go.set()
    ids = [j.id for j in jobs]
    await wait_until(lambda: all_in(queue, ids), timeout=20, message="both ended")
    await stop(worker, task)
    for job_id in ids:
        got = await queue.get_job(job_id)
        assert got is not None and got.state == "failed", got
