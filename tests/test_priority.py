"""Priority order, FIFO within a priority, and prioritized before unprioritized."""

from __future__ import annotations

import asyncio
from typing import Any

from driver import fetch

from minique import Queue, Worker


async def test_priority_order_and_fifo(queue: Queue) -> None:
    spec = [("n1", 0), ("p3a", 3), ("p1a", 1), ("n2", 0), ("p3b", 3), ("p1b", 1), ("p2", 2)]
    jobs = await queue.add_bulk([(name, name, {"priority": p}) for name, p in spec])
    by_id = {j.id: j.name for j in jobs}
    order = [by_id[i] for i, _ in await fetch(queue, 10)]
    assert order == ["p1a", "p1b", "p2", "p3a", "p3b", "n1", "n2"]


async def test_fifo_without_priority_across_batches(queue: Queue) -> None:
    await queue.add_bulk([("x", i) for i in range(30)])
    seen = [i for batch in [await fetch(queue, 7) for _ in range(5)] for i, _ in batch]
    assert seen == [str(i) for i in range(1, 31)]


async def test_worker_runs_in_priority_order(queue: Queue, redis_url: str) -> None:
    ran: list[str] = []

    async def proc(job: Any) -> None:
        ran.append(job.name)

    await queue.add("low", None)
    await queue.add_bulk([(f"p{p}", None, {"priority": p}) for p in (5, 1, 3)])
    worker = Worker(queue.name, proc, url=redis_url, concurrency=1)
    task = asyncio.create_task(worker.run())
    last = await queue.get_job("1")
    assert last is not None
    await last.wait_until_finished(timeout=5)
    assert ran == ["p1", "p3", "p5", "low"]
    await worker.close()
    await task


async def test_prioritized_job_wakes_a_blocked_worker(queue: Queue, redis_url: str) -> None:
    # The worker blocks on the ready stream; a prioritized job never enters it, so the
    # wake stream must rouse the worker well before its block timeout (30 s here).
    worker = Worker(queue.name, lambda j: "ok", url=redis_url, block_timeout=30.0)
    task = asyncio.create_task(worker.run())
    await asyncio.sleep(0.1)
    job = await queue.add("p", None, priority=1)
    assert await job.wait_until_finished(timeout=15) == "ok"  # half the block timeout
    await worker.close()
    await task
