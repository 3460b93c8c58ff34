"""Batch processors (docs/guide/batches.md) against real Redis and a real worker: batches of
one group, per-job outcomes, limits (a batch shrinks to what the limits allow), and the
controls that reach jobs gathered into a batch (pause, cancel, shutdown)."""

from __future__ import annotations

import asyncio
from typing import Any

from helpers import wait_until

from minique import Batch, Delayed, GroupRateLimited, Queue, Registry, UnrecoverableError, Worker


async def run_worker(redis_url: str, q: Queue, registry: Registry, **kw: Any) -> tuple[Worker, Any]:
    worker = Worker(q.name, registry, url=redis_url, **kw)
    return worker, asyncio.create_task(worker.run())


async def stop(worker: Worker, task: Any) -> None:
    await worker.close()
    await task


async def all_in(q: Queue, ids: list[str], states: tuple[str, ...] = ("completed", "failed")) -> bool:
    return all([await q.get_state(i) in states for i in ids])


async def active_count(q: Queue) -> int:
    return int(await q.redis.zcard(q.keys.active))


async def test_group_same_batches_hold_one_group_and_any_mixes(redis_url: str, queue: Queue) -> None:
    groups_seen: dict[str, list[list[str | None]]] = {"same": [], "any": []}
    for mode in ("same", "any"):
        registry = Registry()

        @registry.processor(queue.name, batch={"size": 5, "timeout": 0.2, "group": mode})
        async def handle(batch: Batch, mode: str = mode) -> None:
            groups_seen[mode].append([job.group for job in batch])

        jobs = await queue.add_bulk(
            [("j", i, {"group": "a"}) for i in range(7)] + [("j", i, {"group": "b"}) for i in range(3)]
            + [("j", i) for i in range(2)])
        worker, task = await run_worker(redis_url, queue, registry)
        ids = [j.id for j in jobs]
        await wait_until(lambda ids=ids: all_in(queue, ids), timeout=20, message="all ran")
        await stop(worker, task)
    same = groups_seen["same"]
    assert all(len(set(groups)) == 1 for groups in same), same
    assert sorted(g for groups in same for g in groups if g) == ["a"] * 7 + ["b"] * 3
    assert sum(groups.count(None) for groups in same) == 2
    assert max(len(groups) for groups in same) > 1  # jobs of one group did share a batch
    assert any(len(set(groups)) > 1 for groups in groups_seen["any"])  # the default mixes


async def test_per_job_return_values_and_failures(redis_url: str, queue: Queue) -> None:
    registry = Registry()

    @registry.processor(queue.name, batch={"size": 5, "timeout": 0.2})
    async def handle(batch: Batch) -> None:
        for job in batch:
            kind = job.data["kind"]
            if kind == "value":
                batch.complete(job, {"sent": job.data["i"]})
            elif kind == "retry":
                batch.fail(job, "receiver said 500")
            elif kind == "fatal":
                batch.fail(job, UnrecoverableError("no such receiver"))
            elif kind == "unencodable":
                batch.complete(job, object())

    specs = [("value", 3), ("none", 3), ("retry", 3), ("fatal", 3), ("unencodable", 1)]
    jobs = await queue.add_bulk([("j", {"kind": k, "i": i}, {"attempts": n})
                                 for i, (k, n) in enumerate(specs)])
    worker, task = await run_worker(redis_url, queue, registry)
    ids = [j.id for j in jobs]
    await wait_until(lambda: all_in(queue, ids), timeout=20, message="all finished")
    await stop(worker, task)
    got = {j.data["kind"]: await queue.get_job(j.id) for j in jobs}
    assert got["value"] is not None and got["value"].state == "completed"
    assert got["value"].return_value == {"sent": 0}
    assert got["none"] is not None and got["none"].state == "completed"
    assert got["none"].return_value is None
    retried, fatal, bad = got["retry"], got["fatal"], got["unencodable"]
    assert retried is not None and retried.state == "failed" and retried.attempts_made == 3
    assert "receiver said 500" in (retried.failed_reason or "")
    assert fatal is not None and fatal.state == "failed" and fatal.attempts_made == 1
    assert "UnrecoverableError: no such receiver" in (fatal.failed_reason or "")
    assert bad is not None and bad.state == "failed" and "return value" in (bad.failed_reason or "")


