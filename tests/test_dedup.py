"""Deduplication and debounce: ``queue.add(..., dedup={...})`` against a real Redis."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest
from driver import complete, fail, fetch, finish
from helpers import wait_until

from minique import Queue, Worker


async def keys_of(queue: Queue) -> set[bytes]:
    return set(await queue.redis.keys(queue.keys.base + "*"))


async def events(queue: Queue, name: str) -> list[dict[bytes, bytes]]:
    return [f for _, f in await queue.redis.xrange(queue.keys.events) if f[b"ev"] == name.encode()]


async def snapshot(queue: Queue) -> dict[bytes, Any]:
    """Every key but the events and the producers' call record (re-send bookkeeping)."""
    return {k: await queue.redis.dump(k) for k in await keys_of(queue)
            if not k.endswith((b":events", b":producers"))}


async def test_duplicate_returns_the_existing_job_and_writes_only_its_event(queue: Queue) -> None:
    first = await queue.add("sync", {"n": 1}, dedup={"id": "acct-42:orders"})
    before = await snapshot(queue)
    again = await queue.add("sync", {"n": 2}, dedup={"id": "acct-42:orders"})
    assert again.id == first.id and again.data == {"n": 1}
    assert await snapshot(queue) == before
    [ev] = await events(queue, "deduplicated")
    assert ev[b"id"] == first.id.encode() and ev[b"dup"] not in (b"", first.id.encode())
    assert (await queue.get_stats())["waiting"] == 1


async def test_the_id_is_free_again_once_the_job_completes_or_fails(queue: Queue) -> None:
    for outcome in (complete, fail):
        job = await queue.add("sync", 1, dedup={"id": "d"})
        [(jid, tok)] = await fetch(queue)
        assert (await queue.add("sync", 2, dedup={"id": "d"})).id == job.id
        await finish(queue, [outcome(jid, tok)])
        fresh = await queue.add("sync", 3, dedup={"id": "d"})
        assert fresh.id != job.id
        await queue.remove_job(fresh.id)  # removing an unfinished job frees it too
        assert not await queue.redis.exists(queue.keys.base + ":dedup:d")


async def test_ttl_keeps_the_id_after_the_job_finished_until_it_runs_out(queue: Queue) -> None:
    job = await queue.add("sync", 1, dedup={"id": "t", "ttl": 0.3})
    [(jid, tok)] = await fetch(queue)
    await finish(queue, [complete(jid, tok, keep=(0, 0))])  # the job is deleted at once
    dup = await queue.add("sync", 2, dedup={"id": "t", "ttl": 0.3})
    assert dup.id == job.id and dup.state == "unknown"
    await wait_until(lambda: _gone(queue, "t"), timeout=5, message="ttl ran out")
    assert (await queue.add("sync", 3, dedup={"id": "t", "ttl": 0.3})).id != job.id


async def _gone(queue: Queue, did: str) -> bool:
    return not await queue.redis.exists(f"{queue.keys.base}:dedup:{did}")


async def test_debounce_replaces_a_delayed_jobs_data_and_restarts_its_delay(queue: Queue) -> None:
    spec = {"id": "deb", "ttl": 30, "replace": True, "extend": True}
    first = await queue.add("sync", {"v": 1}, dedup=spec, delay=5)
    due1 = await queue.redis.zscore(queue.keys.delayed, first.id)
    await asyncio.sleep(0.01)
    again = await queue.add("sync", {"v": 2}, dedup=spec, delay=5)
    assert again.id == first.id and again.data == {"v": 2}
    assert await queue.redis.zscore(queue.keys.delayed, first.id) > due1
    assert len(await events(queue, "debounced")) == 1
    # Never an active job: once taken, a duplicate leaves its data alone.
    await queue.promote_job(first.id)
    [(jid, _tok)] = await fetch(queue)
    assert (await queue.add("sync", {"v": 3}, dedup=spec, delay=5)).data == {"v": 2}
    assert await queue.get_state(jid) == "active"


async def test_fifty_concurrent_adds_with_one_dedup_id_make_one_job(queue: Queue, redis_url: str) -> None:
    producers = [Queue(queue.name, url=redis_url) for _ in range(5)]
    try:
        jobs = await asyncio.gather(*(producers[i % 5].add("sync", i, dedup={"id": "one"})
                                      for i in range(50)))
    finally:
        for p in producers:
            await p.close()
    assert len({j.id for j in jobs}) == 1
    assert (await queue.get_stats())["total"] == 1
    assert len(await events(queue, "deduplicated")) == 49


