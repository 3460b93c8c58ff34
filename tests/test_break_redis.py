"""Break tests for a Redis that misbehaves on its own: out of memory under ``noeviction``,
an eviction policy set while workers run. Each test runs its own server (they change
``maxmemory`` and the policy), and describes the bug a break run found; each fails on the
code before its fix.

Found by driving workers and producers against a private Redis while a disruptor set
``maxmemory`` below the memory in use, flushed functions, killed clients, paused clients,
and killed Redis with AOF and RDB persistence (report of the break-redis run).
"""

from __future__ import annotations

import asyncio
import collections
import logging
import random
from collections.abc import AsyncIterator
from typing import Any

import pytest
from helpers import server_binary, wait_until
from redis.exceptions import OutOfMemoryError

from minique import Queue, Registry, Worker, scripts
from minique.errors import AddBulkIncomplete
from minique.server import RedisServer


@pytest.fixture
async def server() -> AsyncIterator[RedisServer]:
    with RedisServer(binary=server_binary()) as s:
        yield s


async def _used_memory(q: Queue) -> int:
    return int((await q.redis.info("memory"))["used_memory"])


async def _job_ids(q: Queue) -> set[str]:
    prefix = q.keys.job_prefix
    return {k.decode()[len(prefix):] async for k in q.redis.scan_iter(match=f"{prefix}*",
                                                                       count=1000)}


async def test_an_add_bulk_refused_for_memory_half_way_says_which_jobs_were_added(
        server: RedisServer) -> None:
    """``add_bulk`` sends 500 jobs per script call, all calls in one pipeline. When Redis
    runs out of memory after the first calls (maxmemory, noeviction), it refuses the rest
    with OOM, and add_bulk raised that ``OutOfMemoryError`` as is: 500 or 1,000 of 1,500
    jobs were in the queue, the caller had no way to know which, and adding the list
    again (what one does after "out of memory, try later") added them twice under new
    automatic ids. Now: ``AddBulkIncomplete`` with the jobs added and the positions of the
    ones to add again; a refusal of the whole call is the plain error, nothing added.

    The memory limit is swept so that every outcome happens (whole, none, part); each
    outcome must tell the truth about what is in Redis."""
    q = Queue("bulk-oom", url=server.url)
    items = [("x", {"pad": "p" * 1000, "i": i}) for i in range(1500)]
    outcomes: collections.Counter[str] = collections.Counter()
    try:
        for margin in range(100_000, 3_000_001, 150_000):
            await q.obliterate(force=True)
            await q.add("warm", 0)  # the library loaded, the queue's keys made
            await q.redis.config_set("maxmemory", await _used_memory(q) + margin)
            try:
                jobs = await q.add_bulk(items)
            except AddBulkIncomplete as exc:
                await q.redis.config_set("maxmemory", 0)
                outcomes["part"] += 1
                assert exc.added and exc.not_added
                assert len(exc.added) + len(exc.not_added) == len(items)
                assert {j.data["i"] for j in exc.added}.isdisjoint(exc.not_added)
                assert await _job_ids(q) == {"1"} | {j.id for j in exc.added}
                # Adding what was not added completes the list, nothing twice.
                await q.add_bulk([items[i] for i in exc.not_added])
                assert len(await _job_ids(q)) == 1 + len(items)
            except OutOfMemoryError:
                await q.redis.config_set("maxmemory", 0)
                outcomes["none"] += 1
                assert await _job_ids(q) == {"1"}, "a refused add_bulk added jobs"
            else:
                await q.redis.config_set("maxmemory", 0)
                outcomes["whole"] += 1
                assert len(jobs) == len(items)
        assert outcomes["part"] and outcomes["none"] and outcomes["whole"], outcomes
    finally:
        await q.redis.config_set("maxmemory", 0)
        await q.obliterate(force=True)
        await q.close()


