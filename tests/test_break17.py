"""Break round 17: a worker busy with a long job still held jobs ahead (until its hold ran
out, 50 ms and more), and another consumer (a ManualWorker, a worker with prefetch off)
took the jobs behind them: FIFO and priority order broke, while get_state() showed the
held jobs as waiting. One taken at a time, the held jobs were that consumer's to take.
Each test failed 8 runs in 8 before the fix (lua/includes/take.lua, "giving way")."""

from __future__ import annotations

import asyncio
from typing import Any

from held_support import fresh_prefix, last_held, started, warm_worker
from helpers import wait_until

from minique import ManualWorker, Queue, Worker

# Three jobs of priority 2, then fifty of priority 10 (the long job goes first, priority 1).
_URGENT_THEN_LOW = ([("tick", {}, {"priority": 2}) for _ in range(3)]
                    + [("tick", {}, {"priority": 10}) for _ in range(50)])


async def _busy_holder(redis_url: str, procs: list[Any], label: str,
                       jobs: list[tuple[str, Any, dict[str, Any]]]) -> tuple[Queue, list[str]]:
    """A worker process at concurrency 1 that measured its jobs as short (so it holds
    ahead), then given a job that sleeps 30 s and ``jobs`` in one add: it runs the long
    one and holds some of the others. Returns the queue and the ids of ``jobs``."""
    prefix = fresh_prefix(label)
    q = Queue("held", url=redis_url, prefix=prefix)
    await warm_worker(redis_url, procs, q, prefix, 1)
    first = {"priority": 1} if jobs[0][2].get("priority") else {}
    added = await q.add_bulk([("tick", {"sleep": 30}, first), *jobs])
    await wait_until(lambda: started(q, added[0].id), timeout=20,
                     message="the long job started")
    return q, [j.id for j in added[1:]]


async def _manual_take(redis_url: str, q: Queue, expected: str, held: list[str]) -> None:
    """A ManualWorker's first take is ``expected``, once one of ``held`` is held."""
    try:
        await last_held(q, held)
        async with ManualWorker("held", url=redis_url, prefix=q.prefix,
                                stalled_interval=0) as manual:
            taken = await manual.get_next_job()
            assert taken is not None
            assert taken.id == expected, (
                f"took job {taken.id} (priority {taken.priority}) while job {expected} "
                "waited ahead of it, held by the busy worker (waiting, to everyone else)")
            await manual.complete(taken)
    finally:
        await q.close()


async def test_another_consumer_takes_jobs_behind_the_ones_a_busy_worker_holds(
        redis_url: str, procs: list[Any]) -> None:
    q, ids = await _busy_holder(redis_url, procs, "gw1", [("tick", {}, {}) for _ in range(20)])
    await _manual_take(redis_url, q, ids[0], ids)


async def test_another_consumer_takes_lower_priority_jobs_before_held_higher_priority_ones(
        redis_url: str, procs: list[Any]) -> None:
    q, ids = await _busy_holder(redis_url, procs, "gw2", _URGENT_THEN_LOW)
    await _manual_take(redis_url, q, ids[0], ids[:3])


async def test_an_idle_one_at_a_time_worker_takes_lower_priority_jobs_before_held_ones(
        redis_url: str, procs: list[Any]) -> None:
    q, ids = await _busy_holder(redis_url, procs, "gw3", _URGENT_THEN_LOW)
    urgent_ids = ids[:3]
    await last_held(q, urgent_ids)
    first: list[tuple[str, int]] = []
    release = asyncio.Event()

    async def record(job: Any) -> None:
        first.append((job.id, job.priority))
        await release.wait()

    worker = Worker("held", record, url=redis_url, prefix=q.prefix, concurrency=1,
                    prefetch=False)
    run = asyncio.create_task(worker.run(handle_signals=False))
    try:
        await wait_until(lambda: bool(first), timeout=10, message="a job started")
        assert first[0] == (urgent_ids[0], 2), (
            f"the idle worker started {first[0]} while the priority-2 jobs "
            f"{urgent_ids} waited, held by the busy worker")
    finally:
        release.set()
        await worker.close()
        await asyncio.wait_for(run, 10)
        await q.close()