async def test_debounce_under_repeated_adds_runs_once_with_the_last_data(queue: Queue,
                                                                         redis_url: str) -> None:
    ran: list[Any] = []

    async def proc(job: Any) -> None:
        ran.append(job.data)

    worker = Worker(queue.name, proc, url=redis_url)
    task = asyncio.create_task(worker.run())
    spec = {"id": "deb", "ttl": 5, "replace": True, "extend": True}
    for i in range(20):
        await queue.add("sync", {"v": i}, dedup=spec, delay=0.3)
        await asyncio.sleep(0.01)
    await wait_until(lambda: bool(ran), timeout=10, message="debounced job ran")
    await asyncio.sleep(0.5)  # a second run would have to come from a second job: none exists
    assert ran == [{"v": 19}]
    assert (await queue.get_stats())["total"] == 1
    await worker.close()
    await task


@pytest.mark.parametrize(("spec", "error"), [
    ({"id": 42}, ValueError), ({"id": ""}, ValueError), ({"id": "x", "ttl": 0}, ValueError),
    ({"id": "x", "ttl": -1}, ValueError), ({"id": "x", "extend": True}, ValueError),
    ({"id": "x", "replace": "yes"}, TypeError), ({"id": "x", "bogus": 1}, TypeError),
    ("x", TypeError),
])
async def test_bad_dedup_specs_are_refused_and_nothing_is_written(queue: Queue, spec: Any,
                                                                   error: type[Exception]) -> None:
    with pytest.raises(error, match="dedup"):
        await queue.add("sync", 1, dedup=spec)
    assert await keys_of(queue) == set()


async def test_a_resent_add_with_a_dedup_id_changes_nothing(queue: Queue) -> None:
    from minique import scripts

    args, _ = queue._prepare("sync", 1, {"dedup": {"id": "r"}})
    args[0] = "custom-r"
    from minique.queue import _add_call_args

    call = [queue.keys.job_prefix, *_add_call_args([args], "producer-x", 1)]
    first = await scripts.run(queue.redis, "add", queue.keys.vector, call)
    resent = await scripts.run(queue.redis, "add", queue.keys.vector, call)
    assert first[1] == b"custom-r" and int(resent[0]) == 1
    assert (await queue.get_stats())["total"] == 1


async def test_a_resent_duplicate_add_returns_the_job_its_first_send_found(queue: Queue) -> None:
    """Even when that job was removed in between and its dedup id is free again: the
    re-send was answered from the state then, and returned a job that was never made
    (break round 35). add.lua notes a duplicate's outcome for its re-sends."""
    first = await queue.add("sync", 1, dedup={"id": "rs"})
    args, _ = queue._prepare("sync", 2, {"dedup": {"id": "rs"}})
    await queue._assign_ids([args])
    [reply] = await queue._send_adds([[args]])
    assert (reply[0], reply[1]) == (first.id.encode(), 1)
    assert await queue.remove_job(first.id)
    queue._add_seq -= 1  # the same call again, with its number: a re-send
    [resent] = await queue._send_adds([[args]])
    assert (resent[0], resent[1]) == (first.id.encode(), 1)
    assert (await queue.get_stats())["total"] == 0


async def test_debounce_without_a_delay_makes_the_delayed_job_due_now(queue: Queue) -> None:
    """"Restarts its delay with this add's delay": an add without one makes the job waiting
    at once with the last data (it used to keep the old due time)."""
    spec = {"id": "deb0", "ttl": 30, "replace": True}
    first = await queue.add("sync", {"v": 1}, dedup=spec, delay=3600)
    again = await queue.add("sync", {"v": 2}, dedup=spec)
    assert again.id == first.id and again.data == {"v": 2}
    assert await queue.get_state(first.id) == "waiting"
    assert await queue.redis.zscore(queue.keys.delayed, first.id) is None
    [(jid, _tok)] = await fetch(queue)
    assert jid == first.id


async def test_the_holder_of_a_dedup_id_can_be_read_and_the_id_freed_at_once(
        queue: Queue) -> None:
    """BullMQ's getDeduplicationJobId and removeDeduplicationKey."""
    first = await queue.add("sync", 1, dedup={"id": "acct-7"})
    assert await queue.get_deduplication_job_id("acct-7") == first.id
    assert await queue.get_deduplication_job_id("acct-8") is None
    assert await queue.remove_deduplication_key("acct-7") is True
    assert await queue.remove_deduplication_key("acct-7") is False
    second = await queue.add("sync", 2, dedup={"id": "acct-7"})
    assert second.id != first.id
    assert await queue.get_deduplication_job_id("acct-7") == second.id
    # The first one ends: it frees nothing, the id stays the second's.
    [(jid, tok)] = await fetch(queue)
    assert jid == first.id
    await finish(queue, [complete(jid, tok)])
    assert await queue.get_deduplication_job_id("acct-7") == second.id
    with pytest.raises(ValueError):
        await queue.remove_deduplication_key("")
