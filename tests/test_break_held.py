"""Adversarial tests for issue #12 (held jobs, re-sends, leases): each reproduces a broken
promise of docs/guide/workers.md or docs/design/leases.md."""

from __future__ import annotations

import asyncio
from typing import Any

from held_support import (
    completed,
    fresh_prefix,
    redis_ms,
    started,
    started_at_least,
    starts,
    warm_worker,
)
from helpers import start_worker, wait_until

from minique import Queue, Worker


async def test_two_workers_given_the_same_name_never_run_a_job_twice(
        redis_url: str) -> None:
    """A worker name is a label people reuse (one per service, or `--name` with
    `--processes N`, which gives every child the same name)."""
    prefix = fresh_prefix("brk")
    q = Queue("same-name", url=redis_url, prefix=prefix,
              default_job_options={"remove_on_complete": False})
    runs: dict[str, int] = {}

    async def work(job: Any) -> None:
        runs[job.id] = runs.get(job.id, 0) + 1
        await asyncio.sleep(0)

    jobs = await q.add_bulk([("x", i) for i in range(2000)])
    workers = [Worker("same-name", work, url=redis_url, prefix=prefix,
                      concurrency=5, name="emailer") for _ in range(2)]
    tasks = [asyncio.create_task(w.run(handle_signals=False)) for w in workers]
    try:
        await wait_until(lambda: completed(q, 2000), timeout=30, message="2000 completed")
    finally:
        for w in workers:
            await w.close(timeout=2)
        crashed = await asyncio.gather(*tasks, return_exceptions=True)
    assert not [e for e in crashed if e is not None], crashed
    assert {j.id for j in jobs} == set(runs)
    twice = {k: v for k, v in runs.items() if v > 1}
    assert not twice, f"{len(twice)} jobs ran more than once"
    await q.obliterate(force=True)
    await q.close()








async def test_after_drain_returns_no_job_held_by_a_frozen_worker_counts_as_waiting(
        redis_url: str, procs: list[Any]) -> None:
    """drain() removes every waiting job; a held job is a waiting job, so once drain()
    returns none may still be listed or counted as waiting, whatever its worker does."""
    import os
    import signal

    prefix = fresh_prefix("brk")
    q = Queue("held", url=redis_url, prefix=prefix)
    frozen = await warm_worker(redis_url, procs, q, prefix, 1)
    await q.add_bulk([("tick", {"sleep": 0.001}) for _ in range(3000)])
    await wait_until(lambda: started_at_least(q, 20), timeout=20, message="jobs running")
    os.kill(frozen.pid, signal.SIGSTOP)  # a GC pause, a slow host: it answers nothing
    try:
        held = await q.redis.zrange(f"{q.keys.base}:held", 0, -1)
        assert held, "the worker held nothing; the test proves nothing"
        await q.drain()
        stats = await q.get_stats()
        waiting = await q.get_job_ids("waiting", 0, 99)
        states = {i.decode(): await q.get_state(i.decode()) for i in held}
    finally:
        os.kill(frozen.pid, signal.SIGCONT)
    assert stats["waiting"] == 0 and not waiting, (stats, waiting, states)
    await q.obliterate(force=True)
    await q.close()




