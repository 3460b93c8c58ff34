"""Worker behaviour inside one process: timeouts, cancel, rate limits, payload types."""

from __future__ import annotations

import asyncio
import time
from typing import Any

import msgspec
import pytest
from helpers import wait_until

from minique import JobFailed, Queue, RateLimited, Registry, Worker


async def running(worker: Worker) -> asyncio.Task[None]:
    return asyncio.create_task(worker.run())


async def stop(worker: Worker, task: asyncio.Task[None]) -> None:
    await worker.close()
    await task


async def test_timeout_fails_the_attempt_and_retries(queue: Queue, redis_url: str) -> None:
    calls = 0

    async def slow(job: Any) -> str:
        nonlocal calls
        calls += 1
        if calls == 1:
            await asyncio.sleep(30)
        return "second time"

    job = await queue.add("slow", None, timeout=0.2, attempts=2)
    worker = Worker(queue.name, slow, url=redis_url)
    task = await running(worker)
    assert await job.wait_until_finished(timeout=5) == "second time"
    done = await queue.get_job(job.id)
    assert done is not None and done.attempts_made == 2
    assert done.failed_reason and "timed out after 0.2s" in done.failed_reason
    await stop(worker, task)


async def test_cancel_reaches_the_running_job(queue: Queue, redis_url: str) -> None:
    started = asyncio.Event()

    async def forever(job: Any) -> None:
        started.set()
        await asyncio.sleep(60)

    job = await queue.add("forever", None, attempts=3)
    # Leases renewed every 5 min: a cancel seen within the deadline below came by pub/sub,
    # not by the renewal's cancel flag (no timing of the machine involved).
    worker = Worker(queue.name, forever, url=redis_url, lock_duration=600)
    task = await running(worker)
    await asyncio.wait_for(started.wait(), 5)
    assert await queue.cancel(job.id)
    with pytest.raises(JobFailed, match="cancelled"):
        await job.wait_until_finished(timeout=60)
    assert not await queue.cancel(job.id)  # no longer active
    await stop(worker, task)


async def test_rate_limited_does_not_burn_attempts_and_pauses_the_queue(
        queue: Queue, redis_url: str) -> None:
    calls: list[float] = []

    async def upstream(job: Any) -> str:
        calls.append(time.monotonic())
        if len(calls) < 3:
            raise RateLimited(0.3)
        return "ok"

    job = await queue.add("x", None, attempts=1)
    worker = Worker(queue.name, upstream, url=redis_url)
    task = await running(worker)
    assert await job.wait_until_finished(timeout=10) == "ok"
    done = await queue.get_job(job.id)
    assert done is not None and done.attempts_made == 1 and done.attempts_started == 3
    assert calls[1] - calls[0] >= 0.29 and calls[2] - calls[1] >= 0.29
    await stop(worker, task)


async def test_manual_rate_limit_pauses_taking(queue: Queue, redis_url: str) -> None:
    t0 = time.time()  # before the limit is set, so a slow test cannot shorten the gap
    await queue.rate_limit(0.5)
    assert 0 < await queue.get_rate_limit_ttl() <= 0.5
    job = await queue.add("x", None)
    worker = Worker(queue.name, lambda j: time.time(), url=redis_url)
    task = await running(worker)
    ran_at = await job.wait_until_finished(timeout=5)
    assert ran_at - t0 >= 0.5 - 0.01  # the key expires in whole ms
    await stop(worker, task)


class Order(msgspec.Struct):
    order_id: str
    quantity: int


async def test_payload_type_is_decoded_or_fails_without_retry(queue: Queue, redis_url: str) -> None:
    registry = Registry()

    @registry.processor(queue.name, name="order", payload=Order)
    async def handle(job: Any) -> int:
        assert isinstance(job.payload, Order)
        return int(job.payload.quantity * 2)

    good = await queue.add("order", {"order_id": "o1", "quantity": 2})
    bad = await queue.add("order", {"order_id": "o2", "quantity": "many"}, attempts=5)
    worker = Worker(queue.name, registry, url=redis_url)
    task = await running(worker)
    assert await good.wait_until_finished(timeout=5) == 4
    expected = r"payload does not match Order: Expected `int`, got `str` - at `\$.quantity`"
    with pytest.raises(JobFailed, match=expected):
        await bad.wait_until_finished(timeout=5)
    failed = await queue.get_job(bad.id)
    assert failed is not None and failed.attempts_made == 1
    await stop(worker, task)