async def test_a_batch_shrinks_to_what_the_worker_limiter_allows(redis_url: str, queue: Queue) -> None:
    sizes: list[int] = []
    registry = Registry()

    @registry.processor(queue.name, batch={"size": 50, "timeout": 0.3})
    async def handle(batch: Batch) -> None:
        sizes.append(len(batch))

    jobs = await queue.add_bulk([("j", i) for i in range(25)])
    worker, task = await run_worker(redis_url, queue, registry,
                                    limiter={"max": 10, "duration": 1.0})
    ids = [j.id for j in jobs]
    await wait_until(lambda: all_in(queue, ids), timeout=30, message="all ran")
    await stop(worker, task)
    assert sum(sizes) == 25 and max(sizes) <= 10  # never the 50 asked for
    starts = []
    for job_id in ids:
        job = await queue.get_job(job_id)
        assert job is not None and job.processed_on is not None
        starts.append(job.processed_on)
    starts.sort()
    # The limiter's rule: no window of 1 s sees more than 10 starts (Redis clock, ms).
    for i in range(len(starts) - 10):
        assert starts[i + 10] - starts[i] >= 1.0 - 1e-9, (i, starts)


async def test_a_batch_never_exceeds_global_or_group_concurrency(redis_url: str, queue: Queue) -> None:
    batches: list[list[str | None]] = []
    most_active = 0
    registry = Registry()

    @registry.processor(queue.name, batch={"size": 10, "timeout": 0.2, "group": "same"})
    async def handle(batch: Batch) -> None:
        nonlocal most_active
        batches.append([job.group for job in batch])
        most_active = max(most_active, await active_count(queue))

    await queue.set_global_concurrency(3)
    await queue.set_group_options("one-at-a-time", concurrency=1)
    jobs = await queue.add_bulk([("j", i) for i in range(9)]
                                + [("j", i, {"group": "one-at-a-time"}) for i in range(3)])
    worker, task = await run_worker(redis_url, queue, registry)
    await wait_until(lambda: all_in(queue, [j.id for j in jobs]), timeout=30, message="all ran")
    await stop(worker, task)
    assert most_active <= 3 and max(len(b) for b in batches) <= 3
    assert [len(b) for b in batches if b[0] == "one-at-a-time"] == [1, 1, 1]


async def gathered(q: Queue, n: int) -> bool:
    return await active_count(q) == n


async def test_pause_runs_a_batch_being_gathered_at_once(redis_url: str, queue: Queue) -> None:
    """The gathered jobs were taken (active) before the pause, as a started job is: they
    run now instead of waiting out the timeout; nothing added after the pause starts."""
    calls: list[int] = []
    registry = Registry()

    @registry.processor(queue.name, batch={"size": 50, "timeout": 600})
    async def handle(batch: Batch) -> None:
        calls.append(len(batch))

    worker, task = await run_worker(redis_url, queue, registry)
    jobs = await queue.add_bulk([("j", i) for i in range(3)])
    await wait_until(lambda: gathered(queue, 3), timeout=10, message="3 jobs gathered")
    assert calls == []
    await queue.pause()
    later = await queue.add("j", 99)
    await wait_until(lambda: all_in(queue, [j.id for j in jobs]), timeout=10,
                     message="the gathered batch ran before its timeout")
    assert calls == [3]
    assert await queue.get_state(later.id) == "paused"
    await stop(worker, task)


async def test_shutdown_hands_a_gathered_batch_back_unstarted(redis_url: str, queue: Queue) -> None:
    calls: list[int] = []
    registry = Registry()

    @registry.processor(queue.name, batch={"size": 50, "timeout": 600})
    async def handle(batch: Batch) -> None:
        calls.append(len(batch))

    worker, task = await run_worker(redis_url, queue, registry)
    jobs = await queue.add_bulk([("j", i, {"group": "g"} if i else {}) for i in range(3)])
    await wait_until(lambda: gathered(queue, 3), timeout=10, message="3 jobs gathered")
    await asyncio.wait_for(stop(worker, task), 10)
    assert calls == []
    for job in jobs:
        got = await queue.get_job(job.id)
        assert got is not None and got.state == "waiting"
        assert got.attempts_made == 0 and got.attempts_started == 0  # no attempt used
    assert await queue.redis.zscore(f"{queue.keys.base}:gactive", "g") is None  # slot back


async def test_cancel_reaches_a_job_being_gathered_and_one_inside_the_call(
        redis_url: str, queue: Queue) -> None:
    calls: list[list[int]] = []
    release = asyncio.Event()
    registry = Registry()

    @registry.processor(queue.name, batch={"size": 50, "timeout": 600})
    async def handle(batch: Batch) -> None:
        calls.append([job.data for job in batch])
        await release.wait()

    worker, task = await run_worker(redis_url, queue, registry, concurrency=50)
    jobs = await queue.add_bulk([("j", i) for i in range(3)])
    await wait_until(lambda: gathered(queue, 3), timeout=10, message="3 jobs gathered")
    await queue.cancel(jobs[0].id)
    await wait_until(lambda: all_in(queue, [jobs[0].id], ("failed",)), timeout=10,
                     message="the gathered job cancelled")
    await queue.pause()  # the batch (now of 2) runs at once
    await wait_until(lambda: len(calls) == 1, timeout=10, message="batch called")
    assert calls == [[1, 2]]
    await queue.cancel(jobs[1].id)  # inside the call: the call runs on
    await wait_until(lambda: worker._running[jobs[1].id].cancel_reason is not None,
                     timeout=10, message="the worker heard of the cancel")
    assert not task.done() and len(calls) == 1
    release.set()
    await wait_until(lambda: all_in(queue, [j.id for j in jobs]), timeout=10, message="done")
    await stop(worker, task)
    states = [await queue.get_state(j.id) for j in jobs]
    assert states == ["failed", "failed", "completed"]
    for job in jobs[:2]:
        got = await queue.get_job(job.id)
        assert got is not None and "cancelled" in (got.failed_reason or "")


