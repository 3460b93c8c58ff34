"""Adversarial tests for held (prefetched) jobs under a concurrency set while they are held
(docs/guide/groups.md, "A concurrency set while grouped jobs are held"; docs/guide/workers.md,
"Prefetch (held jobs)"): frozen holders that come back, obliterate under a holder, a busy
holder of other groups, and real worker processes (three under a global concurrency, one
SIGSTOPped while it holds grouped jobs). Runs are checked as Redis recorded them
(processed_on / finished_on), not by the processors' own stamps."""

from __future__ import annotations

import asyncio
import itertools
import signal
from typing import Any

from driver import complete, fetch, finish
from helpers import start_worker, wait_until
from test_group_workers import done, stamps, workers

from minique import Queue, scripts
from minique.worker import HOLD_TIME

HOLD_MS = int(HOLD_TIME * 1000)
_prefixes = itertools.count()


def handed_back(job_id: str, token: str) -> tuple[Any, ...]:
    return (job_id, token, "h", "", "", 0, -1, -1, "")


def started_note(job_id: str, token: str, ms: int) -> tuple[Any, ...]:
    return (job_id, token, "s", "", "", 0, -1, -1, str(ms))


async def redis_ms(q: Queue) -> int:
    s, us = await q.redis.time()
    return int(s) * 1000 + int(us) // 1000


async def gheld(q: Queue) -> dict[str, int]:
    raw = await q.redis.hgetall(f"{q.keys.base}:gheldn")
    return {k.decode(): int(v) for k, v in raw.items()}


async def sweep(q: Queue) -> Any:
    return await scripts.run(q.redis, "stalled", q.keys.vector,
                             [q.keys.job_prefix, 5, 100, -1, -1, "sweeper"])


async def hold(q: Queue, n: int, worker: str = "A", lease_ms: int = 30000) -> list[tuple[str, str]]:
    _, held, _ = await finish(q, [], 0, hold=n, hold_ms=HOLD_MS, worker=worker, lease_ms=lease_ms)
    assert len(held) == n, held
    return held


async def group_starts(q: Queue, worker: str = "B", tries: int = 20) -> list[tuple[str, str]]:
    """Fetches until a job is taken (a settling group sleeps 20 ms at a time)."""
    for _ in range(tries):
        taken = await fetch(q, 5, worker=worker)
        if taken:
            return taken
        await asyncio.sleep(0.03)
    return []


# ----- failures found -------------------------------------------------------------------


async def test_a_group_with_nothing_held_does_not_wait_for_a_frozen_holder_of_others(
        queue: Queue) -> None:
    """A frozen worker holds jobs of h (its lease has 30 s to run). A new account g gets
    concurrency 1: none of g's jobs is held anywhere, and a worker fetching one job at a
    time would have left g free to start. g must start now, not a lease later."""
    await queue.add_bulk([("j", None, {"group": "h"}) for _ in range(3)])
    await hold(queue, 2, worker="frozen")
    await queue.set_group_options("g", concurrency=1)
    await queue.add("j", None, group="g")
    taken = await group_starts(queue, tries=10)
    assert [str((await queue.get_job(t[0])).group) for t in taken].count("g") == 1  # type: ignore[union-attr]


# ----- attacks that held up ---------------------------------------------------------------