async def test_get_workers_lists_live_workers(queue: Queue, redis_url: str) -> None:
    worker = Worker(queue.name, lambda j: None, url=redis_url, heartbeat_interval=0.1)
    task = await running(worker)
    await wait_until(lambda: _has_workers(queue), message="heartbeat")
    [info] = await queue.get_workers()
    import os

    assert info.pid == os.getpid() and info.queues == [queue.name] and info.name == worker.name
    await stop(worker, task)
    assert await queue.get_workers() == []


async def _has_workers(queue: Queue) -> bool:
    return bool(await queue.get_workers())


async def test_global_concurrency_caps_active_jobs(queue: Queue, redis_url: str) -> None:
    await queue.set_global_concurrency(2)
    peak = 0
    now = 0

    async def proc(job: Any) -> None:
        nonlocal peak, now
        now += 1
        peak = max(peak, now)
        await asyncio.sleep(0.05)
        now -= 1

    jobs = await queue.add_bulk([("x", i) for i in range(8)])
    workers = [Worker(queue.name, proc, url=redis_url, concurrency=5) for _ in range(2)]
    tasks = [await running(w) for w in workers]
    for job in jobs:
        await job.wait_until_finished(timeout=10)
    assert peak == 2
    for w, t in zip(workers, tasks, strict=True):
        await stop(w, t)


async def test_no_jobs_held_ahead_under_a_global_concurrency_limit(
        queue: Queue, redis_url: str) -> None:
    await queue.set_global_concurrency(4)
    most_active = 0

    async def quick(job: Any) -> None:
        nonlocal most_active
        most_active = max(most_active, (await queue.get_stats())["active"])

    jobs = await queue.add_bulk([("q", i) for i in range(200)])
    # Short jobs would make this worker hold jobs ahead of its 2 slots, taking the whole
    # allowance of 4 while another worker's slots would stand idle.
    worker = Worker(queue.name, quick, url=redis_url, concurrency=2)
    task = await running(worker)
    await jobs[-1].wait_until_finished(timeout=20)
    assert worker._prefetch() == 0
    assert most_active <= 2
    await stop(worker, task)


def cpu_bound(job: Any) -> int:
    import os

    return os.getpid()


async def test_process_pool_runs_sync_processors_elsewhere(queue: Queue, redis_url: str) -> None:
    import os

    job = await queue.add("cpu", {"n": 1})
    worker = Worker(queue.name, cpu_bound, url=redis_url, processes=1)
    task = await running(worker)
    pid = await job.wait_until_finished(timeout=30)
    assert pid != os.getpid()
    await stop(worker, task)


async def test_lost_lease_result_is_refused(queue: Queue, redis_url: str, caplog: Any) -> None:
    gate = asyncio.Event()

    async def proc(job: Any) -> str:
        await gate.wait()
        return "late"

    job = await queue.add("x", None)
    worker = Worker(queue.name, proc, url=redis_url, lock_duration=60)
    task = await running(worker)
    await wait_until(lambda: _state(queue, job.id, "active"))
    # Another party takes the job over (as the stalled sweep would after a freeze).
    await queue.redis.hset(queue.keys.job(job.id), "tok", "someone-else")
    gate.set()
    await wait_until(lambda: "lease lost" in caplog.text, message="lock-lost log")
    assert await queue.get_state(job.id) == "active"  # the stale result changed nothing
    await stop(worker, task)


async def _state(queue: Queue, job_id: str, state: str) -> bool:
    return await queue.get_state(job_id) == state


async def test_queue_checks_payload_types_at_add(redis_url: str, qname: str) -> None:
    from minique import PayloadError

    registry = Registry()
    registry.add(qname, lambda job: None, name="order", payload=Order)
    q = Queue(qname, url=redis_url, payload_types=registry.payload_types(qname))
    with pytest.raises(PayloadError, match=r"does not match Order: .*`\$.quantity`"):
        await q.add("order", {"order_id": "o1", "quantity": "lots"})
    assert (await q.get_stats())["total"] == 0
    await q.add("order", {"order_id": "o1", "quantity": 3})
    await q.add("other", {"anything": True})  # no type declared for this name
    await q.obliterate(force=True)
    await q.close()