async def test_an_events_cap_refused_for_memory_is_written_by_the_next_call(
        server: RedisServer) -> None:
    """A Queue with ``events_max_len`` writes the cap into the queue's meta hash before
    its first call. It marked the cap written *before* the write: a first add refused for
    memory (or a dropped link) left it marked, and the queue's events stream was capped
    at the default 10,000 entries for the Queue's whole life."""
    q = Queue("cap-oom", url=server.url, events_max_len=7)
    try:
        await q.redis.config_set("maxmemory", 1)
        with pytest.raises(OutOfMemoryError):
            await q.add("x", 1, job_id="a")  # no ids to reserve: the cap is the first write
        await q.redis.config_set("maxmemory", 0)
        await q.add("x", 2)
        assert await q.redis.hget(q.keys.meta, "emax") == b"7"
    finally:
        await q.redis.config_set("maxmemory", 0)
        await q.obliterate(force=True)
        await q.close()


async def test_a_worker_warns_when_the_eviction_policy_changes_while_it_runs(
        server: RedisServer, caplog: Any) -> None:
    """The worker looked at ``maxmemory-policy`` once, at start-up. A policy set to
    allkeys-lru later (a CONFIG SET by mistake, a managed Redis' settings changed) went
    unnoticed while Redis evicted job hashes, stream entries and the id counter: in the
    break run, 99 of 798 acknowledged jobs vanished and 165 ids were handed out twice, and
    nothing was logged. The heartbeat now looks at the policy too and warns when it
    becomes an evicting one."""
    caplog.set_level(logging.WARNING, logger="minique.worker")
    q = Queue("evict", url=server.url)
    worker = Worker("evict", lambda job: None, url=server.url, heartbeat_interval=0.05)
    task = asyncio.create_task(worker.run(handle_signals=False))
    try:
        await wait_until(lambda: _heartbeats(q, 2), message="two heartbeats")
        assert "noeviction" not in caplog.text
        await q.redis.config_set("maxmemory-policy", "allkeys-lru")
        await wait_until(lambda: "'allkeys-lru', not 'noeviction'" in caplog.text,
                         timeout=5, message="eviction warning")
    finally:
        await q.redis.config_set("maxmemory-policy", "noeviction")
        await worker.close()
        await task
        await q.obliterate(force=True)
        await q.close()


_beats: collections.Counter[str] = collections.Counter()


async def _heartbeats(q: Queue, n: int) -> bool:
    seen = await q.redis.zrange(q.keys.workers, 0, -1, withscores=True)
    for name, score in seen:
        _beats[f"{name!r}:{score}"] += 1
    return len(_beats) >= n


async def test_jobs_added_and_finished_while_redis_is_out_of_memory_run_once(
        server: RedisServer) -> None:
    """Guard for the whole OOM episode (passes since the fixes above): while Redis
    refuses writes for memory, an add raises ``OutOfMemoryError`` and adds nothing, the
    worker's finish calls are refused and sent again unchanged, its results kept; once
    memory frees, every acknowledged job completes exactly once and no job is lost."""
    runs: collections.Counter[str] = collections.Counter()
    registry = Registry()

    @registry.processor("oom", name="e")
    async def e(job: Any) -> str:
        runs[job.id] += 1
        await asyncio.sleep(job.data["s"])
        return "ok"

    q = Queue("oom", url=server.url, default_job_options={"remove_on_complete": False})
    worker = Worker("oom", registry, url=server.url, concurrency=10, lock_duration=30,
                    block_timeout=1)
    task = asyncio.create_task(worker.run(handle_signals=False))
    acked: list[str] = []
    refused = 0
    stop = asyncio.Event()

    async def produce() -> None:
        nonlocal refused
        while not stop.is_set():
            try:
                acked.append((await q.add("e", {"s": random.choice([0, 0.01, 0.05]),
                                                "pad": "p" * 300})).id)
            except OutOfMemoryError:
                refused += 1
                await asyncio.sleep(0.01)

    producers = [asyncio.create_task(produce()) for _ in range(3)]
    try:
        await wait_until(lambda: len(acked) > 200, message="first adds")
        await q.redis.config_set("maxmemory", await _used_memory(q) + 100_000)
        await wait_until(lambda: refused > 50, message="adds refused for memory")
        await asyncio.sleep(0.5)  # the worker's calls are refused too meanwhile
        stop.set()
        await asyncio.gather(*producers)
        await q.redis.config_set("maxmemory", 0)

        async def all_done() -> bool:
            async with q.redis.pipeline(transaction=False) as pipe:
                for job_id in acked:
                    pipe.hget(q.keys.job(job_id), "st")
                states = await pipe.execute()
            return all(s == b"completed" for s in states)

        await wait_until(all_done, timeout=30, message="every acknowledged job completed")
        assert await _job_ids(q) == set(acked), "a refused add left a job behind"
        assert {k: v for k, v in runs.items() if v != 1} == {}
        assert (await q.get_stats())["completed"] == len(acked)
    finally:
        stop.set()
        await q.redis.config_set("maxmemory", 0)
        await worker.close()
        await task
        await q.obliterate(force=True)
        await q.close()


