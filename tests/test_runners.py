"""The worker's pool of job runners: jobs run in long-lived runner tasks, not a task each."""

from __future__ import annotations

import asyncio
import time
from typing import Any

import pytest
from helpers import wait_until

from minique import JobFailed, Queue, Worker


async def _completed(queue: Queue, n: int) -> bool:
    return (await queue.get_stats())["completed"] >= n


async def test_short_jobs_share_a_few_runners(queue: Queue, redis_url: str) -> None:
    async def noop(job: Any) -> None:
        return None

    await queue.add_bulk([("n", i) for i in range(600)])
    worker = Worker(queue.name, noop, url=redis_url, concurrency=50)
    task = asyncio.create_task(worker.run())
    await wait_until(lambda: _completed(queue, 600), message="600 jobs done")
    # A runner goes through a batch of jobs that never suspend on its own; one more is
    # roused in case a job suspends. A task per job would have made 50.
    assert len(worker._runners) <= 3
    await worker.close()
    await task


async def test_suspending_jobs_run_side_by_side_up_to_concurrency(
        queue: Queue, redis_url: str) -> None:
    release = asyncio.Event()
    inside, most = 0, 0

    async def held(job: Any) -> None:
        nonlocal inside, most
        inside += 1
        most = max(most, inside)
        await release.wait()
        inside -= 1

    await queue.add_bulk([("h", i) for i in range(10)])
    worker = Worker(queue.name, held, url=redis_url, concurrency=4)
    task = asyncio.create_task(worker.run())
    await wait_until(lambda: inside == 4, message="4 jobs running at once")
    await asyncio.sleep(0.05)  # a fifth would have started by now if the cap leaked
    assert most == 4
    release.set()
    await wait_until(lambda: _completed(queue, 10), message="all 10 done")
    assert most == 4
    await worker.close()
    await task


async def test_cancel_hits_only_its_job_and_does_not_leak_into_the_next(
        queue: Queue, redis_url: str) -> None:
    started = asyncio.Event()
    seen: list[int] = []

    async def work(job: Any) -> str:
        if job.data == "forever":
            started.set()
            await asyncio.sleep(60)
        current = asyncio.current_task()
        assert current is not None
        seen.append(current.cancelling())
        # A job's own timeout must still work in a runner that saw a cancel before.
        with pytest.raises(TimeoutError):
            async with asyncio.timeout(0.01):
                await asyncio.sleep(5)
        return "ok"

    forever = await queue.add("w", "forever", attempts=1)
    worker = Worker(queue.name, work, url=redis_url, concurrency=1)
    task = asyncio.create_task(worker.run())
    await asyncio.wait_for(started.wait(), 5)
    assert await queue.cancel(forever.id)
    with pytest.raises(JobFailed, match="cancelled"):
        await forever.wait_until_finished(timeout=5)
    after = await queue.add("w", "after")
    assert await after.wait_until_finished(timeout=5) == "ok"
    assert seen == [0]  # the runner's cancel count was reset after the cancelled job
    await worker.close()
    await task


async def test_close_waits_for_running_jobs_then_hands_back_the_rest(
        queue: Queue, redis_url: str) -> None:
    started = asyncio.Event()
    finished: list[str] = []

    async def work(job: Any) -> None:
        started.set()
        if job.data == "short":
            await asyncio.sleep(0.1)
        else:
            await asyncio.sleep(60)
        finished.append(job.data)

    short = await queue.add("w", "short")
    long = await queue.add("w", "long", attempts=2)
    worker = Worker(queue.name, work, url=redis_url, concurrency=2)
    task = asyncio.create_task(worker.run())
    await asyncio.wait_for(started.wait(), 5)
    await wait_until(lambda: worker._executing == 2, message="both jobs running")
    # The grace is ample for the 0.1 s job even on a loaded machine; the long one outlasts it.
    await worker.close(timeout=3.0)
    await task
    assert finished == ["short"]
    assert (await short.refresh()).state == "completed"
    back = await long.refresh()
    assert back.state == "waiting" and back.attempts_made == 0  # shutdown uses no attempt


async def test_jobs_that_never_suspend_still_let_the_loop_run(
        queue: Queue, redis_url: str) -> None:
    def busy(seconds: float) -> None:
        end = time.perf_counter() + seconds
        while time.perf_counter() < end:
            pass

    ran = 0

    async def cpu_job(job: Any) -> None:
        nonlocal ran
        busy(0.002)  # an async processor that never awaits
        ran += 1

    # How many jobs ran between two turns of another task: counted in jobs, not seconds, so
    # a loaded machine (which only makes each job take longer) cannot fail the test.
    per_turn: list[int] = []

    async def ticker() -> None:
        seen = ran
        while True:
            await asyncio.sleep(0)
            per_turn.append(ran - seen)
            seen = ran

    await queue.add_bulk([("c", i) for i in range(400)])
    worker = Worker(queue.name, cpu_job, url=redis_url, concurrency=20)
    tick = asyncio.create_task(ticker())
    task = asyncio.create_task(worker.run())
    await wait_until(lambda: _completed(queue, 400), timeout=60, message="400 jobs done")
    tick.cancel()
    # After 10 ms of jobs (at least 2 ms each: 5 jobs) every runner yields until the loop has
    # polled again, so a turn runs a handful of jobs, not a whole batch (20 slots x 2-3 jobs
    # held: 40-60 jobs without the yield).
    assert sum(per_turn) == 400
    assert max(per_turn) <= 10, sorted(per_turn)[-10:]
    await worker.close()
    await task
