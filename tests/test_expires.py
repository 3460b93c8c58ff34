"""A job that must start within a time of its add, or not at all (arq's _expires, Celery's
expires): docs/guide/queue.md, "Expiry"."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest
from helpers import wait_until

from minique import Queue, Registry, Worker


async def _state(q: Queue, job_id: str) -> str:
    return await q.get_state(job_id)


async def test_a_job_not_started_in_time_fails_as_expired_without_running(
        queue: Queue, redis_url: str) -> None:
    ran: list[Any] = []

    async def work(job: Any) -> None:
        ran.append(job.data)

    late = await queue.add("t", "late", expires=0.2, attempts=3)
    fresh_later: list[Any] = []
    await asyncio.sleep(0.3)  # (the expiry is what is tested: it must have passed)
    fresh_later.append(await queue.add("t", "fresh", expires=60))
    worker = Worker(queue.name, work, url=redis_url)
    task = asyncio.create_task(worker.run(handle_signals=False))
    try:
        async def settled() -> bool:
            return (await _state(queue, late.id) == "failed"
                    and await _state(queue, fresh_later[0].id) == "completed")
        await wait_until(settled, timeout=20, message="one expired, one ran")
    finally:
        await worker.close()
        await task
    assert ran == ["fresh"]
    job = await queue.get_job(late.id)
    assert job is not None and job.failed_reason == "expired: not started within 0.2s of being added"
    assert job.attempts_made == 1  # no retry: it would be later still


async def test_expired_jobs_of_a_batch_fail_and_the_others_run(queue: Queue, redis_url: str) -> None:
    registry = Registry()
    got: list[list[Any]] = []

    @registry.processor(queue.name, batch={"size": 10, "timeout": 0.2})
    async def store(batch: Any) -> None:
        got.append(sorted(job.data for job in batch))

    old = await queue.add("t", 0, expires=0.1)
    await asyncio.sleep(0.2)
    await queue.add_bulk([("t", i, {"expires": 60}) for i in (1, 2)])
    worker = Worker(queue.name, registry, url=redis_url, concurrency=10)
    task = asyncio.create_task(worker.run(handle_signals=False))
    try:
        async def settled() -> bool:
            stats = await queue.get_stats()
            return stats["completed"] == 2 and stats["failed"] == 1
        await wait_until(settled, timeout=20, message="two stored, one expired")
    finally:
        await worker.close()
        await task
    assert [x for call in got for x in call] == [1, 2]
    assert (await _state(queue, old.id)) == "failed"


async def test_bad_expiries_are_refused_and_firings_have_none(redis_url: str, qname: str) -> None:
    q = Queue(qname, url=redis_url, default_job_options={"expires": 30})
    try:
        with pytest.raises(ValueError, match="longer than delay"):
            await q.add("t", 1, delay=60)
        with pytest.raises(ValueError):
            await q.add("t", 1, expires=0)
        with pytest.raises(TypeError, match="expires cannot be set on a scheduler"):
            await q.upsert_job_scheduler("s", every=3600, job_name="t",
                                         job_options={"expires": 10})
        sched = await q.upsert_job_scheduler("s", every=3600, job_name="t")
        assert sched.pending_job_id is not None
        firing = await q.get_job(sched.pending_job_id)
        assert firing is not None and firing.opts.expires is None
        job = await q.add("t", 1)
        assert job.opts.expires == 30
    finally:
        await q.obliterate(force=True)
        await q.close()
