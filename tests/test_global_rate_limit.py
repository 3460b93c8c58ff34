"""The queue's own limits, set on the queue rather than on each worker (BullMQ's
setGlobalRateLimit, getGlobalConcurrency...): docs/guide/workers.md, "Concurrency and rate
limits"."""

from __future__ import annotations

import asyncio
from typing import Any

import driver
import pytest
from helpers import wait_until

from minique import Queue, Worker


async def test_a_global_rate_limit_caps_starts_across_workers_without_limiters(
        queue: Queue, redis_url: str) -> None:
    starts: list[int] = []

    async def work(job: Any) -> None:
        # Stamped by the script that took it, on the clock the limiter uses.
        assert job.processed_on is not None
        starts.append(round(job.processed_on * 1000))

    await queue.set_global_rate_limit(4, 0.4)
    assert await queue.get_global_rate_limit() == {"max": 4, "duration": 0.4}
    await queue.add_bulk([("t", i) for i in range(14)])
    workers = [Worker(queue.name, work, url=redis_url, concurrency=5) for _ in range(2)]
    tasks = [asyncio.create_task(w.run(handle_signals=False)) for w in workers]
    try:
        await wait_until(lambda: len(starts) >= 14, timeout=30, message="14 jobs started")
        assert all(w._global_limit == -1 and w._prefetch() == 0 for w in workers)
    finally:
        for w in workers:
            await w.close()
        await asyncio.gather(*tasks)
    starts.sort()
    # A sliding window: no 400 ms saw more than 4 starts.
    worst = max(sum(1 for t in starts if s <= t < s + 400) for s in starts)
    assert worst <= 4, f"{worst} starts within 400 ms under a limit of 4 per 400 ms: {starts}"


async def test_a_global_rate_limit_wins_over_a_workers_own_and_can_be_removed(
        queue: Queue, redis_url: str) -> None:
    await queue.set_global_rate_limit(1, 3600)
    await queue.add_bulk([("t", i) for i in range(3)])
    _, taken, header = await driver.finish(queue, [], 3, limiter=(100, 1000))
    assert len(taken) == 1 and int(header[0]) == 0  # one start in the hour, not 100 a second
    _, taken, header = await driver.finish(queue, [], 2, limiter=(100, 1000))
    assert taken == [] and int(header[0]) == 2  # rate limited, with the time to wait
    await queue.remove_global_rate_limit()
    assert await queue.get_global_rate_limit() is None
    _, taken, _ = await driver.finish(queue, [], 2)
    assert len(taken) == 2


async def test_setting_it_hands_back_held_jobs_and_holds_none_while_set(queue: Queue) -> None:
    await queue.add_bulk([("t", i) for i in range(10)])
    _, taken, header = await driver.finish(queue, [], 1, hold=4, hold_ms=300)
    assert len(taken) == 5 and int(header[7]) > 0  # one active, four held
    loop = asyncio.get_running_loop()
    before = loop.time()
    await queue.set_global_rate_limit(100, 1.0)
    assert loop.time() - before >= 0.25  # the holds granted before it ran out first
    _, taken, header = await driver.finish(queue, [], 1, hold=4, hold_ms=300)
    assert len(taken) == 1 and int(header[7]) == 0 and int(header[5]) == -1


async def test_global_concurrency_getters_and_bad_limits(queue: Queue) -> None:
    assert await queue.get_global_concurrency() is None
    await queue.set_global_concurrency(3)
    assert await queue.get_global_concurrency() == 3
    await queue.remove_global_concurrency()
    assert await queue.get_global_concurrency() is None
    for bad in [(0, 1.0), (True, 1.0), (2.5, 1.0), (1, 0), (1, -1), (1, "1")]:
        with pytest.raises(ValueError):
            await queue.set_global_rate_limit(*bad)  # type: ignore[arg-type]
    assert await queue.get_global_rate_limit() is None
