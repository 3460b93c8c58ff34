"""Pausing one worker (BullMQ's worker.pause / resume): docs/guide/workers.md, "Pausing
one worker"."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest
from helpers import wait_until

from minique import Queue, Worker


async def _held_or_active(q: Queue, ids: list[str]) -> int:
    pipe = q.redis.pipeline(transaction=False)
    for job_id in ids:
        pipe.hget(q.keys.job(job_id), "st")
    return sum(st in (b"held", b"active") for st in await pipe.execute())


async def test_a_paused_worker_starts_nothing_and_hands_back_what_it_holds(
        queue: Queue, redis_url: str) -> None:
    starts: list[tuple[str, bool]] = []

    async def work(job: Any) -> None:
        starts.append((job.id, worker.is_paused()))
        await asyncio.sleep(0.001)

    ids = [j.id for j in await queue.add_bulk([("t", i) for i in range(400)])]
    worker = Worker(queue.name, work, url=redis_url, concurrency=2)
    worker._prefetch = lambda: 50  # type: ignore[method-assign]
    task = asyncio.create_task(worker.run(handle_signals=False))
    try:
        await wait_until(lambda: len(starts) >= 50, timeout=20, message="jobs running")
        await worker.pause()
        assert worker.is_paused()
        at_pause = len(starts)
        # What it held went back: nothing of the queue is held or active any more.
        async def handed_back() -> bool:
            return await _held_or_active(queue, ids) == 0
        await wait_until(handed_back, timeout=10, message="held jobs handed back")
        stats = await queue.get_stats()
        assert stats["waiting"] + stats["completed"] == 400 and stats["active"] == 0
        await asyncio.sleep(0.3)  # a window in which a start would show
        assert len(starts) == at_pause, f"{len(starts) - at_pause} jobs started while paused"
        await worker.pause()  # idempotent
        worker.resume()
        assert not worker.is_paused()

        async def all_done() -> bool:
            return (await queue.get_stats())["completed"] == 400
        await wait_until(all_done, timeout=30, message="all jobs done after resume")
    finally:
        await worker.close()
        await task
    assert not any(paused for _, paused in starts), "a job started while paused"
    assert sorted(job_id for job_id, _ in starts) == sorted(ids)  # each ran once


async def test_pause_waits_for_running_jobs_unless_told_not_to(
        queue: Queue, redis_url: str) -> None:
    release = asyncio.Event()
    running = asyncio.Event()

    async def work(job: Any) -> None:
        running.set()
        await release.wait()

    job = await queue.add("t", 1)
    worker = Worker(queue.name, work, url=redis_url)
    task = asyncio.create_task(worker.run(handle_signals=False))
    try:
        await asyncio.wait_for(running.wait(), 20)
        await asyncio.wait_for(worker.pause(wait_active=False), 5)
        pausing = asyncio.create_task(worker.pause())
        await asyncio.sleep(0.2)
        assert not pausing.done(), "pause() returned while a job was running"
        release.set()
        await asyncio.wait_for(pausing, 10)
        assert await queue.get_state(job.id) == "completed"
    finally:
        await worker.close()
        await task


async def test_a_job_can_pause_its_own_worker_without_waiting_for_itself(
        queue: Queue, redis_url: str) -> None:
    errors: list[str] = []

    async def work(job: Any) -> None:
        with pytest.raises(RuntimeError, match="wait_active=False"):
            await worker.pause()
        await worker.pause(wait_active=False)
        errors.append("paused")

    first = await queue.add("t", 1)
    second = await queue.add("t", 2)
    worker = Worker(queue.name, work, url=redis_url, concurrency=1, prefetch=False)
    task = asyncio.create_task(worker.run(handle_signals=False))
    try:
        async def first_done() -> bool:
            return await queue.get_state(first.id) == "completed"
        await wait_until(first_done, timeout=20, message="the first job completed")
        assert worker.is_paused()
        assert await queue.get_state(second.id) == "waiting"
    finally:
        await worker.close()
        await task
    assert errors == ["paused"]


async def test_a_batch_being_gathered_runs_with_what_it_has_when_its_worker_pauses(
        queue: Queue, redis_url: str) -> None:
    from minique import Registry

    registry = Registry()
    calls: list[int] = []

    @registry.processor(queue.name, batch={"size": 50, "timeout": 600})
    async def store(batch: Any) -> None:
        calls.append(len(list(batch)))

    await queue.add_bulk([("t", i) for i in range(5)])
    worker = Worker(queue.name, registry, url=redis_url, concurrency=50)
    task = asyncio.create_task(worker.run(handle_signals=False))
    try:
        async def gathered() -> bool:
            return (await queue.get_stats())["active"] == 5
        await wait_until(gathered, timeout=20, message="the batch gathering 5 jobs")
        await asyncio.wait_for(worker.pause(), 10)  # not the batch's 600 s
        assert calls == [5]
        await queue.add("t", 5)
        await asyncio.sleep(0.3)  # a window in which the paused worker would take it
        assert (await queue.get_stats())["waiting"] == 1
    finally:
        await worker.close()
        await task
