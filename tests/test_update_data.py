"""Changing a job's data after it was added (BullMQ's updateData): docs/guide/queue.md,
"Changing a job's data"."""

from __future__ import annotations

import asyncio
from typing import Any

import driver
import msgspec
import pytest
from held_support import last_held
from helpers import wait_until
from resend import held_around, proxied_queue

from minique import Queue, Worker
from minique.errors import JobNotFound, PayloadError
from minique.server import RedisServer


async def test_a_waiting_and_a_delayed_job_run_with_the_new_data(queue: Queue, redis_url: str) -> None:
    seen: dict[str, Any] = {}

    async def work(job: Any) -> None:
        seen[job.id] = job.data

    waiting = await queue.add("t", {"v": 1})
    delayed = await queue.add("t", {"v": 1}, delay=0.3)
    await waiting.update_data({"v": 2})
    await queue.update_job_data(delayed.id, {"v": 3})
    assert waiting.data == {"v": 2}
    assert await queue.get_state(delayed.id) == "delayed"
    worker = Worker(queue.name, work, url=redis_url)
    task = asyncio.create_task(worker.run(handle_signals=False))
    try:
        await wait_until(lambda: len(seen) == 2, timeout=20, message="both jobs ran")
    finally:
        await worker.close()
        await task
    assert seen == {waiting.id: {"v": 2}, delayed.id: {"v": 3}}


async def test_a_finished_job_keeps_the_new_data_and_a_gone_job_raises(queue: Queue) -> None:
    job = await queue.add("t", 1)
    tokens = await driver.fetch(queue, 1)
    await driver.finish(queue, [driver.complete(job.id, tokens[0][1])])
    await queue.update_job_data(job.id, [1, 2])
    stored = await queue.get_job(job.id)
    assert stored is not None and stored.state == "completed" and stored.data == [1, 2]
    with pytest.raises(JobNotFound):
        await queue.update_job_data("no-such-job", 1)
    assert not await queue.redis.exists(queue.keys.job("no-such-job"))


async def test_bad_data_is_refused_and_nothing_is_written(redis_url: str, qname: str) -> None:
    class Order(msgspec.Struct):
        order_id: str

    q = Queue(qname, url=redis_url, payload_types={"sync": Order})
    try:
        job = await q.add("sync", {"order_id": "A-1"})
        with pytest.raises(PayloadError):
            await q.update_job_data(job.id, {"order": 5})  # not an Order
        with pytest.raises(PayloadError):
            await q.update_job_data(job.id, {"when": object()})  # not encodable
        stored = await q.get_job(job.id)
        assert stored is not None and stored.data == {"order_id": "A-1"}
    finally:
        await q.obliterate(force=True)
        await q.close()


async def test_an_active_job_keeps_its_data_and_its_next_attempt_reads_the_new(
        queue: Queue, redis_url: str) -> None:
    """BullMQ's step jobs: a processor records the steps it has done in its own data; a
    retry resumes after them."""
    runs: list[dict[str, Any]] = []

    async def work(job: Any) -> None:
        runs.append(dict(job.data))
        if job.data["step"] == 0:
            await job.update_data({"step": 1})
            assert job.data == {"step": 1}
            raise RuntimeError("lost the connection after step 0")

    job = await queue.add("t", {"step": 0}, attempts=2, backoff=0)
    worker = Worker(queue.name, work, url=redis_url)
    task = asyncio.create_task(worker.run(handle_signals=False))
    try:
        async def done() -> bool:
            return await queue.get_state(job.id) == "completed"
        await wait_until(done, timeout=20, message="the job completed on its second attempt")
    finally:
        await worker.close()
        await task
    assert runs == [{"step": 0}, {"step": 1}]


async def test_a_held_job_is_handed_back_first_and_runs_with_the_new_data(
        queue: Queue) -> None:
    """A held job is waiting to everyone but its holder, which has the old data: the call
    returns only once the holder has answered, and the job is taken again with the new."""
    jobs = await queue.add_bulk([("t", {"v": 0}) for _ in range(3)])
    tokens = await driver.hold(queue, 1, 5000)  # a long hold: the holder must answer
    held = next(iter(tokens))
    update = asyncio.create_task(queue.update_job_data(held, {"v": 1}))
    await asyncio.sleep(0.2)
    assert not update.done(), "update_job_data returned before the holder answered"
    await driver.hand_back(queue, tokens)
    await asyncio.wait_for(update, 10)
    [(again, _)] = await driver.fetch(queue, 1)
    assert again == held == jobs[0].id
    stored = await queue.get_job(held)
    assert stored is not None and stored.data == {"v": 1}


async def test_a_real_worker_never_starts_a_held_job_with_old_data_after_the_call(
        queue: Queue, redis_url: str) -> None:
    """Against a worker holding jobs ahead: whatever started after update_job_data()
    returned ran with the new data."""
    starts: list[tuple[str, Any, bool]] = []
    returned = False

    async def work(job: Any) -> None:
        starts.append((job.id, job.data, returned))
        await asyncio.sleep(0.002)

    ids = [j.id for j in await queue.add_bulk([("t", 0) for _ in range(400)])]
    worker = Worker(queue.name, work, url=redis_url, concurrency=1)
    worker._prefetch = lambda: 50  # type: ignore[method-assign]
    task = asyncio.create_task(worker.run(handle_signals=False))
    hit: list[str] = []
    try:
        hit.append(await last_held(queue, ids[100:300]))
        await queue.update_job_data(hit[0], 1)
        returned = True
        await wait_until(lambda: len(starts) >= 400, timeout=60, message="400 jobs started")
    finally:
        await worker.close()
        await task
    assert hit, "no held job was found to update: the test proves nothing"
    [(_, data, after)] = [s for s in starts if s[0] == hit[0]]
    assert data == 1 or not after, "the held job started with its old data after the call"


async def test_a_resent_older_update_does_not_overwrite_a_newer_one(
        redis_server: RedisServer) -> None:
    async with proxied_queue(redis_server, "ud-resend") as (q, direct, proxy):
        await direct.add("x", {"v": 0}, job_id="j")
        await held_around(proxy, direct.redis, q.update_job_data("j", {"v": 1}),
                           lambda: direct.update_job_data("j", {"v": 2}))
        job = await direct.get_job("j")
        assert job is not None and job.data == {"v": 2}
