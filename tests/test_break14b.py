"""Break tests for update_data, change_priority/change_delay, worker.pause and the global
rate limit (break14b). Each test here FAILS on the code it was written against."""

from __future__ import annotations

import asyncio
import time
from typing import Any

import pytest
from helpers import wait_until

from minique import Queue, Worker


@pytest.mark.parametrize("change", ["removed", "loosened"])
async def test_a_lifted_global_rate_limit_reaches_a_limited_worker(
        queue: Queue, redis_url: str, change: str) -> None:
    """set_global_rate_limit(1, 60), 4 jobs, one worker: one starts, the worker is told to
    wait ~60 s. remove_global_rate_limit() (the workers' own limiters, none, apply again),
    or set_global_rate_limit(100, 1) (the new limit wins at once, as BullMQ's does): the
    other 3 jobs should run within a few seconds. They waited out the old 60 s."""
    done: list[str] = []

    async def work(job: Any) -> None:
        done.append(job.id)

    await queue.set_global_rate_limit(1, 60)
    await queue.add_bulk([("t", i) for i in range(4)])
    worker = Worker(queue.name, work, url=redis_url, concurrency=2)
    task = asyncio.create_task(worker.run(handle_signals=False))
    try:
        await wait_until(lambda: len(done) >= 1, timeout=20, message="the first job ran")
        await wait_until(lambda: worker._limited_until > 0, timeout=20,
                         message="the worker told to wait")
        assert len(done) == 1
        if change == "removed":
            await queue.remove_global_rate_limit()
        else:
            await queue.set_global_rate_limit(100, 1)
        await wait_until(lambda: len(done) >= 4, timeout=5,
                         message=f"the 3 other jobs run once the limit is {change}")
    finally:
        await worker.close()
        await task


@pytest.mark.parametrize("how", ["wait_for", "gather"])
async def test_pause_from_a_job_through_wait_for_does_not_wait_for_itself(
        queue: Queue, redis_url: str, how: str) -> None:
    """A processor calls ``await asyncio.wait_for(worker.pause(), 3)`` (a bounded wait, as
    people write it), or ``await asyncio.gather(worker.pause(), job.log(...))``. Docs: from
    inside one of the worker's own jobs, pause() with wait_active=True raises RuntimeError
    (it would wait for itself). wait_for (on Python 3.11, the version the project targets)
    and gather run the coroutine in a task of their own, so the check (is the current task
    a job's task?) misses it: pause() waits for the very job that awaits it, and the job
    hangs (here until the 3 s bound; without one, for ever)."""
    out: list[str] = []

    async def work(job: Any) -> None:
        try:
            if how == "wait_for":
                await asyncio.wait_for(worker.pause(), 3)
            else:
                async with asyncio.timeout(3):
                    await asyncio.gather(worker.pause(), job.log("pausing"))
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
        await worker.close(timeout=0.2)
        await task


async def test_change_delay_of_a_grouped_job_runs_it_when_due(
        queue: Queue, redis_url: str) -> None:
    """A grouped job delayed for an hour; an idle worker; change_delay(id, 0.2): the job
    should start about 0.2 s later. It starts only after the worker's block_timeout (5 s):
    the worker's call promotes it into its group (includes/take.lua promote_due) after
    finish.lua has read the queue's meta marks, so the take still sees "no grouped job
    ever" (meta 'gwn' read before the promotion wrote it) and skips the groups; the reply
    says nothing is due, and the worker sleeps. Only while the queue has never had a
    grouped job waiting (meta 'gwn' absent: a new or obliterated queue); a second such job
    starts on time. (The same happens to a grouped job added with delay=0.2: the cause is
    older than change_delay, which is how a user meets it here.)"""
    ran: list[float] = []

    async def work(job: Any) -> None:
        ran.append(time.monotonic())

    job = await queue.add("t", 1, delay=3600, group="acct-1")
    worker = Worker(queue.name, work, url=redis_url, concurrency=2)
    task = asyncio.create_task(worker.run(handle_signals=False))
    try:
        await asyncio.sleep(0.5)  # the worker is idle, blocked
        changed = time.monotonic()
        await queue.change_delay(job.id, 0.2)
        await wait_until(lambda: bool(ran), timeout=10, message="the job ran")
    finally:
        await worker.close()
        await task
    assert ran[0] - changed < 2.0, f"the job started {ran[0] - changed:.1f} s after change_delay(0.2)"


async def test_job_change_delay_updates_the_objects_delay_until(queue: Queue) -> None:
    """job.change_priority() updates job.priority and job.update_data() job.data (as
    BullMQ's changePriority/updateData update the Job); job.change_delay() leaves
    job.delay_until at the old due time (BullMQ's changeDelay sets job.delay), so the object
    says the job is due in an hour after change_delay(0.5)."""
    job = await queue.add("t", 1, delay=3600)
    job = await queue.get_job(job.id)
    assert job is not None and job.delay_until is not None
    await job.change_delay(0.5)
    stored = await queue.get_job(job.id)
    assert stored is not None and stored.delay_until is not None
    assert job.delay_until == pytest.approx(stored.delay_until, abs=0.05), (
        f"job.delay_until {job.delay_until} vs stored {stored.delay_until}")