async def test_a_frozen_holder_that_comes_back_does_not_count_its_jobs_twice(
        queue: Queue) -> None:
    """A is frozen past its lease; the sweep takes its held jobs back (their counts go);
    A wakes and hands them back with its old tokens, or notes them started. Neither may
    take a second count off: a count below zero would let a later held job look like none."""
    await queue.add_bulk([("j", None, {"group": "g"}) for _ in range(2)]
                         + [("j", None, {"group": "h"}) for _ in range(4)])
    a_held = await hold(queue, 2, lease_ms=20)
    await asyncio.sleep(0.05)
    await sweep(queue)
    assert await gheld(queue) == {}
    statuses, _, _ = await finish(queue, [handed_back(*a_held[0]),
                                          started_note(*a_held[1], await redis_ms(queue))],
                                  0, worker="A")
    assert statuses == [0, 0]
    counts = await gheld(queue)
    assert all(v > 0 for v in counts.values()), counts
    # B holds jobs now, one of them started (its note on the way): g's concurrency must
    # count it.
    b_held = await hold(queue, 4, worker="B")
    await queue.set_group_options("g", concurrency=1)
    started = [t for t in b_held if (await queue.get_job(t[0])).group == "g"]  # type: ignore[union-attr]
    assert started
    taken = await fetch(queue, 5, worker="C")
    assert [t for t in taken if (await queue.get_job(t[0])).group == "g"] == []  # type: ignore[union-attr]


async def test_obliterate_while_held_then_the_old_holder_reports(queue: Queue) -> None:
    await queue.add_bulk([("j", None, {"group": "g"}) for _ in range(3)])
    old = await hold(queue, 2, worker="old")
    await queue.obliterate(force=True)
    await queue.add_bulk([("j", None, {"group": "g"}) for _ in range(3)])
    new = await hold(queue, 2, worker="new")
    assert {t[0] for t in new} == {t[0] for t in old}  # the same ids, other tokens
    statuses, _, _ = await finish(queue, [handed_back(*old[0]),
                                          started_note(*old[1], await redis_ms(queue))],
                                  0, worker="old")
    assert statuses == [0, 0]
    assert sum((await gheld(queue)).values()) == 2
    # "new" started one of its held jobs; a concurrency set now must count it.
    await queue.set_group_options("g", concurrency=1)
    assert await fetch(queue, 5, worker="other") == []
    await finish(queue, [started_note(*new[0], await redis_ms(queue)), handed_back(*new[1])],
                 0, worker="new")
    assert await fetch(queue, 5, worker="other") == []  # g runs its one job
    await finish(queue, [complete(*new[0])], 0, worker="new")
    assert len(await group_starts(queue, worker="other")) == 1


async def test_a_settling_group_starts_while_a_busy_worker_keeps_holding_other_groups(
        queue: Queue) -> None:
    """B goes through short jobs of h, holding 10 at a time, each call reporting the last
    ones done. g got a concurrency while B held jobs: it must start within a few calls,
    not wait while B holds (new) jobs in the same bucket of tokens forever."""
    await queue.add_bulk([("j", None, {"group": "h"}) for _ in range(600)])
    await queue.add_bulk([("j", None, {"group": "g"}) for _ in range(3)])
    b_held = await hold(queue, 10, worker="B")
    await queue.set_group_options("g", concurrency=1)
    g_started_at = None
    for i in range(50):
        now = await redis_ms(queue)
        results = [(*t[:2], "c", b"\xc0", "", 0, -1, -1, str(now)) for t in b_held]
        _, b_held, _ = await finish(queue, results, 0, hold=10, hold_ms=HOLD_MS, worker="B")
        assert b_held, "h stalled"
        taken = await fetch(queue, 1, worker="C")
        if taken:
            g_started_at = i
            break
        await asyncio.sleep(0.005)
    assert g_started_at is not None and g_started_at < 20, g_started_at


async def _runs(q: Queue, ids: list[str]) -> list[tuple[str, str | None, float, float]]:
    """(id, group, start, end) of each run as Redis recorded it."""
    out = []
    for job_id in ids:
        job = await q.get_job(job_id)
        assert job is not None and job.processed_on and job.finished_on, job_id
        out.append((job_id, job.group, job.processed_on * 1000, job.finished_on * 1000))
    return out


async def live_workers(q: Queue, n: int) -> bool:
    return len(await q.get_workers()) == n