async def test_tokens_never_repeat_after_redis_comes_back_from_an_older_snapshot(
        queue: Queue) -> None:
    """Found by the Redis break run: restored from an older RDB snapshot, the queue's token
    counter went back with the jobs, which were then taken again in the same order: a job's
    new run got the very token a worker of the lost time still held, and that worker's
    late result finished the new run. Tokens now never fall below the Redis clock in
    microseconds, so a counter that went back still hands out new ones."""
    from driver import complete, fetch, finish

    await queue.add("x", 0, job_id="before")
    [(_, token)] = await fetch(queue)  # the counter has started: the snapshot holds it
    await finish(queue, [complete("before", token)])
    await queue.add("x", 1, job_id="j")
    snapshot = {k: await queue.redis.dump(k) for k in await queue.redis.keys(queue.keys.base + "*")}
    [(_, lost_token)] = await fetch(queue)  # a worker of the lost time takes it...
    # ...and Redis comes back from the snapshot taken before that.
    for key in await queue.redis.keys(queue.keys.base + "*"):
        await queue.redis.delete(key)
    for key, value in snapshot.items():
        await queue.redis.restore(key, 0, value, replace=True)
    [(_, new_token)] = await fetch(queue)
    assert int(new_token) > int(lost_token), (lost_token, new_token)
    statuses, _, _ = await finish(queue, [complete("j", lost_token)])
    assert statuses == [0]  # the lost time's result is fenced out
    assert await queue.get_state("j") == "active"


@pytest.mark.skipif(not scripts._use_functions, reason="EVAL mode has no function flags")
async def test_a_lease_is_renewed_while_redis_is_out_of_memory(server: RedisServer) -> None:
    """From the Redis break run: while Redis refused writes for memory (noeviction), lease
    renewals were refused too, so with two workers a lease ran out while its job ran on,
    the other worker's stall check took it back once memory was free, and the job ran
    twice. extend.lua runs under OOM now (function flag allow-oom): it moves scores of
    members already there. Adds are still refused."""
    from driver import fetch

    q = Queue("oom-lease", url=server.url)
    try:
        await q.add("x", 1, job_id="j")
        [(job_id, token)] = await fetch(q, lease_ms=60_000)
        await q.redis.config_set("maxmemory", await _used_memory(q) - 100_000)
        with pytest.raises(OutOfMemoryError):
            await q.add("x", 2)
        lost, cancel = await scripts.run(q.redis, "extend", q.keys.vector,
                                         [q.keys.job_prefix, 60_000, job_id, token])
        assert lost == [] and cancel == []
        await q.redis.config_set("maxmemory", 0)
    finally:
        await q.close()
