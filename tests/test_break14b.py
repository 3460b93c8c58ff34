"""Break tests for update_data, change_priority/change_delay, worker.pause and the global
rate limit (break14b). Each test here FAILS on the code it was written against."""

from __future__ import annotations

import asyncio
import time
from typing import Any

from helpers import wait_until

from minique import Queue, Worker


async def test_removing_the_global_rate_limit_lets_a_limited_worker_go_on(
        queue: Queue, redis_url: str) -> None:
    """set_global_rate_limit(1, 60), 4 jobs, one worker: one starts, the worker is told to
    wait ~60 s. remove_global_rate_limit(): the workers' own limiters (none) apply again,
    so the other 3 jobs should run at once (within a few seconds)."""
    done: list[str] = []

    async def work(job: Any) -> None:
        done.append(job.id)

    await queue.set_global_rate_limit(1, 60)
    await queue.add_bulk([("t", i) for i in range(4)])
    worker = Worker(queue.name, work, url=redis_url, concurrency=2)
    task = asyncio.create_task(worker.run(handle_signals=False))
    try:
        await wait_until(lambda: len(done) >= 1, timeout=20, message="the first job ran")
        await asyncio.sleep(0.5)  # the worker has been told to wait
        assert len(done) == 1
        await queue.remove_global_rate_limit()
        time.monotonic()
        await wait_until(lambda: len(done) >= 4, timeout=8,
                         message="the 3 other jobs run after remove_global_rate_limit()")
    finally:
        await worker.close()
        await task


async def test_loosening_the_global_rate_limit_reaches_a_limited_worker(
        queue: Queue, redis_url: str) -> None:
    """set_global_rate_limit(1, 60) then, once the worker is limited, set_global_rate_limit(
    100, 1): the new limit wins at once, as BullMQ's does, so the 3 other jobs should run
    within a few seconds. They wait out the old 60 s instead."""
    done: list[str] = []

    async def work(job: Any) -> None:
        done.append(job.id)

    await queue.set_global_rate_limit(1, 60)
    await queue.add_bulk([("t", i) for i in range(4)])
    worker = Worker(queue.name, work, url=redis_url, concurrency=2)
    task = asyncio.create_task(worker.run(handle_signals=False))
    try:
        await wait_until(lambda: len(done) >= 1, timeout=20, message="the first job ran")
        await asyncio.sleep(0.5)
        assert len(done) == 1
        await queue.set_global_rate_limit(100, 1)
        await wait_until(lambda: len(done) >= 4, timeout=8,
                         message="the 3 other jobs run under the looser limit")
    finally:
        await worker.close()
        await task


async def test_pause_from_a_job_through_wait_for_does_not_wait_for_itself(
        queue: Queue, redis_url: str) -> None:
    """A processor calls ``await asyncio.wait_for(worker.pause(), 3)`` (a bounded wait, as
    people write it). Docs: from inside one of the worker's own jobs, pause() with
    wait_active=True raises RuntimeError (it would wait for itself). On Python 3.11,
    wait_for runs the coroutine in a task of its own, so the check (the current task is a
    job's task) misses it: pause() waits for the very job that called it and the job
    hangs until the timeout."""
    out: list[str] = []

    async def work(job: Any) -> None:
        try:
            await asyncio.wait_for(worker.pause(), 3)
            out.append("returned")
        except RuntimeError:
            out.append("RuntimeError")
        except TimeoutError:
            out.append("hung: pause() waited for its own job")

    await queue.add("t", 1)
    worker = Worker(queue.name, work, url=redis_url, concurrency=1)
    task = asyncio.create_task(worker.run(handle_signals=False))
    try:
        await wait_until(lambda: bool(out), timeout=20, message="the job ended")
    finally:
        await worker.close()
        await task
    assert out == ["RuntimeError"]


async def test_pause_returns_when_the_jobs_running_at_pause_end(
        queue: Queue, redis_url: str) -> None:
    """pause() waits for the jobs running when it was called ("Running jobs run on ...
    pause() returns once they have ended"). Here job 1 (1 s) runs, pause() is called,
    resume() follows, and job 2 (5 s) starts. Expected: pause() returns once job 1 ended
    (~1 s). It waits until the worker is idle, i.e. for job 2 too (~5 s); under steady load
    it would never return."""
    began: dict[int, float] = {}

    async def work(job: Any) -> None:
        began[job.data] = time.monotonic()
        await asyncio.sleep(1.0 if job.data == 1 else 5.0)

    await queue.add("t", 1)
    worker = Worker(queue.name, work, url=redis_url, concurrency=2)
    task = asyncio.create_task(worker.run(handle_signals=False))
    try:
        await wait_until(lambda: 1 in began, timeout=20, message="job 1 running")
        pausing = asyncio.create_task(worker.pause())
        await asyncio.sleep(0.1)
        assert not pausing.done()
        worker.resume()
        await queue.add("t", 2)
        await wait_until(lambda: 2 in began, timeout=10, message="job 2 running")
        await asyncio.wait([pausing], timeout=2.5)
        assert pausing.done(), "pause() still waiting after the job it waited for ended"
    finally:
        await worker.close()
        await task