async def test_a_held_job_removed_never_runs(redis_url: str, procs: list[Any]) -> None:
    """remove_job() of a waiting job means it never runs; held jobs are waiting jobs."""
    prefix = fresh_prefix("brk")
    q = Queue("held", url=redis_url, prefix=prefix)
    await warm_worker(redis_url, procs, q, prefix, 1)
    removed: dict[str, int] = {}  # job id -> Redis ms when remove_job() was called
    refused = 0
    for _ in range(20):
        await q.add_bulk([("tick", {}) for _ in range(500)])
        await wait_until(lambda: started_at_least(q, 5), timeout=20, message="jobs running")
        for raw in await q.redis.zrange(f"{q.keys.base}:held", 0, -1):
            job_id = raw.decode()
            called = await redis_ms(q)
            try:
                if await q.remove_job(job_id):
                    removed[job_id] = called
            except Exception:
                refused += 1  # it started meanwhile: an active job cannot be removed
        await wait_until(lambda: _drained(q), timeout=20, message="the rest ran")
    ran = {s[0]: s[1] for s in await starts(q)}
    assert removed, "nothing held was removed; the test proves nothing"
    # A job that ran to its end before remove_job() was called is a finished job, and
    # removing it is fine. One that started once the call was made must not say True.
    back = [j for j in removed if j in ran and ran[j] >= removed[j]]
    # Like pause(): at most `concurrency` (1) job per round may have been past the point
    # of no return. Before: 145 of 190 removed jobs had run.
    assert len(back) <= 20, (f"{len(back)} of {len(removed)} removed jobs ran after the "
                             f"call ({refused} refused)")
    await q.obliterate(force=True)
    await q.close()




async def _drained(q: Queue) -> bool:
    stats = await q.get_stats()
    return stats["waiting"] == 0 and stats["active"] == 0


def _add_in_child(q: Queue, n: int) -> None:
    async def main() -> None:
        for i in range(n):
            await q.add("x", i)
        await q.close()

    asyncio.run(main())


async def test_producers_forked_from_one_queue_object_lose_no_job(redis_url: str) -> None:
    """A module-level Queue in an app whose server forks its workers (gunicorn --preload,
    multiprocessing): every child's adds must land."""
    import multiprocessing

    prefix = fresh_prefix("brk")
    q = Queue("forked", url=redis_url, prefix=prefix)
    ctx = multiprocessing.get_context("fork")
    children = [ctx.Process(target=_add_in_child, args=(q, 20)) for _ in range(2)]
    for child in children:
        child.start()
    for child in children:
        await asyncio.to_thread(child.join, 30)
        assert child.exitcode == 0
    stats = await q.get_stats()
    assert stats["waiting"] == 40, f"2 children added 20 each; {stats['waiting']} waiting"
    await q.obliterate(force=True)
    await q.close()


async def test_a_job_id_ending_in_logs_is_its_own_job(redis_url: str) -> None:
    """Issue #12 section 4, still open: `<id>:logs` is another job's log list."""
    q = Queue("ids", url=redis_url, prefix=fresh_prefix("brk"))
    await q.add("x", 1, job_id="acct:logs")
    await q.add("x", 2, job_id="acct")
    assert await q.remove_job("acct")
    assert await q.get_job("acct:logs") is not None, "removing acct deleted job acct:logs"
    await q.add("x", 3, job_id="rep")
    await q.add_log("rep", "line")
    await q.add("x", 4, job_id="rep:logs")  # before: a raw WRONGTYPE error
    await q.obliterate(force=True)
    await q.close()


async def test_a_worker_restarted_under_the_same_name_takes_back_its_predecessors_jobs(
        redis_url: str, procs: list[Any]) -> None:
    """A stable `--name` (a pod or systemd unit name) outlives the process: after kill -9
    and a restart, the dead process's job must run again once its lease expires."""
    prefix = fresh_prefix("brk")
    q = Queue("held", url=redis_url, prefix=prefix)
    args = ("--prefix", prefix, "--lock-duration", "1", "--stalled-interval", "0.5",
            "--name", "sync-worker-0")
    first = start_worker(redis_url, "held", *args, target="tests.held_procs:registry")
    procs.append(first)
    job = await q.add("tick", {"sleep": 60})
    await wait_until(lambda: started(q, job.id), timeout=20, message="the job started")
    first.kill()
    first.wait(5)
    procs.append(start_worker(redis_url, "held", *args, target="tests.held_procs:registry"))
    # Lease 1 s, sweeps every 0.5 s: the job runs again within a few seconds.
    await wait_until(lambda: _started_twice(q, job.id), timeout=15,
                     message="the dead worker's job taken back and run again")
    await q.obliterate(force=True)
    await q.close()


async def _started_twice(q: Queue, job_id: str) -> bool:
    return sum(s[0] == job_id for s in await starts(q)) >= 2
