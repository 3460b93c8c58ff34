"""Adversarial tests for dedup keep_last_if_active and get_counts_per_priority (break 15b).
Each test reproduces a broken promise of docs/guide/queue.md; see its docstring."""

from __future__ import annotations

import asyncio
import contextlib
import time
from typing import Any

import pytest
from driver import complete, fetch, finish, forget_holds, hold
from helpers import wait_until

from minique import Queue

KEEP = {"id": "entity-7", "keep_last_if_active": True}


def redis_now_ms() -> int:
    return int(time.time() * 1000)


async def ids_in(q: Queue, state: str) -> list[str]:
    return await q.get_job_ids(state, 0, 99)


async def test_keep_last_add_while_a_held_job_runs_is_lost(queue: Queue) -> None:
    """Docs: a duplicate of an *active* job is kept and added when it ends; batching
    (held jobs) must be unobservable. A worker holding the job ahead starts it; Redis hears
    of the start with the worker's next call. A keep_last add made while the job runs
    (after its start, before the start note) is dropped as a duplicate of a *waiting*
    job: once the job completes, nothing runs with the newer data (fetched one at a time,
    the add would have been kept and run)."""
    first = await queue.add("index", {"v": 1}, dedup=KEEP)
    tokens = await hold(queue, 1, 30000, worker="w1")
    token = tokens[first.id]
    started = redis_now_ms()  # the worker starts the job here (its note not sent yet)
    dup = await queue.add("index", {"v": 2}, dedup=KEEP)  # the entity changed meanwhile
    assert dup.id == first.id
    await finish(queue, [(*complete(first.id, token), str(started))], worker="w1")
    assert await queue.get_job(first.id) is None or \
        await queue.get_state(first.id) == "completed"
    waiting = await ids_in(queue, "waiting")
    await forget_holds(queue)
    assert len(waiting) == 1, f"the add of v=2 was lost: waiting {waiting}"


async def test_keep_last_add_from_a_running_prefetched_job_is_lost_with_a_real_worker(
        queue: Queue, redis_url: str) -> None:
    """Docs: one job of the id runs at a time and "the last add always runs after the
    running one"; batching must be unobservable. A worker (concurrency 1) that holds short
    jobs ahead runs job X; X's processor (or anyone, while X runs) adds a keep_last
    duplicate. Fetched one at a time X is active then, and the add runs after X. Held
    ahead, X is 'held' in Redis until the start note arrives: the add is dropped and
    never runs."""
    from minique import Worker

    runs: list[Any] = []

    async def work(job: Any) -> None:
        runs.append(job.data)
        if job.data == {"v": 1}:
            await queue.add("index", {"v": 2}, dedup=KEEP)  # changed while re-indexing

    worker = Worker(queue.name, work, url=redis_url, concurrency=1)
    task = asyncio.create_task(worker.run(handle_signals=False))
    try:
        lost = 0
        for _rnd in range(10):
            runs.clear()
            await queue.add_bulk([("tick", i) for i in range(300)])
            await queue.add("index", {"v": 1}, dedup=KEEP)
            await queue.add_bulk([("tick", i) for i in range(50)])

            async def idle() -> bool:
                s = await queue.get_stats()
                return s["waiting"] + s["active"] + s["delayed"] == 0
            await wait_until(idle, timeout=20, message="queue idle")
            await asyncio.sleep(0.1)
            if {"v": 2} not in runs:
                lost += 1
    finally:
        await worker.close()
        await task
    assert lost == 0, f"the keep_last add made while the job ran never ran in {lost}/10 rounds"


async def test_removing_a_held_job_that_had_started_frees_its_dedup_id_while_it_runs(
        queue: Queue) -> None:
    """Docs: a dedup id names at most one unfinished job; keep_last: "one job of the id
    runs at a time", a duplicate of an active job waits for its end. remove_job() on a job
    a worker holds ahead waits for the holder's answer; if it had started, remove raises
    InvalidJobState and "the job runs on". Meanwhile ('removed' state) the dedup id reads
    as free: a keep_last add adds a second job at once, and both run together."""
    from driver import asking_holders

    from minique.errors import InvalidJobState

    first = await queue.add("index", {"v": 1}, dedup=KEEP)
    token = (await hold(queue, 1, 30000, worker="w1"))[first.id]
    started = redis_now_ms()  # the holder starts it; the removal has not reached it yet
    removal = await asking_holders(queue, queue.remove_job(first.id))
    second = await queue.add("index", {"v": 2}, dedup=KEEP)
    # The holder answers: it had started the job, which runs on.
    await finish(queue, [(first.id, token, "s", "", "", 0, -1, -1, str(started))], worker="w1")
    with contextlib.suppress(InvalidJobState):
        await removal
    assert await queue.get_state(first.id) == "active"
    taken = await fetch(queue, 5)
    await forget_holds(queue)
    assert second.id == first.id and taken == [], (
        f"job {second.id} of the same dedup id was added and taken ({taken}) while "
        f"{first.id} still runs")


