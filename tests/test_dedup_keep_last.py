"""dedup keep_last_if_active (BullMQ's keepLastIfActive): a duplicate of an active job is
kept, the last one winning, and added when that job finishes, so one job of the dedup id
runs at a time and the last add runs after it. Against a real Redis."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest
from driver import complete, fail, fetch, finish, retry
from helpers import wait_until

from minique import Queue, Worker
from minique.events import read_events_back

KEEP = {"id": "entity-7", "keep_last_if_active": True}


async def only_job(q: Queue) -> Any:
    ids = await q.get_job_ids("waiting") + await q.get_job_ids("delayed")
    assert len(ids) == 1, ids
    return await q.get_job(ids[0])


async def next_key(q: Queue) -> bool:
    return bool(await q.redis.exists(f"{q.keys.base}:dedup-next:{KEEP['id']}"))


async def test_the_last_duplicate_of_an_active_job_is_added_when_it_completes(
        queue: Queue) -> None:
    first = await queue.add("index", {"v": 1}, dedup=KEEP)
    [(job_id, token)] = await fetch(queue, 1)  # active now
    for v in (2, 3, 4):
        dup = await queue.add("index", {"v": v}, dedup=KEEP)
        assert dup.id == first.id  # deduplicated: the active job is returned
    assert (await queue.get_stats())["total"] == 1
    assert await queue.get_deduplication_job_id(KEEP["id"]) == first.id
    await finish(queue, [complete(job_id, token)])
    kept = await only_job(queue)
    assert kept.id != first.id and kept.data == {"v": 4} and kept.name == "index"
    assert await queue.get_deduplication_job_id(KEEP["id"]) == kept.id
    assert not await next_key(queue)
    # While the kept job waits, a duplicate is dropped as usual (one active, one waiting
    # at most), even with the flag.
    assert (await queue.add("index", {"v": 5}, dedup=KEEP)).id == kept.id
    assert (await only_job(queue)).data == {"v": 4}
    names = [(e.name, e.job_id) for e in await read_events_back(queue.redis, queue.keys, "+", 100)]
    assert ("added", kept.id) in names


async def test_a_failed_job_releases_its_kept_duplicate_and_a_retried_one_keeps_it(
        queue: Queue) -> None:
    await queue.add("index", {"v": 1}, dedup=KEEP, attempts=2)
    [(job_id, token)] = await fetch(queue, 1)
    await queue.add("index", {"v": 2}, dedup=KEEP)
    await finish(queue, [retry(job_id, token)])  # waiting again: not finished
    assert (await only_job(queue)).id == job_id
    assert await next_key(queue)
    [(job_id, token)] = await fetch(queue, 1)
    await finish(queue, [fail(job_id, token)])  # failed for good
    kept = await only_job(queue)
    assert kept.data == {"v": 2}


async def test_the_kept_add_keeps_its_options(queue: Queue) -> None:
    await queue.add("index", {"v": 1}, dedup=KEEP)
    [(job_id, token)] = await fetch(queue, 1)
    await queue.add("other", {"v": 2}, dedup=KEEP, priority=3, group="acct", attempts=4,
                    delay=60)
    await finish(queue, [complete(job_id, token)])
    kept = await only_job(queue)
    assert (kept.name, kept.priority, kept.group, kept.opts.attempts) == ("other", 3, "acct", 4)
    assert await kept.get_state() == "delayed"
    assert kept.delay_until is not None and kept.delay_until > kept.timestamp + 59


async def test_removing_the_job_unfinished_drops_its_kept_add(queue: Queue) -> None:
    await queue.add("index", {"v": 1}, dedup=KEEP, attempts=2)
    [(job_id, token)] = await fetch(queue, 1)
    await queue.add("index", {"v": 2}, dedup=KEEP)
    await finish(queue, [retry(job_id, token)])
    await queue.remove_job(job_id)
    assert (await queue.get_stats())["total"] == 0
    assert not await next_key(queue)
    assert await queue.get_deduplication_job_id(KEEP["id"]) is None


async def test_removing_the_dedup_key_adds_the_kept_job_at_once(queue: Queue) -> None:
    first = await queue.add("index", {"v": 1}, dedup=KEEP)
    await fetch(queue, 1)
    await queue.add("index", {"v": 2}, dedup=KEEP)
    assert await queue.remove_deduplication_key(KEEP["id"]) is True
    kept = await only_job(queue)
    assert kept.data == {"v": 2} and kept.id != first.id
    assert await queue.get_deduplication_job_id(KEEP["id"]) == kept.id


async def test_obliterate_leaves_no_kept_add(queue: Queue) -> None:
    await queue.add("index", {"v": 1}, dedup=KEEP)
    await fetch(queue, 1)
    await queue.add("index", {"v": 2}, dedup=KEEP)
    await queue.obliterate(force=True)
    assert await queue.redis.keys(f"{queue.keys.base}*") == []


@pytest.mark.parametrize("options, error, message", [
    ({"dedup": {**KEEP, "ttl": 5}}, ValueError, "keep_last_if_active takes no ttl"),
    ({"dedup": KEEP, "job_id": "x"}, ValueError, "takes no job_id"),
    ({"dedup": {**KEEP, "keep_last_if_active": 1}}, TypeError, "must be a bool"),
    ({"dedup": {"id": "x", "keep_last": True}}, TypeError, "keep_last_if_active"),
])
async def test_bad_specs_are_refused(queue: Queue, options: dict[str, Any],
                                     error: type[Exception], message: str) -> None:
    with pytest.raises(error, match=message):
        await queue.add("index", 1, **options)
    assert (await queue.get_stats())["total"] == 0


async def test_with_a_worker_one_runs_at_a_time_and_the_last_data_runs_last(
        queue: Queue, redis_url: str) -> None:
    running = 0
    most = 0
    seen: list[int] = []
    gate = asyncio.Event()

    async def index(job: Any) -> None:
        nonlocal running, most
        running += 1
        most = max(most, running)
        seen.append(job.data["v"])
        if job.data["v"] == 0:
            await gate.wait()
        running -= 1

    worker = Worker(queue.name, index, url=redis_url, concurrency=5)
    task = asyncio.create_task(worker.run(handle_signals=False))
    try:
        await queue.add("index", {"v": 0}, dedup=KEEP)
        await wait_until(lambda: seen == [0], timeout=10, message="the first job runs")
        for v in range(1, 30):
            await queue.add("index", {"v": v}, dedup=KEEP)
        gate.set()
        await wait_until(lambda: seen[-1:] == [29], timeout=10, message="the last add ran")

        async def both_done() -> bool:
            return (await queue.get_stats())["completed"] == 2
        await wait_until(both_done, timeout=10, message="both jobs completed")
    finally:
        await worker.close()
        await task
    assert seen == [0, 29] and most == 1