async def test_batches_stop_gathering_when_every_slot_holds_a_gathered_job(
        redis_url: str, queue: Queue) -> None:
    """group="same", 2 slots: while one batch gathers, a slot is free and it waits for more
    of its group; once a job of another group takes the last slot, no job can be taken
    any more, so both batches run at once rather than after their (long) timeout."""
    calls: list[list[str | None]] = []
    registry = Registry()

    @registry.processor(queue.name, batch={"size": 2, "timeout": 600, "group": "same"})
    async def handle(batch: Batch) -> None:
        calls.append([job.group for job in batch])

    worker, task = await run_worker(redis_url, queue, registry, concurrency=2)
    try:
        first = await queue.add("j", 0, group="g0")
        await wait_until(lambda: gathered(queue, 1), timeout=10, message="gathered")
        second = await queue.add("j", 1, group="g1")
        await wait_until(lambda: all_in(queue, [first.id, second.id]), timeout=15,
                         message="both ran before their timeout")
        assert sorted(calls) == [["g0"], ["g1"]]
        third = await queue.add("j", 2, group="g2")
        await wait_until(lambda: gathered(queue, 1), timeout=10, message="gathered")
        assert await queue.get_state(third.id) == "active"  # gathering, with a free slot
    finally:
        await stop(worker, task)
    assert await queue.get_state(third.id) == "waiting"  # handed back at shutdown


async def test_group_rate_limited_from_a_batch_puts_its_jobs_back_without_an_attempt(
        redis_url: str, queue: Queue) -> None:
    calls: list[list[str | None]] = []
    registry = Registry()

    @registry.processor(queue.name, batch={"size": 3, "timeout": 0.2, "group": "same"})
    async def handle(batch: Batch) -> None:
        calls.append([job.group for job in batch])
        if len(calls) == 1:
            raise GroupRateLimited(0.2)  # the endpoint said 429

    jobs = await queue.add_bulk([("j", i, {"group": "endpoint", "attempts": 1})
                                 for i in range(3)])
    worker, task = await run_worker(redis_url, queue, registry)
    await wait_until(lambda: all_in(queue, [j.id for j in jobs]), timeout=20, message="done")
    await stop(worker, task)
    assert calls[0] == ["endpoint"] * 3 and sum(len(c) for c in calls) == 6
    for job in jobs:
        got = await queue.get_job(job.id)
        assert got is not None and got.state == "completed" and got.attempts_made == 1


async def test_batch_fail_with_a_rate_limit_puts_that_job_back_without_an_attempt(
        redis_url: str, queue: Queue) -> None:
    """batch.fail(job, GroupRateLimited(...)) acts on that job as if it had raised it alone:
    its group sleeps and it runs again later, with attempts=1 still completing; the other
    jobs of the batch complete at once."""
    seen: list[tuple[str, int]] = []
    registry = Registry()

    @registry.processor(queue.name, batch={"size": 3, "timeout": 0.2, "group": "any"})
    async def handle(batch: Batch) -> None:
        for job in batch:
            seen.append((job.group or "", job.attempts_made))
            if job.group == "throttled" and len([s for s in seen if s[0] == "throttled"]) == 1:
                batch.fail(job, GroupRateLimited(0.3))
            elif job.group == "later" and len([s for s in seen if s[0] == "later"]) == 1:
                batch.fail(job, Delayed(0.3))

    jobs = [await queue.add("j", i, group=g, attempts=1)
            for i, g in enumerate(("throttled", "later", "fine"))]
    worker, task = await run_worker(redis_url, queue, registry)
    await wait_until(lambda: all_in(queue, [j.id for j in jobs]), timeout=20, message="done")
    await stop(worker, task)
    for job in jobs:
        got = await queue.get_job(job.id)
        assert got is not None and got.state == "completed", (job.group, got)
        assert got.attempts_made == 1
    assert sorted(g for g, _ in seen) == ["fine", "later", "later", "throttled", "throttled"]