@pytest.mark.xfail(strict=True, reason="known difference, documented in docs/guide/queue.md: "
                   "the groups' sets are read after the snapshot")
async def test_counts_per_priority_counts_a_grouped_job_handed_back_meanwhile_twice(
        queue: Queue) -> None:
    """Docs: get_counts_per_priority counts waiting jobs "as get_stats() counts waiting
    jobs: held (prefetched) and grouped jobs included"; summed it must agree with
    get_stats()["waiting"], also while workers hold jobs. It reads the held set in one
    snapshot and the groups' sets afterwards: a worker handing its held grouped jobs back
    in between (a pause, a priority add, the end of its hold: many times a second under
    load) makes each of them count twice (once as held, once in its group)."""
    await queue.add_bulk([("g", i, {"group": f"g{i}"}) for i in range(11)])
    tokens = await hold(queue, 10, 30000)
    assert len(tokens) == 10
    real_zrangebyscore = queue.redis.zrangebyscore
    handed: list[int] = []

    async def worker_hands_back_now(*args: Any, **kw: Any) -> Any:
        if not handed:  # the worker's hand-back lands between the two reads
            handed.append(len(await take_back(queue, tokens)))
        return await real_zrangebyscore(*args, **kw)
    queue.redis.zrangebyscore = worker_hands_back_now  # type: ignore[method-assign]
    try:
        counts = await queue.get_counts_per_priority([0])
    finally:
        queue.redis.zrangebyscore = real_zrangebyscore  # type: ignore[method-assign]
    waiting = (await queue.get_stats())["waiting"]
    assert handed == [10]
    assert counts[0] == waiting == 11, f"counts {counts} vs waiting {waiting}"


async def take_back(q: Queue, tokens: dict[str, str]) -> list[int]:
    from driver import hand_back
    return await hand_back(q, tokens)


async def test_a_plain_extend_duplicate_makes_the_kept_add_vanish(queue: Queue) -> None:
    """Docs: with keep_last_if_active a duplicate of an active job "is not dropped but
    kept ... and added when the active job completes"; a plain duplicate is "dropped as
    usual" (writes nothing but its event). A plain duplicate with {"ttl", "extend"} on the
    same id puts a ttl on the active job's claim (dedup.lua: PEXPIRE on a key it did not
    make with a ttl); once it expires the job's completion finds the id no longer its own
    and the kept add (v=2) is never added (its dedup-next key is left behind)."""
    first = await queue.add("index", {"v": 1}, dedup=KEEP)
    [(job_id, token)] = await fetch(queue, 1)
    assert (await queue.add("index", {"v": 2}, dedup=KEEP)).id == first.id  # kept
    plain = await queue.add("index", {"v": 3}, dedup={"id": KEEP["id"], "ttl": 0.1,
                                                       "extend": True})
    assert plain.id == first.id  # a duplicate: dropped
    await asyncio.sleep(0.3)
    await finish(queue, [complete(job_id, token)])
    waiting = await ids_in(queue, "waiting")
    assert len(waiting) == 1, (
        f"the kept add never ran: waiting {waiting}, dedup keys "
        f"{await queue.redis.keys(f'{queue.keys.base}:dedup*')}")


@pytest.mark.xfail(strict=True, reason="known difference, documented in docs/guide/queue.md: "
                   "keep_last_if_active keeps adds only for an id held without a ttl")
async def test_a_keep_last_duplicate_of_an_active_job_is_dropped_if_its_claim_has_a_ttl(
        queue: Queue) -> None:
    """Docs: "a duplicate of an *active* job is not dropped but kept", and only the kept
    add itself "takes no ttl". When the active job's claim came from an earlier add with a
    ttl (throttling the same entity), the keep_last add is silently dropped (dedup.lua
    requires PTTL == -1): the change it carries never runs, although the job that is
    running is still active and the add's own spec is valid."""
    first = await queue.add("index", {"v": 1}, dedup={"id": KEEP["id"], "ttl": 60})
    [(job_id, token)] = await fetch(queue, 1)
    assert (await queue.add("index", {"v": 2}, dedup=KEEP)).id == first.id
    await finish(queue, [complete(job_id, token)])
    waiting = await ids_in(queue, "waiting")
    assert len(waiting) == 1, f"the keep_last add of an active job was dropped: {waiting}"


