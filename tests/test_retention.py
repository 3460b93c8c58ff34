"""Retention of finished jobs: by count, by age, at once, and by the sweep of a quiet queue.
Each job's own setting holds, whatever the settings of the jobs around it."""

from __future__ import annotations

import asyncio
from typing import Any

from driver import complete, fail, fetch, finish
from helpers import start_worker, wait_until

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


async def test_jobs_trimmed_by_retention_take_their_logs_with_them(queue: Queue) -> None:
    # Retention deletes trimmed jobs in one DEL that names their logs only once the queue
    # has logged (meta 'xl', lua/log.lua): the logs must still go with their jobs.
    await queue.add_bulk([("x", i) for i in range(4)])
    taken = await fetch(queue, 4)
    for job_id, _ in taken:
        await queue.add_log(job_id, f"line of {job_id}")
    await finish(queue, [complete(i, t, keep=(1, -1)) for i, t in taken])
    ids = [i for i, _ in taken]
    assert await queue.get_job_ids("completed", 0, 10) == [ids[-1]]
    for gone in ids[:-1]:
        assert not await queue.redis.exists(queue.keys.job(gone), queue.keys.logs(gone))
    assert await queue.redis.exists(queue.keys.logs(ids[-1]))


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


async def test_sweep_applies_each_jobs_age_and_never_overrides_keep_forever(
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


async def finish_one(q: Queue, keep: tuple[int, int], failed: bool = False, **options: Any) -> str:
    await q.add("x", 1, **options)
    return (await finish_all(q, 1, keep, failed))[0]


async def finished_ids(q: Queue, state: str = "completed") -> set[str]:
    return set(await q.get_job_ids(state, 0, 10_000))


async def _next_ms(q: Queue) -> None:
    """Waits for Redis's clock to reach its next millisecond: jobs that finish in the same
    millisecond tie in the finished set (scored by that ms), where their order is their
    ids' as strings ("10" before "9"), as in BullMQ; one finish per ms makes "the newest
    n" exact."""
    sec, usec = await q.redis.time()
    start = sec * 1000 + usec // 1000

    async def moved() -> bool:
        s2, u2 = await q.redis.time()
        return bool(s2 * 1000 + u2 // 1000 > start)

    await wait_until(moved, timeout=5)


async def test_keep_forever_is_not_trimmed_by_other_jobs_counts(queue: Queue) -> None:
    kept = await finish_one(queue, keep=(-1, -1))
    counted = []
    for _ in range(10):
        await _next_ms(queue)
        counted.append(await finish_one(queue, keep=(3, -1)))
    assert await finished_ids(queue) == {kept, *counted[-3:]}
    assert await queue.get_job(kept) is not None
    assert await queue.get_job(counted[0]) is None


async def test_counts_apply_among_the_jobs_that_share_the_setting(queue: Queue) -> None:
    """Count n: at most the n newest jobs with that same setting, whatever the others'."""
    generous = [await finish_one(queue, keep=(3, -1)) for _ in range(2)]
    tight = [await finish_one(queue, keep=(1, -1)) for _ in range(5)]
    assert await finished_ids(queue) == {*generous, tight[-1]}
    more = [await finish_one(queue, keep=(3, -1)) for _ in range(2)]
    assert await finished_ids(queue) == {generous[-1], *more, tight[-1]}
    assert (await queue.get_stats())["completed"] == 4
    assert await queue.get_job_ids("completed", 0, 1) == [more[-1], more[-2]]  # newest first


async def test_each_job_has_its_own_age(queue: Queue) -> None:
    long_lived = await finish_one(queue, keep=(-1, 60_000))
    short = [await finish_one(queue, keep=(-1, 150)) for _ in range(3)]
    await asyncio.sleep(0.2)
    latest = await finish_one(queue, keep=(-1, 150))  # finishing applies the ages due
    assert await finished_ids(queue) == {long_lived, latest}
    assert [await queue.get_job(i) for i in short] == [None, None, None]


async def test_removed_at_once_is_never_stored_and_touches_no_other_job(queue: Queue) -> None:
    kept = [await finish_one(queue, keep=(5, -1)) for _ in range(3)]
    gone = [await finish_one(queue, keep=(0, -1)), await finish_one(queue, keep=(-1, 0))]
    assert await finished_ids(queue) == set(kept)
    assert [await queue.get_job(i) for i in gone] == [None, None]
    failed_kept = await finish_one(queue, keep=(-1, -1), failed=True)
    await finish_one(queue, keep=(0, -1), failed=True)
    assert await finished_ids(queue, "failed") == {failed_kept}


async def test_failed_jobs_keep_their_own_settings_too(queue: Queue) -> None:
    kept = await finish_one(queue, keep=(-1, -1), failed=True)
    counted = [await finish_one(queue, keep=(1, -1), failed=True) for _ in range(4)]
    assert await finished_ids(queue, "failed") == {kept, counted[-1]}


async def test_a_retried_job_is_not_trimmed_by_its_old_deadline(queue: Queue) -> None:
    job_id = await finish_one(queue, keep=(1, 100))
    await queue.retry_job(job_id)  # back to waiting: its old deadlines must not follow it
    await asyncio.sleep(0.15)
    # Would be its count and age deadline; taken before it, being prioritized.
    await finish_one(queue, keep=(-1, -1), priority=1)
    again = await queue.get_job(job_id)
    assert again is not None and again.state == "waiting"
    assert await queue.sweep() == 0


async def test_removed_by_hand_then_added_again_is_not_trimmed(queue: Queue) -> None:
    first = await queue.add("x", 1, job_id="same")
    [(job_id, token)] = await fetch(queue, 1)
    await finish(queue, [complete(job_id, token, keep=(1, 100))])
    assert await first.remove()
    await queue.add("x", 2, job_id="same")  # waiting, same id
    await asyncio.sleep(0.15)
    await finish_one(queue, keep=(-1, -1), priority=1)
    assert await queue.sweep() == 0
    again = await queue.get_job("same")
    assert again is not None and again.state == "waiting" and again.data == 2


async def test_keep_forever_survives_the_default_count_in_worker_processes(
        redis_url: str, procs: list[Any]) -> None:
    """The reported case: remove_on_complete=False, then more than the default 1000 jobs."""
    q = Queue("procs", url=redis_url, prefix="keep-own")
    await q.obliterate(force=True)
    forever = await q.add("stamp_noop", None, remove_on_complete=False)
    failed_forever = await q.add("missing-name", None, remove_on_fail=False)
    await q.add_bulk([("stamp_noop", None) for _ in range(1100)])
    await q.add_bulk([("missing-name", None, {"remove_on_fail": 3}) for _ in range(10)])
    procs.append(start_worker(redis_url, "procs", "--prefix", "keep-own", "--concurrency", "20"))

    async def all_done() -> bool:
        totals = (await q.get_metrics(minutes=1))["totals"]
        return totals["completed"] == 1101 and totals["failed"] == 11

    await wait_until(all_done, timeout=30, message="every job finished")
    stats = await q.get_stats()
    assert stats["completed"] == 1001 and stats["failed"] == 4  # 1000 + 1, and 3 + 1
    for job in (forever, failed_forever):
        stored = await q.get_job(job.id)
        assert stored is not None and stored.state in ("completed", "failed")
    await q.obliterate(force=True)
    await q.close()


async def test_every_group_is_listed_counted_removed_retried_cleaned_and_swept(
        queue: Queue) -> None:
    shared = [await finish_one(queue, keep=(100, -1)) for _ in range(2)]  # sets the shared one
    forever = [await finish_one(queue, keep=(-1, -1)) for _ in range(2)]
    aging = [await finish_one(queue, keep=(-1, 100)) for _ in range(2)]
    ids = [*shared, *forever, *aging]
    assert await queue.get_job_ids("completed", 0, 10) == ids[::-1]  # newest first, merged
    assert await queue.get_job_ids("completed", 1, 2) == ids[::-1][1:3]
    assert (await queue.get_stats())["completed"] == 6
    assert await queue.remove_job(forever[0])
    assert (await queue.get_stats())["completed"] == 5
    await asyncio.sleep(0.15)
    assert await queue.sweep() == 2  # the aging group, by its own age
    assert await finished_ids(queue) == {*shared, forever[1]}
    groups = queue.keys.completed_groups
    assert len(await queue.redis.smembers(groups)) == 1  # the emptied group is forgotten
    assert await queue.retry_jobs("completed") == 3  # from every group
    assert (await queue.get_stats())["waiting"] == 3
    again = await finish_all(queue, 3, keep=(-1, -1))
    assert len(await queue.clean(0, "completed")) == 3  # from every group
    assert await finished_ids(queue) == set() and sorted(again) == sorted([*shared, forever[1]])
