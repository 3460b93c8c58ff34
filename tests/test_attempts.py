"""Per-attempt history: each attempt's worker, start, end and error, bounded per job."""

from __future__ import annotations

import asyncio
from typing import Any

from helpers import wait_until

from minique import Queue, Worker, scripts
from minique.attempts import ATTEMPT_RING, parse_entry


async def test_each_attempt_is_listed_with_its_worker_times_and_error(queue: Queue, redis_url: str) -> None:
    calls = {"n": 0}

    async def flaky(job: Any) -> str:
        calls["n"] += 1
        if calls["n"] < 3:
            raise ConnectionError(f"upstream down (try {calls['n']})")
        return "ok"

    job = await queue.add("sync", {"a": 1}, attempts=3, backoff=0.01)
    worker = Worker(queue.name, flaky, url=redis_url, name="host-a|odd:1:w")
    task = asyncio.create_task(worker.run())
    assert await job.wait_until_finished(timeout=10) == "ok"
    await worker.close()
    await task
    attempts = await queue.get_job_attempts(job.id)
    assert [a.outcome for a in attempts] == ["retried", "retried", "completed"]
    assert [a.number for a in attempts] == [1, 2, 3]
    assert {a.worker for a in attempts} == {"host-a|odd:1:w"}
    assert attempts[0].error is not None and "upstream down (try 1)" in attempts[0].error
    assert attempts[1].error is not None and "try 2" in attempts[1].error
    for a in attempts:
        assert a.started_at and a.ended_at and a.ended_at >= a.started_at
        assert a.duration is not None and a.duration >= 0


async def test_a_final_failure_and_a_stall_are_recorded(queue: Queue) -> None:
    await queue.add("x", 1, attempts=1)
    # Take it with a lease that expires at once; the stalled sweep takes it back.
    await scripts.run(queue.redis, "fetch", queue.keys.vector,
                      [queue.keys.job_prefix, 1, 1, "frozen-worker", 0, 0, 100])
    await asyncio.sleep(0.01)
    await scripts.run(queue.redis, "stalled", queue.keys.vector,
                      [queue.keys.job_prefix, 5, 100, -1, -1])
    attempts = await queue.get_job_attempts("1")
    assert [(a.number, a.outcome, a.worker) for a in attempts] == [(1, "stalled", "frozen-worker")]

    async def boom(job: Any) -> None:
        raise ValueError("bad row 17")

    worker = Worker(queue.name, boom, connection=queue.redis, name="w2")
    task = asyncio.create_task(worker.run())

    async def failed() -> bool:
        return await queue.get_state("1") == "failed"

    await wait_until(failed, timeout=10)
    await worker.close()
    await task
    attempts = await queue.get_job_attempts("1")
    assert [(a.number, a.outcome, a.worker) for a in attempts] == [
        (1, "stalled", "frozen-worker"), (2, "failed", "w2")]
    assert attempts[1].error is not None and "bad row 17" in attempts[1].error


async def test_the_history_is_bounded_per_job(queue: Queue, redis_url: str) -> None:
    async def always(job: Any) -> None:
        raise RuntimeError("x" * 5000)

    job = await queue.add("x", 1, attempts=ATTEMPT_RING + 5, backoff=0)
    worker = Worker(queue.name, always, url=redis_url)
    task = asyncio.create_task(worker.run())

    async def failed() -> bool:
        return await queue.get_state(job.id) == "failed"

    await wait_until(failed, timeout=20)
    await worker.close()
    await task
    attempts = await queue.get_job_attempts(job.id)
    assert [a.number for a in attempts] == list(range(6, ATTEMPT_RING + 6))
    assert all(a.error is not None and len(a.error.encode()) <= 500 for a in attempts)
    fields = await queue.redis.hkeys(queue.keys.job(job.id))
    assert sum(1 for f in fields if f.startswith(b"h")) == ATTEMPT_RING


def test_a_garbled_entry_is_skipped() -> None:
    assert parse_entry(b"junk") is None
    assert parse_entry(b"x|failed|1|2|0|") is None


async def test_a_held_job_cancelled_after_its_holder_died_keeps_the_attempt_before(
        queue: Queue) -> None:
    # Attempt 1 is retried; the job is then held by a worker that dies, and cancelled
    # meanwhile (cancel() gave up waiting for the dead holder: 'cx' = 2). The stall check
    # fails it as cancelled: that is a second attempt (its holder may have started it), and
    # attempt 1's entry must stay as it was.
    import driver

    job = await queue.add("t", 1, attempts=3)
    [(job_id, tok)] = await driver.fetch(queue, worker="w1")
    statuses, _, _ = await driver.finish(queue, [driver.retry(job_id, tok)], worker="w1")
    assert statuses == [1]
    before = await queue.get_job_attempts(job.id)
    assert [(a.number, a.outcome) for a in before] == [(1, "retried")]
    await driver.take(queue, "dead", 0, 1, lease_ms=1)
    assert await queue.redis.hget(queue.keys.job(job.id), "st") == b"held"
    await queue.redis.hset(queue.keys.job(job.id), "cx", "2")

    async def failed() -> bool:
        await queue._run("stalled", [1, 100, 100, -1, "sweeper"])
        return await queue.redis.hget(queue.keys.job(job.id), "st") == b"failed"
    await wait_until(failed, timeout=5, message="the dead holder's job failed as cancelled")
    attempts = await queue.get_job_attempts(job.id)
    assert [(a.number, a.outcome) for a in attempts] == [(1, "retried"), (2, "stalled")]
    assert attempts[0] == before[0]
    assert attempts[1].started_at is None  # Redis never saw it start
    got = await queue.get_job(job.id)
    assert got is not None and got.failed_reason == "cancelled"
    assert (got.attempts_made, got.attempts_started) == (2, 2)
    await driver.forget_holds(queue)