async def test_obliterate_leaves_the_kept_add_of_an_expired_claim_behind(queue: Queue) -> None:
    """Docs/tests: obliterate leaves no key of the queue (test_obliterate_leaves_no_kept_add).
    A kept add whose claim got a ttl from a plain {"ttl", "extend"} duplicate outlives the
    claim: once any later dedup add trims the listing (dedup.lua ZREMRANGEBYSCORE), nothing
    lists its dedup-next key, and obliterate(force=True) leaves it in Redis for ever."""
    await queue.add("index", {"v": 1}, dedup=KEEP)
    [(job_id, token)] = await fetch(queue, 1)
    await queue.add("index", {"v": 2}, dedup=KEEP)
    await queue.add("index", {"v": 3}, dedup={"id": KEEP["id"], "ttl": 0.1, "extend": True})
    await asyncio.sleep(0.3)
    await queue.add("other", 1, dedup={"id": "another"})  # trims the listing
    await finish(queue, [complete(job_id, token)])
    await queue.obliterate(force=True)
    left = await queue.redis.keys(f"{queue.keys.base}*")
    assert left == [], f"obliterate left {left}"


async def test_the_kept_add_of_a_removed_job_runs_after_another_job(queue: Queue) -> None:
    """Docs: the kept add "goes with the job if that is removed, drained or cleaned
    unfinished". Job A (retried, waiting again) has a kept add v=2; a worker holds A ahead
    and remove_job(A) is asked; meanwhile a plain add B (v=3) takes the id ('removed'
    reads as free). A is then deleted, but its release finds the id no longer its own and
    leaves A's kept add in place: when B completes, A's stale v=2 is added and runs after
    the newer v=3."""
    from driver import asking_holders, hand_back, retry

    first = await queue.add("index", {"v": 1}, dedup=KEEP, attempts=3)
    [(job_id, token)] = await fetch(queue, 1)
    await queue.add("index", {"v": 2}, dedup=KEEP)  # kept
    await finish(queue, [retry(job_id, token)])  # A waits for its next attempt
    tokens = await hold(queue, 1, 30000)
    removal = await asking_holders(queue, queue.remove_job(first.id))
    # While the removal waits for A's holder, A still holds the id (its holder may have
    # started it): B is a duplicate of A, as an add just before the removal would be.
    other = await queue.add("index", {"v": 3}, dedup={"id": KEEP["id"]})
    assert other.id == first.id
    await hand_back(queue, tokens)  # never started: A is deleted, its kept add with it
    assert await removal is True
    waiting = [(await queue.get_job(i)).data for i in await ids_in(queue, "waiting")]
    await forget_holds(queue)
    assert waiting == [], f"the removed job's kept add was added: {waiting}"
    assert not await queue.redis.exists(f"{queue.keys.base}:dedup-next:{KEEP['id']}")


async def test_after_a_retry_the_last_add_loses_to_an_older_kept_one(queue: Queue) -> None:
    """Docs: the kept duplicate is "the last one replacing the one before (its name, data
    and options)", "at most one more waits, and the last add always runs after the
    running one". Job A (v=1) runs; v=2 is kept. A's attempt fails and it waits for a
    retry (backoff: delayed). v=3 is added with keep_last and replace (debounce of the
    delayed job): A's data becomes v=3, A runs v=3 and completes; then the older kept v=2
    is added and runs last: the entity ends up processed with stale data. (Without
    replace, v=3 is dropped outright while the older v=2 still runs.)"""
    from driver import retry

    await queue.add("index", {"v": 1}, dedup=KEEP, attempts=3)
    [(job_id, token)] = await fetch(queue, 1)
    await queue.add("index", {"v": 2}, dedup=KEEP)  # kept
    await finish(queue, [retry(job_id, token, delay_ms=50)])  # A: delayed, to retry
    await queue.add("index", {"v": 3}, dedup={**KEEP, "replace": True})
    await asyncio.sleep(0.1)
    [(job_id2, token2)] = await fetch(queue, 1)
    assert job_id2 == job_id
    # v=3 replaced the kept add (the last one wins), not the waiting job's data.
    assert (await queue.get_job(job_id)).data in ({"v": 1}, {"v": 3})
    await finish(queue, [complete(job_id, token2)])
    after = [(await queue.get_job(i)).data for i in await ids_in(queue, "waiting")]
    assert after in ([], [{"v": 3}]), f"after v=3 ran, an older add runs last: {after}"