async def test_prefetched_jobs_go_back_at_shutdown_without_using_attempts(
        queue: Queue, redis_url: str) -> None:
    done = 0

    async def quick(job: Any) -> None:
        nonlocal done
        done += 1

    await queue.add_bulk([("q", i, {"remove_on_complete": False}) for i in range(400)])
    worker = Worker(queue.name, quick, url=redis_url, concurrency=1)
    task = await running(worker)
    await wait_until(lambda: done >= 50, message="50 quick jobs done")
    assert worker._prefetch() >= 1  # short jobs: some held ahead
    await stop(worker, task)
    stats = await queue.get_stats()
    assert stats["active"] == 0 and stats["completed"] + stats["waiting"] == 400
    for job in await queue.get_jobs("waiting", 0, 5):
        assert job.attempts_made == 0
    worker = Worker(queue.name, quick, url=redis_url, concurrency=1)
    task = await running(worker)
    await wait_until(lambda: _completed(queue, 400), message="the rest done")
    await stop(worker, task)


def test_prefetch_holds_about_five_ms_of_work_per_slot() -> None:
    worker = Worker("q", lambda job: None, url="redis://127.0.0.1:1", concurrency=4)
    assert worker._prefetch() == 0  # nothing measured yet
    for avg, held in ((0.0001, 200), (0.001, 20), (0.0025, 8), (0.004, 5), (0.006, 0)):
        worker._avg_duration = avg
        assert worker._prefetch() == held, avg
    worker = Worker("q", lambda job: None, url="redis://127.0.0.1:1", concurrency=4,
                    limiter={"max": 10, "duration": 1})
    worker._avg_duration = 0.0001
    assert worker._prefetch() == 0  # a limiter counts fetched jobs as started


async def _completed(queue: Queue, n: int) -> bool:
    return (await queue.get_stats())["completed"] >= n


async def test_long_jobs_are_not_held_ahead(queue: Queue, redis_url: str) -> None:
    async def slow(job: Any) -> None:
        await asyncio.sleep(0.1)

    await queue.add_bulk([("s", i) for i in range(3)])
    worker = Worker(queue.name, slow, url=redis_url, concurrency=1)
    task = await running(worker)
    await wait_until(lambda: _completed(queue, 1), message="first slow job done")
    assert worker._prefetch() == 0
    await asyncio.sleep(0.02)
    assert (await queue.get_stats())["active"] == 1  # only the running one, nothing held
    await stop(worker, task)


async def test_warns_loudly_when_redis_may_evict_jobs(queue: Queue, redis_url: str,
                                                      caplog: Any) -> None:
    await queue.redis.config_set("maxmemory-policy", "allkeys-lru")
    try:
        worker = Worker(queue.name, lambda j: None, url=redis_url)
        task = await running(worker)
        await wait_until(lambda: "not 'noeviction'" in caplog.text, message="eviction warning")
        await stop(worker, task)
    finally:
        await queue.redis.config_set("maxmemory-policy", "noeviction")


async def test_job_log_lines_carry_structured_fields(queue: Queue, redis_url: str,
                                                     caplog: Any) -> None:
    import logging

    caplog.set_level(logging.INFO, logger="minique.worker")

    async def boom(job: Any) -> None:
        raise RuntimeError("secret-free failure")

    job = await queue.add("b", {"password": "hunter2"}, attempts=2, backoff=0.01)
    worker = Worker(queue.name, boom, url=redis_url)
    task = await running(worker)
    with pytest.raises(JobFailed):
        await job.wait_until_finished(timeout=5)
    await stop(worker, task)
    records = [r for r in caplog.records if getattr(r, "job_id", None) == job.id]
    assert [r.outcome for r in records] == ["retrying", "failed"]  # type: ignore[attr-defined]
    for r in records:
        assert r.queue == queue.name and r.job_name == "b"  # type: ignore[attr-defined]
        assert r.duration >= 0 and r.attempt in (1, 2)  # type: ignore[attr-defined]
    assert "hunter2" not in caplog.text  # payloads never reach the logs
