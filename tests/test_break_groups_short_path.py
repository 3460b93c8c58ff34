"""Adversarial tests for the groups' short path (docs/guide/groups.md, "The short path"):
queues switched to the full path at the worst moment, kill -9, obliterate and a Redis that
lost its data while jobs run, odd and many group ids, groups emptied and refilled."""

from __future__ import annotations

import asyncio
import itertools
import random
import signal
from typing import Any

import pytest
from driver import complete, fail, fetch, finish, retry
from helpers import server_binary, wait_until
from test_group_workers import done, stamps, workers

from minique import Queue, scripts
from minique.server import RedisServer

_prefixes = itertools.count()


def back_to_wait(job_id: str, token: str) -> tuple[Any, ...]:
    return (job_id, token, "w", "worker shut down", "", 0, -1, -1)


async def gactive(q: Queue) -> dict[str, int]:
    raw = await q.redis.zrange(f"{q.keys.base}:gactive", 0, -1, withscores=True)
    return {k.decode(): int(v) for k, v in raw}


async def check_counts(q: Queue) -> None:
    """Each group's count in gactive equals its jobs in the active set, and no group is in
    the round-robin twice."""
    running: dict[str, int] = {}
    for job in await q.get_jobs("active", 0, 100_000):
        if job.group is not None:
            running[job.group] = running.get(job.group, 0) + 1
    assert await gactive(q) == running
    ready = await q.redis.lrange(f"{q.keys.base}:gready", 0, -1)
    assert len(ready) == len(set(ready)), ready


async def redis_ms(q: Queue) -> int:
    s, us = await q.redis.time()
    return int(s) * 1000 + int(us) // 1000


# ----- failures found -------------------------------------------------------------------


async def test_a_result_from_before_obliterate_does_not_finish_the_new_job_of_its_id(
        queue: Queue) -> None:
    """obliterate(force=True) while a worker runs a job, then new jobs: ids start again at
    1, and so did the fencing tokens (meta 'fence' was deleted with the queue). The old
    worker's result then matched the new job 1 that another worker was running: it was
    sent back to waiting (or completed) under that worker, its group slot given back, and a
    second job of a concurrency-1 group started beside it."""
    await queue.add("j", None, group="g")
    (old,) = await fetch(queue, 1, worker="old")
    await queue.obliterate(force=True)
    await queue.set_group_options("g", concurrency=1)
    await queue.add_bulk([("j", None, {"group": "g"}) for _ in range(2)])
    (new,) = await fetch(queue, 1, worker="new")
    assert new[0] == old[0]  # the same id again: only the token tells the two apart
    statuses, _, _ = await finish(queue, [back_to_wait(*old)], 0, worker="old")
    assert statuses == [0]
    assert await fetch(queue, 5, worker="third") == []  # g runs its one job still
    statuses, _, _ = await finish(queue, [complete(*new)], 0, worker="new")
    assert statuses == [1]
    await check_counts(queue)


async def test_a_result_from_before_redis_lost_its_data_does_not_finish_a_new_job(
        tmp_path: Any) -> None:
    """The same through a Redis restart without persistence (or a failover to a replica
    that missed the writes): the workers run on, and their results must not land on the
    jobs added to the empty Redis."""
    server = RedisServer(binary=server_binary(), directory=str(tmp_path)).start()
    q = Queue("restart", url=server.url)
    try:
        await q.add("j", None, group="g")
        (old,) = await fetch(q, 1, worker="old")
        server.stop(kill=True)
        server.start()
        await q.redis.connection_pool.disconnect()
        producer = Queue("restart", url=server.url)  # a producer started after the restart
        await producer.add_bulk([("j", None, {"group": "g"}) for _ in range(2)])
        await producer.close()
        (new,) = await fetch(q, 1, worker="new")
        assert new[0] == old[0]
        statuses, _, _ = await finish(q, [complete(*old)], 0, worker="old")
        assert statuses == [0]  # another owner's job now
        assert (await q.get_job(new[0])).state == "active"  # type: ignore[union-attr]
        await check_counts(q)
    finally:
        await q.close()
        server.close()


async def test_a_held_job_started_before_a_concurrency_is_set_counts_at_once(
        queue: Queue) -> None:
    # Docs: "a concurrency set while jobs run counts them at once". Worker A holds two jobs
    # of a group without limits (short path) and starts one; its start note goes with A's
    # next call (later, if the job blocks A's event loop, or A's call is in flight).
    await queue.add_bulk([("j", None, {"group": "g"}) for _ in range(4)])
    _, held, _ = await finish(queue, [], 0, hold=2, hold_ms=50, worker="A")
    assert len(held) == 2
    started_ms = await redis_ms(queue)  # A starts held[0] now
    await queue.set_group_options("g", concurrency=1)
    _, taken_by_b, _ = await finish(queue, [], 5, worker="B")
    await finish(queue, [(*held[0], "s", "", "", 0, -1, -1, str(started_ms))], 0, worker="A")
    assert taken_by_b == [] and (await gactive(queue))["g"] == 1


