"""Each state of a job, from add to finished, through a real worker."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest
from helpers import wait_until

from minique import JobFailed, Queue, UnrecoverableError, Worker


async def start(worker: Worker) -> asyncio.Task[None]:
    return asyncio.create_task(worker.run())


async def test_waiting_active_completed(queue: Queue, redis_url: str) -> None:
    gate = asyncio.Event()
    seen: list[str] = []

    async def proc(job: Any) -> dict[str, Any]:
        seen.append(await job.get_state())
        await gate.wait()
        return {"echo": job.data}

    job = await queue.add("echo", {"n": 1})
    assert await job.get_state() == "waiting"
    worker = Worker(queue.name, proc, url=redis_url, concurrency=1)
    task = await start(worker)
    await wait_until(lambda: bool(seen), message="job picked up")
    assert seen == ["active"]
    assert (await queue.get_stats())["active"] == 1
    gate.set()
    assert await job.wait_until_finished(timeout=5) == {"echo": {"n": 1}}
    done = await queue.get_job(job.id)
    assert done is not None and done.state == "completed"
    assert done.attempts_made == 1 and done.attempts_started == 1
    assert done.processed_on is not None and done.finished_on is not None
    assert done.finished_on >= done.processed_on >= done.timestamp
    await worker.close()
    await task


async def test_delayed_then_waiting_then_completed(queue: Queue, redis_url: str) -> None:
    job = await queue.add("later", {"x": 1}, delay=0.4)
    assert await job.get_state() == "delayed"
    assert (await queue.get_stats())["delayed"] == 1
    worker = Worker(queue.name, lambda job: "ok", url=redis_url)
    task = await start(worker)
    assert await job.wait_until_finished(timeout=5) == "ok"
    done = await queue.get_job(job.id)
    assert done is not None and done.processed_on is not None
    # It ran no earlier than its delay (server clock on both sides).
    assert done.processed_on - done.timestamp >= 0.4 - 0.002
    await worker.close()
    await task


async def test_failed_after_attempts(queue: Queue, redis_url: str) -> None:
    calls = 0

    async def boom(job: Any) -> None:
        nonlocal calls
        calls += 1
        raise ValueError("nope")

    job = await queue.add("boom", None, attempts=2)
    worker = Worker(queue.name, boom, url=redis_url)
    task = await start(worker)
    with pytest.raises(JobFailed, match="ValueError: nope"):
        await job.wait_until_finished(timeout=5)
    failed = await queue.get_job(job.id)
    assert failed is not None and failed.state == "failed"
    assert failed.attempts_made == 2 and calls == 2
    assert failed.stacktrace and "ValueError" in failed.stacktrace
    await worker.close()
    await task


async def test_unrecoverable_fails_at_once(queue: Queue, redis_url: str) -> None:
    calls = 0

    async def proc(job: Any) -> None:
        nonlocal calls
        calls += 1
        raise UnrecoverableError("account disconnected")

    job = await queue.add("x", None, attempts=5, backoff=0.01)
    worker = Worker(queue.name, proc, url=redis_url)
    task = await start(worker)
    with pytest.raises(JobFailed, match="account disconnected"):
        await job.wait_until_finished(timeout=5)
    assert calls == 1
    await worker.close()
    await task


async def test_unknown_job_name_fails_clearly_and_worker_carries_on(
        queue: Queue, redis_url: str) -> None:
    from minique import Registry

    registry = Registry()

    @registry.processor(queue.name, name="known")
    async def known(job: Any) -> str:
        return "fine"

    bad = await queue.add("mystery", {}, attempts=3)
    good = await queue.add("known", {})
    worker = Worker(queue.name, registry, url=redis_url)
    task = await start(worker)
    with pytest.raises(JobFailed, match=f"no processor for job 'mystery' in queue '{queue.name}' "
                                        r"\(this worker's job names: 'known'\)"):
        await bad.wait_until_finished(timeout=5)
    assert await good.wait_until_finished(timeout=5) == "fine"
    failed = await queue.get_job(bad.id)
    assert failed is not None and failed.attempts_made == 1  # not retried
    await worker.close()
    await task


async def test_sync_processor_runs_in_a_thread(queue: Queue, redis_url: str) -> None:
    import threading

    main = threading.get_ident()

    def blocking(job: Any) -> bool:
        return threading.get_ident() != main

    job = await queue.add("t", None)
    worker = Worker(queue.name, blocking, url=redis_url)
    task = await start(worker)
    assert await job.wait_until_finished(timeout=5) is True
    await worker.close()
    await task


async def test_delayed_job_added_while_worker_sleeps_runs_on_time(queue: Queue, redis_url: str) -> None:
    worker = Worker(queue.name, lambda job: "ok", url=redis_url, block_timeout=30.0)
    task = await start(worker)
    await asyncio.sleep(0.1)  # the worker is now blocked with a 30 s deadline
    job = await queue.add("soon", None, delay=0.3)
    # Deadlines at half the block timeout: they tell "woken when due" from "woken by the
    # 30 s timeout" with room for a loaded machine.
    assert await job.wait_until_finished(timeout=15) == "ok"
    done = await queue.get_job(job.id)
    assert done is not None and done.processed_on is not None
    assert 0.3 - 0.002 <= done.processed_on - done.timestamp < 15.0
    await worker.close()
    await task


async def test_fencing_tokens_are_consecutive_numbers_across_a_thousand(queue: Queue) -> None:
    # take.lua writes a token's last three digits from a table and the rest once per
    # thousand: the tokens must still be the consecutive numbers after the stored fence.
    import driver

    fence = 9_000_000_000_000_996  # above the clock in µs, below 2**53
    await queue.redis.hset(queue.keys.meta, "fence", str(fence))
    await queue.add_bulk([("x", i) for i in range(6)])
    taken = await driver.fetch(queue, 6)
    assert [int(t) for _, t in taken] == [fence + i for i in range(1, 7)]
    assert [t for _, t in taken] == [str(fence + i) for i in range(1, 7)]
    assert int(await queue.redis.hget(queue.keys.meta, "fence")) == fence + 6
