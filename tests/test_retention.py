"""Retention of finished jobs: by count, by age, at once, and by the sweep of a quiet queue."""

from __future__ import annotations

import asyncio

from driver import complete, fail, fetch, finish
from helpers import wait_until

from minique import Queue


async def finish_all(q: Queue, n: int, keep: tuple[int, int], failed: bool = False) -> list[str]:
    taken = await fetch(q, n)
    await finish(q, [fail(i, t, keep=keep) if failed else complete(i, t, keep=keep)
                     for i, t in taken])
    return [i for i, _ in taken]


async def test_keep_by_count_removes_the_oldest_with_all_their_keys(queue: Queue) -> None:
    await queue.add_bulk([("x", i) for i in range(5)])
    ids = await finish_all(queue, 5, keep=(3, -1))
    kept = await queue.get_job_ids("completed", 0, 10)
    assert sorted(kept) == sorted(ids[2:])
    for gone in ids[:2]:
        assert not await queue.redis.exists(queue.keys.job(gone), queue.keys.logs(gone))


async def test_keep_by_age(queue: Queue) -> None:
    await queue.add_bulk([("x", i) for i in range(2)])
    old = await finish_all(queue, 2, keep=(-1, 300))
    await asyncio.sleep(0.35)  # let the first two age past 300 ms
    await queue.add("y", 1)
    new = await finish_all(queue, 1, keep=(-1, 300))
    assert await queue.get_job_ids("completed", 0, 10) == new
    assert [await queue.get_job(i) for i in old] == [None, None]


async def test_remove_on_complete_true_keeps_nothing_and_failed_have_their_own_policy(
        queue: Queue) -> None:
    job = await queue.add("x", 1, remove_on_complete=True)
    [(job_id, token)] = await fetch(queue, 1)
    await finish(queue, [complete(job_id, token, keep=(0, -1))])
    assert await queue.get_job(job.id) is None
    await queue.add_bulk([("f", i) for i in range(4)])
    await finish_all(queue, 4, keep=(2, -1), failed=True)
    assert (await queue.get_stats())["failed"] == 2


async def test_options_reach_the_worker_and_default_retention_is_bounded(
        queue: Queue, redis_url: str) -> None:
    from minique import Worker

    await queue.add_bulk([("x", i, {"remove_on_complete": {"count": 5}}) for i in range(20)])
    worker = Worker(queue.name, lambda j: None, url=redis_url)
    task = asyncio.create_task(worker.run())
    await wait_until(lambda: _total_finished(queue, 20), message="20 jobs finished")
    assert (await queue.get_stats())["completed"] == 5
    await worker.close()
    await task
    default = Queue(queue.name, url=redis_url).default_job_options
    assert default == {}  # and the built-in default keeps 1000 completed, 24 h (README)


async def _total_finished(q: Queue, n: int) -> bool:
    totals = (await q.get_metrics(minutes=1))["totals"]
    return bool(totals["completed"] >= n)


async def test_sweep_continues_the_last_policy_and_never_overrides_keep_forever(
        queue: Queue) -> None:
    await queue.add_bulk([("x", i) for i in range(3)])
    await finish_all(queue, 3, keep=(-1, 200))  # keep for 200 ms
    await asyncio.sleep(0.25)
    assert await queue.sweep() == 3  # nothing finished since: the sweep does it
    assert (await queue.get_stats())["completed"] == 0
    await queue.add_bulk([("y", i) for i in range(3)])
    await finish_all(queue, 3, keep=(-1, -1))  # keep forever
    assert await queue.sweep() == 0
    assert (await queue.get_stats())["completed"] == 3