# ----- attacks that held up ---------------------------------------------------------------


@pytest.mark.parametrize("how", ["options", "defaults", "pause"])
async def test_switching_to_the_full_path_under_two_busy_workers(
        redis_url: str, procs: list[Any], how: str) -> None:
    """Two worker processes take (and hold) jobs of two plain groups; the queue switches to
    the full path with concurrency 1 (or a pause) while many of them run. From then on no
    job of a group starts beside another, no job runs twice and the counts come back to 0."""
    q = Queue("groups", url=redis_url, prefix=f"gsp{next(_prefixes)}")
    workers(redis_url, procs, q.prefix, 2, "--concurrency", "8")

    async def both_up() -> bool:
        return len(await q.get_workers()) == 2

    await wait_until(both_up, timeout=20, message="two workers up")
    n = 120
    await q.add_bulk([("work", {"g": g, "sleep": 0.02}, {"group": g})
                      for _ in range(n // 2) for g in ("g", "h")])

    async def busy() -> bool:
        return len(await stamps(q, "start")) >= 20

    await wait_until(busy, timeout=20, message="20 jobs started")
    assert await q.redis.hget(q.keys.meta, "gx") is None
    if how == "pause":
        await q.pause_group("g")
        await q.pause_group("h")
        paused_at = await redis_ms(q)
        await asyncio.sleep(0.3)
        # Starts as Redis saw them (a held job's start as its worker reported it): a
        # processor's own stamp may come a little after the start it records.
        late_starts = []
        for s in await stamps(q, "start"):
            job = await q.get_job(s.id)
            assert job is not None and job.processed_on is not None
            if round(job.processed_on * 1000) > paused_at:
                late_starts.append((s.id, round(job.processed_on * 1000) - paused_at, s.ms - paused_at))
        assert late_starts == []
        await q.set_group_options("g", concurrency=1)
        await q.set_group_options("h", concurrency=1)
        await q.resume_group("g")
        await q.resume_group("h")
    elif how == "defaults":
        await q.set_group_defaults(concurrency=1)
    else:
        await q.set_group_options("g", concurrency=1)
        await q.set_group_options("h", concurrency=1)
    switched_at = await redis_ms(q)
    await wait_until(lambda: done(q, n), timeout=60, message="all jobs done")
    starts = await stamps(q, "start")
    assert len(starts) == n and len({s.id for s in starts}) == n  # none lost, none twice
    # Each run as Redis saw it: from its start (a held job's start as its worker reported
    # it) to its result, which gives the slot back.
    runs = []
    for s in starts:
        job = await q.get_job(s.id)
        assert job is not None and job.processed_on and job.finished_on
        runs.append((s.id, s.group, round(job.processed_on * 1000),
                     round(job.finished_on * 1000)))

    def beside(run: tuple[str, str, int, int]) -> list[Any]:
        return [(o[0], o[2] - switched_at, o[3] - switched_at) for o in runs
                if o[1] == run[1] and o[0] != run[0] and o[2] <= run[2] < o[3]]

    late = [(r[0], r[1], r[2] - switched_at, beside(r)) for r in runs if r[2] > switched_at]
    assert late and not [x for x in late if x[3]], late

    async def idle() -> bool:
        infos = [await q.get_group(g) for g in ("g", "h")]
        return not await gactive(q) and all(i is None or i.active == i.waiting == 0
                                            for i in infos)

    await wait_until(idle, timeout=10, message="every slot given back")
    await q.close()


async def test_kill_9_in_the_short_path_gives_every_slot_back(redis_url: str,
                                                             procs: list[Any]) -> None:
    q = Queue("groups", url=redis_url, prefix=f"gsp{next(_prefixes)}")
    args = ("--concurrency", "6", "--lock-duration", "1", "--stalled-interval", "0.3")
    victim, _ = workers(redis_url, procs, q.prefix, 2, *args)
    n = 100
    await q.add_bulk([("work", {"g": f"g{i % 4}", "sleep": 0.05}, {"group": f"g{i % 4}"})
                      for i in range(n)])

    async def victim_busy() -> bool:
        return len([s for s in await stamps(q, "start") if s.pid == victim.pid]) >= 8

    await wait_until(victim_busy, timeout=20, message="the victim runs jobs")
    victim.send_signal(signal.SIGKILL)
    victim.wait()
    assert await q.redis.hget(q.keys.meta, "gx") is None
    # Every job ends, some twice: the victim may have ended a run it never reported, and
    # that job runs again (at least once, after a kill -9). So distinct ids are counted.
    async def all_ended() -> bool:
        return len({e.id for e in await stamps(q, "end")}) == n

    await wait_until(all_ended, timeout=30, message="every job ended")

    async def idle() -> bool:
        stats = await q.get_stats()
        return not await gactive(q) and stats["active"] == stats["waiting"] == 0

    await wait_until(idle, timeout=10, message="every slot given back")
    # The victim's held jobs were taken back: none is counted as held any more (a
    # concurrency set now settles at once: includes/groups.lua, gheldn).
    assert await q.redis.hlen(f"{q.keys.base}:gheldn") == 0
    assert await q.redis.zcard(f"{q.keys.base}:gheld") == 0
    await q.close()


@pytest.mark.parametrize("seed", range(4))
async def test_random_steps_across_the_switch_keep_counts_and_limits(
        queue: Queue, seed: int) -> None:
    """Adds, takes, every way out of active, stalls and removals, with the switch to the
    full path at a random step: after each step the counts agree, no group is listed twice,
    no take passes a concurrency, and at the end every job was taken."""
    rnd = random.Random(seed)
    groups = ["a", "b", "ü:{c}"]
    running: list[tuple[str, str]] = []
    limits: dict[str, int] = {}
    switch_at = rnd.randint(10, 80)

    async def takes_within_limits(before: dict[str, int], taken: list[tuple[str, str]]) -> None:
        per: dict[str, int] = {}
        for job_id, _ in taken:
            job = await queue.get_job(job_id)
            if job is not None and job.group is not None:
                per[job.group] = per.get(job.group, 0) + 1
        for g, k in per.items():
            assert g not in limits or before.get(g, 0) + k <= limits[g], (g, before, per)

    for step in range(120):
        if step == switch_at:
            limits = {"a": 1} if seed % 2 else {g: 2 for g in groups}
            if seed % 2:
                await queue.set_group_options("a", concurrency=1)
            else:
                await queue.set_group_defaults(concurrency=2)
        op = rnd.random()
        before = await gactive(queue)
        if op < 0.3:
            g = rnd.choice([*groups, None])
            await queue.add("j", None, **({"group": g} if g else {}))
        elif op < 0.55:
            _, taken, _ = await finish(queue, [], rnd.randint(1, 3))
            await takes_within_limits(before, taken)
            running += taken
        elif op < 0.85 and running:
            job_id, token = running.pop(rnd.randrange(len(running)))
            job = await queue.get_job(job_id)
            if job is not None and job.group is not None:
                before[job.group] -= 1
            how = rnd.choice([complete, fail, retry, complete])
            _, taken, _ = await finish(queue, [how(job_id, token)], rnd.randint(0, 2))
            await takes_within_limits(before, taken)
            running += taken
        elif op < 0.92:
            taken = await fetch(queue, 1, lease_ms=1)
            await takes_within_limits(before, taken)
            await asyncio.sleep(0.003)
            await scripts.run(queue.redis, "stalled", queue.keys.vector,
                              [queue.keys.job_prefix, 5, 100, -1, -1, "other"])
        else:
            ids = await queue.get_group_job_ids(rnd.choice(groups), 0, 100)
            if ids:
                await queue.remove_job(rnd.choice(ids))
        await check_counts(queue)
    for job in running:
        await finish(queue, [complete(*job)], 0)
    for _ in range(40):
        for job in await fetch(queue, 10):
            await finish(queue, [complete(*job)], 0)
    stats = await queue.get_stats()
    assert stats["waiting"] == stats["active"] == 0 and await gactive(queue) == {}


async def test_ten_thousand_groups_and_odd_ids_each_run_once(queue: Queue) -> None:
    odd = ["ü€😀", "a:b", "{x", "x}", "g:g", "gw:a", "%s*?[", "a" * 512, "\\", "0", "\x01"]
    names = [f"acct-{i}" for i in range(10_000)] + odd
    await queue.add_bulk([("j", None, {"group": g}) for g in names])
    await queue.add_bulk([("j", None, {"group": g}) for g in odd])
    seen: list[str] = []
    taken = await fetch(queue, 500)
    await queue.set_group_options(odd[0], concurrency=1)  # the switch, mid-way
    while taken:
        seen += [t[0] for t in taken]
        _, taken, _ = await finish(queue, [complete(*t) for t in taken], 500)
    assert len(seen) == len(set(seen)) == len(names) + len(odd)
    assert await gactive(queue) == {}
    counts = await queue.get_group_counts()
    assert counts.active == 0 and counts.ready == 0


async def test_groups_emptied_and_refilled_keep_one_turn_each(queue: Queue) -> None:
    """A group emptied by its last take, released, and refilled, many times over: it is in
    the round-robin once, so beside a group of 1,000 jobs each refill starts within a turn."""
    await queue.add_bulk([("j", None, {"group": "big"}) for _ in range(1000)])
    for _ in range(30):
        small = await queue.add_bulk([("j", None, {"group": g}) for g in ("s1", "s2")])
        taken = await fetch(queue, 3)
        assert {s.id for s in small} <= {t[0] for t in taken}, taken
        await finish(queue, [complete(*t) for t in taken], 0)
        await check_counts(queue)
    ready = await queue.redis.lrange(f"{queue.keys.base}:gready", 0, -1)
    assert ready.count(b"big") == 1 and len(ready) <= 3
