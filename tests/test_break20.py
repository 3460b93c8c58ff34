"""Break round 20: attacks on "Idle takers get them" (giving way). No failure was found in
this round; these tests keep the cheap ones that add coverage: several idle takers at
once, and a global or group concurrency set while idle takers wait for held jobs."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest
from held_support import fresh_prefix, last_held, started, warm_worker
from helpers import wait_until

from minique import ManualWorker, Queue


@pytest.fixture
def redis_url(module_redis_url: str) -> str:
    """A server of this module's own (its tests leave many jobs behind)."""
    return module_redis_url


async def _busy_holder(redis_url: str, procs: list[Any], q: Queue, group: str | None = None,
                       n: int = 30) -> list[str]:
    """A worker process at concurrency 1 that measured its jobs as short (so it holds
    ahead), given a job that sleeps 30 s and ``n`` short jobs in one add (all in ``group``
    when given): it runs the long one and holds some of the others. The short jobs' ids,
    once one of them is held."""
    await warm_worker(redis_url, procs, q, q.prefix, 1)
    opts = {"group": group} if group else {}
    added = await q.add_bulk([("tick", {"sleep": 30}, opts), *[("tick", {}, opts)] * n])
    await wait_until(lambda: started(q, added[0].id), timeout=20,
                     message="the long job started")
    ids = [j.id for j in added[1:]]
    await last_held(q, ids)
    return ids


def _control_versions(monkeypatch: Any) -> dict[str, int]:
    """{job id: the control version of the reply that took it} for ManualWorkers' takes."""
    from minique import scripts
    from minique.worker import HEADER

    seen: dict[str, int] = {}
    real = scripts.run

    async def run(client: Any, name: str, keys: Any, args: Any) -> Any:
        reply = await real(client, name, keys, args)
        if name == "finish":
            n = int(args[10])  # the results' statuses come last
            body = reply[HEADER:len(reply) - n]
            if body:
                seen[body[0].decode()] = int(reply[6])
        return reply

    monkeypatch.setattr(scripts, "run", run)  # (only this process: the takers)
    return seen


def _takers(redis_url: str, q: Queue, k: int) -> list[ManualWorker]:
    return [ManualWorker("held", url=redis_url, prefix=q.prefix, stalled_interval=0)
            for _ in range(k)]


def _hold_in_give_way(takers: list[ManualWorker]) -> tuple[asyncio.Event, asyncio.Event]:
    """Each taker's give-way wait (ManualWorker._take, after a reply with status GAVE_WAY)
    sets ``entered`` and then waits for ``go`` before it goes on as it would: a taker whose
    wait runs long (a busy event loop)."""
    entered, go = asyncio.Event(), asyncio.Event()
    for m in takers:
        real = m._wait_for_work

        async def wait(wake_id: bytes, wake_only: bool, timeout: float,
                       m: ManualWorker = m, real: Any = real) -> None:
            if m._lock.locked():  # the give-way wait: the one _call makes under its lock
                entered.set()
                await go.wait()
            await real(wake_id, wake_only, timeout)

        m._wait_for_work = wait  # type: ignore[method-assign]
    return entered, go


async def test_idle_takers_at_once_get_the_first_held_jobs(
        redis_url: str, procs: list[Any]) -> None:
    """Three idle ManualWorkers take at the same moment while a busy worker holds the next
    jobs: one at a time they would get jobs #0, #1 and #2, one each."""
    q = Queue("held", url=redis_url, prefix=fresh_prefix("b20a"))
    takers = _takers(redis_url, q, 3)
    try:
        ids = await _busy_holder(redis_url, procs, q)
        jobs = await asyncio.wait_for(asyncio.gather(*(t.get_next_job() for t in takers)), 10)
        got = sorted(ids.index(j.id) for j in jobs if j is not None)
        assert got == [0, 1, 2], f"three idle takers got jobs #{got} of the held ones"
        assert len({j.id for j in jobs if j is not None}) == 3
    finally:
        for t in takers:
            await t.close()
        await q.close()


@pytest.mark.parametrize("limit", ["queue", "group", "group defaults"])
async def test_a_concurrency_set_while_idle_takers_wait_for_held_jobs_holds(
        redis_url: str, procs: list[Any], limit: str, monkeypatch: Any) -> None:
    """Three idle ManualWorkers give way to the jobs a busy worker holds; while they wait, a
    concurrency of 2 is set (the queue's global one, or the group's): the busy worker's long
    job is one of the 2, so one taker gets the first job and the others nothing. (Held: 0
failures in about 40 runs, some beside a CPU hog.)"""
    q = Queue("held", url=redis_url, prefix=fresh_prefix("b20b"))
    takers = _takers(redis_url, q, 3)
    entered, go = _hold_in_give_way(takers)
    seen = _control_versions(monkeypatch)
    try:
        ids = await _busy_holder(redis_url, procs, q, group=None if limit == "queue" else "g")
        tasks = [asyncio.create_task(t.get_next_job()) for t in takers]
        # A taker gives way, or (the holder had handed back already: a loaded machine) takes
        # a job at once; the assertions below tell the two apart by control version.
        entering = asyncio.ensure_future(entered.wait())
        done, _ = await asyncio.wait([entering, *tasks], timeout=10,
                                     return_when=asyncio.FIRST_COMPLETED)
        entering.cancel()
        assert done, "no taker gave way or took a job in 10 s"
        cv_before = int(await q.redis.hget(q.keys.meta, "cv") or 0)
        if limit == "queue":
            await q.set_global_concurrency(2)
        elif limit == "group":
            await q.set_group_options("g", concurrency=2)
        else:
            await q.set_group_defaults(concurrency=2)
        go.set()
        jobs = await asyncio.wait_for(asyncio.gather(*tasks), 10)
        taken = [j for j in jobs if j is not None]
        # A taker that did not have to give way (the holder had handed back already) may
        # have taken a job before the limit was set: those are not under it.
        # (The limit's change bumps the control version: a take whose reply carries an
        # older one ran before it, in Redis.)
        before = [j for j in taken if seen[j.id] <= cv_before]
        after = [ids.index(j.id) for j in taken if j not in before]
        assert len(after) <= max(0, 1 - len(before)), (
            f"under a concurrency of 2 (1 running, {len(before)} taken before it was set) "
            f"the takers got jobs #{after} after it was set")
        assert sorted(ids.index(j.id) for j in taken) == list(range(len(taken)))
    finally:
        go.set()
        for t in takers:
            await t.close()
        await q.close()
