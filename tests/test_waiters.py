"""wait_until_finished against real worker processes: the outcome reaches the waiter even
when retention removed the job (at once, by count, by age) while it waited or shortly
before, and a removed job answers JobNotFound at once, busy queue or not (issue #12, 3)."""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import AsyncIterator
from typing import Any

import pytest
from helpers import start_worker, wait_until

from minique import Job, JobFailed, JobNotFound, Queue

BIG = "x" * 40_000  # over the 16 KiB an event carries


@pytest.fixture
async def wq(redis_url: str, qname: str, procs: list[Any]) -> AsyncIterator[Queue]:
    """The "procs" queue under a prefix of its own, served by one real worker process."""
    q = Queue("procs", url=redis_url, prefix=qname)
    procs.append(start_worker(redis_url, "procs", "--prefix", qname, "--concurrency", "1"))
    yield q
    await q.obliterate(force=True)
    await q.close()


async def gone(q: Queue, job: Job) -> None:
    await wait_until(lambda: _absent(q, job.id), timeout=15, message=f"job {job.id} removed")


async def _absent(q: Queue, job_id: str) -> bool:
    return not await q.redis.exists(q.keys.job(job_id))


@contextlib.asynccontextmanager
async def busy(q: Queue, every: float = 0.1, **options: Any) -> AsyncIterator[None]:
    """Adds a job (with ``options``) every ``every`` seconds while the block runs."""
    async def feed() -> None:
        while True:
            await q.add("echo", {"value": 0}, **options)
            await asyncio.sleep(every)

    task = asyncio.create_task(feed())
    try:
        yield
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task


async def test_removed_at_once_answers_a_waiter_that_came_before(wq: Queue) -> None:
    job = await wq.add("echo", {"value": {"total": 42}, "sleep": 0.3}, remove_on_complete=True)
    assert await job.wait_until_finished(timeout=15) == {"total": 42}
    assert await _absent(wq, job.id)


async def test_removed_at_once_answers_a_waiter_that_came_after(wq: Queue) -> None:
    job = await wq.add("echo", {"value": [1, "two"]}, remove_on_complete=True)
    await gone(wq, job)
    assert await job.wait_until_finished(timeout=5) == [1, "two"]
    # A Job fetched before the removal (no add time known) is found too.
    bare = Job(wq, job.id, "echo", None, job.opts)
    assert await bare.wait_until_finished(timeout=5) == [1, "two"]


async def test_failure_removed_at_once_raises_the_real_reason(wq: Queue) -> None:
    before = await wq.add("echo", {"error": "quota gone", "sleep": 0.3}, remove_on_fail=True)
    with pytest.raises(JobFailed, match="ValueError: quota gone"):
        await before.wait_until_finished(timeout=15)
    after = await wq.add("echo", {"error": "x" * 1000 + "END"}, remove_on_fail=True)
    await gone(wq, after)
    with pytest.raises(JobFailed, match=r"x{1000}END") as info:
        await after.wait_until_finished(timeout=5)
    assert info.value.job_id == after.id


async def test_removed_by_count_while_waiting_and_before(wq: Queue) -> None:
    """Count 1: the job goes as soon as the next one with that setting finishes."""
    async with busy(wq, every=0.02, remove_on_complete={"count": 1}):
        first = await wq.add("echo", {"value": "first", "sleep": 0.3},
                             remove_on_complete={"count": 1})
        assert await first.wait_until_finished(timeout=15) == "first"
        await gone(wq, first)
        second = await wq.add("echo", {"value": "second"}, remove_on_complete={"count": 1})
        await gone(wq, second)
        assert await second.wait_until_finished(timeout=5) == "second"
        assert await first.wait_until_finished(timeout=5) == "first"


async def test_removed_by_age_answers_later(wq: Queue) -> None:
    job = await wq.add("echo", {"value": "aged"}, remove_on_complete={"age": 0.05})
    async with busy(wq, remove_on_complete={"age": 0.05}):  # later finishes apply the age
        await gone(wq, job)
    assert await job.wait_until_finished(timeout=5) == "aged"


async def test_large_values_come_from_the_job_or_from_the_event(wq: Queue) -> None:
    kept = await wq.add("echo", {"value": BIG, "sleep": 0.2})
    assert await kept.wait_until_finished(timeout=15) == BIG
    removed = await wq.add("echo", {"value": BIG}, remove_on_complete=True)
    await gone(wq, removed)
    assert await removed.wait_until_finished(timeout=5) == BIG


@pytest.mark.parametrize("is_busy", [False, True])
async def test_a_removed_delayed_job_answers_within_a_second(wq: Queue, is_busy: bool) -> None:
    job = await wq.add("echo", {"value": 1}, delay=30)

    async def remove_soon() -> None:
        await asyncio.sleep(0.5)
        assert await job.remove()

    async with busy(wq) if is_busy else contextlib.nullcontext():
        remover = asyncio.create_task(remove_soon())
        started = time.monotonic()
        with pytest.raises(JobNotFound, match="removed"):
            await job.wait_until_finished(timeout=6)
        answered = time.monotonic() - started
        await remover
    assert answered < 1.5, f"JobNotFound after {answered:.2f}s, the removal was at 0.5s"


async def test_a_drained_job_answers_without_waiting_for_the_timeout(wq: Queue) -> None:
    await wq.pause()
    job = await wq.add("echo", {"value": 1})

    async def drain_soon() -> None:
        await asyncio.sleep(0.3)
        await wq.drain()

    drainer = asyncio.create_task(drain_soon())
    with pytest.raises(JobNotFound):
        await job.wait_until_finished(timeout=10)
    await drainer


async def test_a_job_that_never_existed(wq: Queue) -> None:
    await wq.add_bulk([("echo", {"value": i}) for i in range(50)])
    ghost = Job(wq, "never-added", "echo", None, (await wq.add("echo", {})).opts)
    with pytest.raises(JobNotFound, match="does not exist"):
        await ghost.wait_until_finished(timeout=5)


async def test_an_id_used_again_answers_for_its_latest_job(wq: Queue) -> None:
    first = await wq.add("echo", {"value": "old"}, job_id="report", remove_on_complete=True)
    assert await first.wait_until_finished(timeout=15) == "old"
    second = await wq.add("echo", {"value": "new"}, job_id="report", remove_on_complete=True)
    await gone(wq, second)
    assert await second.wait_until_finished(timeout=5) == "new"