async def test_global_concurrency_set_under_three_busy_holding_workers(
        redis_url: str, procs: list[Any]) -> None:
    q = Queue("groups", url=redis_url, prefix=f"hbl{next(_prefixes)}")
    workers(redis_url, procs, q.prefix, 3, "--concurrency", "6")
    await wait_until(lambda: live_workers(q, 3), timeout=20, message="three workers up")
    n = 150
    jobs = await q.add_bulk([("work", {"g": f"g{i % 3}", "sleep": 0.01}, {"group": f"g{i % 3}"})
                             for i in range(n // 2)] + [("work", {"sleep": 0.01}) for _ in range(n // 2)])

    async def busy() -> bool:
        return len(await stamps(q, "start")) >= 30

    await wait_until(busy, timeout=20, message="30 started")
    await q.set_global_concurrency(2)
    switched_at = await redis_ms(q)
    await wait_until(lambda: done(q, n), timeout=30, message="all done")
    runs = await _runs(q, [j.id for j in jobs])
    assert peak([r for r in runs if r[2] > switched_at]) <= 2
    await q.close()


def peak(runs: list[tuple[str, str | None, float, float]]) -> int:
    """The most runs at once, as Redis recorded them (ms): a run ending in the same ms as
    another starts is taken to end first."""
    assert runs
    events = sorted([(r[2], 1) for r in runs] + [(r[3], -1) for r in runs])
    running = most = 0
    for _, d in events:
        running += d
        most = max(most, running)
    return most


async def test_a_sigstopped_holder_of_grouped_jobs_does_not_stall_a_group_set_meanwhile(
        redis_url: str, procs: list[Any]) -> None:
    """A worker frozen (SIGSTOP) while it holds grouped jobs; g gets concurrency 1. The
    other worker takes g on once the frozen one's lease runs out, never two of g at once
    (as Redis recorded the runs), and when the frozen worker wakes its stale hand-backs
    leave the held counts empty."""
    q = Queue("held", url=redis_url, prefix=f"hbl{next(_prefixes)}")
    args = ("--prefix", q.prefix, "--concurrency", "4", "--lock-duration", "1",
            "--stalled-interval", "0.3")
    frozen, other = (start_worker(redis_url, "held", *args, target="tests.held_procs:registry")
                     for _ in range(2))
    procs.extend([frozen, other])
    n = 3000
    jobs = await q.add_bulk([("tick", {}, {"group": "g"}) for _ in range(n)])
    try:
        held_now: dict[str, int] = {}
        for _ in range(20000):
            held_now = await gheld(q)
            if held_now and await q.redis.llen(f"{q.keys.base}:starts") > 200:
                frozen.send_signal(signal.SIGSTOP)
                break
        assert held_now, "no grouped job seen held"
        await q.set_group_options("g", concurrency=1)
        set_at = await redis_ms(q)

        async def starts_at_least(k: int) -> bool:
            return int(await q.redis.llen(f"{q.keys.base}:starts")) >= k

        async def all_done() -> bool:
            stats = await q.get_stats()
            return stats["waiting"] == stats["active"] == 0

        await asyncio.sleep(1.5)  # the frozen worker's lease runs out; the other goes on
        before = int(await q.redis.llen(f"{q.keys.base}:starts"))
        # (All n may have started by now: the other worker went on at once, and a fast
        # run finishes the queue within the lease's 1.5 s.)
        await wait_until(lambda: starts_at_least(min(before + 20, n)), timeout=5,
                         message="g goes on")
        frozen.send_signal(signal.SIGCONT)
        await wait_until(all_done, timeout=30, message="all done")

        async def settled() -> bool:
            return await gheld(q) == {} and not await q.redis.exists(f"{q.keys.base}:gheld")

        await wait_until(settled, timeout=10, message="no held job counted")
        recent = [j.id for j in jobs[-800:]]
        runs = [r for r in await _runs(q, recent) if r[2] > set_at]
        assert runs
        assert peak(runs) == 1
    finally:
        if frozen.poll() is None:
            frozen.send_signal(signal.SIGCONT)
    await q.close()
