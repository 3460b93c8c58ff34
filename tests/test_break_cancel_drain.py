"""Break round: cancel() and drain() of jobs a worker holds ahead (prefetch), and the
in-process notifications of minique/local_controls.py."""

from __future__ import annotations

import asyncio
import os
import signal
import threading
from typing import Any

from held_support import fresh_prefix, warm_worker
from helpers import wait_until

from minique import Queue, Worker, local_controls

gate: dict[str, asyncio.Event] = {}
runs: list[Any] = []

async def registry(job: Any) -> None:
    """One processor for every job: data {} runs at once, a str waits for gate[data]."""
    runs.append(job.id)
    if isinstance(job.data, str):
        await gate[job.data].wait()


async def warm(q: Queue, w: Worker) -> asyncio.Task[None]:
    task = asyncio.create_task(w.run(handle_signals=False))
    await q.add_bulk([("t", {}) for _ in range(60)])
    await wait_until(lambda: _completed(q, 60), timeout=20, message="warm-up jobs done")
    runs.clear()
    return task


async def _completed(q: Queue, n: int) -> bool:
    return (await q.get_stats())["completed"] >= n


async def _st(q: Queue, job_id: str) -> bytes | None:
    return await q.redis.hget(q.keys.job(job_id), "st")  # type: ignore[no-any-return]


async def held_setup(q: Queue, w: Worker, key: str) -> tuple[asyncio.Task[None], str, list[str]]:
    """A warm worker (concurrency 1) running a blocking job with jobs held behind it."""
    gate[key] = asyncio.Event()
    task = await warm(q, w)
    jobs = await q.add_bulk([("b", key)] + [("t", {}) for _ in range(5)])
    a, ids = jobs[0], [j.id for j in jobs[1:]]
    await wait_until(lambda: _is(q, a.id, b"active"), timeout=10, message="blocking job running")
    await wait_until(lambda: _is(q, ids[0], b"held"), timeout=10, message="first job held")
    return task, a.id, ids


async def _is(q: Queue, job_id: str, st: bytes) -> bool:
    return await _st(q, job_id) == st


async def test_concurrent_cancels_of_a_held_job_agree_and_it_runs_once(
        redis_url: str, qname: str) -> None:
    q = Queue(qname, url=redis_url)
    w = Worker(qname, registry, url=redis_url, concurrency=1)
    task, _a, ids = await held_setup(q, w, "c1")
    try:
        res = await asyncio.wait_for(asyncio.gather(*(q.cancel(ids[0]) for _ in range(5))), 10)
        assert res == [False] * 5, res
        gate["c1"].set()
        await wait_until(lambda: _completed(q, 60 + 6), timeout=10, message="all done")
        assert runs.count(ids[0]) == 1
        stats = await q.get_stats()
        assert stats["waiting"] == 0 and stats["active"] == 0 and stats["failed"] == 0, stats
    finally:
        gate["c1"].set()
        await _stop(q, w, task)


async def test_a_held_job_a_cancel_misses_keeps_its_place(redis_url: str, qname: str) -> None:
    """cancel() of a held job that has not started returns False and the job 'goes back to
    its place and runs in its turn'. With prefetch=False the job is simply waiting and runs
    right after the blocking job; with prefetch it ran after every job added after it."""
    q = Queue(qname, url=redis_url)
    w = Worker(qname, registry, url=redis_url, concurrency=1)
    task, a, ids = await held_setup(q, w, "c2")
    try:
        assert await asyncio.wait_for(q.cancel(ids[0]), 10) is False
        gate["c2"].set()
        await wait_until(lambda: _completed(q, 60 + 6), timeout=10, message="all done")
        assert runs == [a, *ids], runs
    finally:
        gate["c2"].set()
        await _stop(q, w, task)


async def test_no_listener_left_after_workers_return(redis_url: str, qname: str) -> None:
    """Workers register with local_controls while they run; none is left once run()
    returns, whether closed while idle or while a job still ran."""
    q = Queue(qname, url=redis_url)
    gate["c3"] = asyncio.Event()
    workers = [Worker(qname, registry, url=redis_url, concurrency=1) for _ in range(3)]
    tasks = [asyncio.create_task(w.run(handle_signals=False)) for w in workers]
    try:
        await q.add("b", "c3")
        await wait_until(lambda: bool(runs), timeout=10, message="blocking job started")
        await q.add("t", {}, priority=5)  # notifies the workers of this process
    finally:
        for w in workers:
            await asyncio.wait_for(w.close(timeout=0.5), 10)
        for t in tasks:
            await asyncio.wait_for(t, 10)
        gate["c3"].set()
        runs.clear()
    assert q.keys.base not in local_controls._listeners
    await q.obliterate(force=True)
    await q.close()


async def test_a_held_job_of_a_sync_processor_a_cancel_misses_keeps_its_place(
        redis_url: str, qname: str) -> None:
    """The same with a plain function (it runs in a thread): cancel() answers False at
    once, and the held job still runs right after the blocking one."""
    release = threading.Event()
    done: list[str] = []

    def proc(job: Any) -> None:
        done.append(job.id)
        if job.data == "b":
            release.wait(20)

    q = Queue(qname, url=redis_url)
    w = Worker(qname, proc, url=redis_url, concurrency=1)
    task = asyncio.create_task(w.run(handle_signals=False))
    try:
        await q.add_bulk([("t", {}) for _ in range(60)])
        await wait_until(lambda: _completed(q, 60), timeout=20, message="warm-up jobs done")
        done.clear()
        jobs = await q.add_bulk([("b", "b")] + [("t", {}) for _ in range(5)])
        ids = [j.id for j in jobs]
        await wait_until(lambda: _is(q, ids[1], b"held"), timeout=10, message="job held")
        assert await asyncio.wait_for(q.cancel(ids[1]), 10) is False
        release.set()
        await wait_until(lambda: _completed(q, 66), timeout=10, message="all done")
        assert done == ids, done
        stats = await q.get_stats()
        assert stats["waiting"] == 0 and stats["failed"] == 0, stats
    finally:
        release.set()
        await _stop(q, w, task)


async def test_drain_racing_two_workers_counts_exactly_what_did_not_run(
        redis_url: str, qname: str) -> None:
    """Two prefetching workers of this process run short jobs (grouped and not, some
    delayed) while drain(delayed=True) runs: every job either ran once or was counted."""
    q = Queue(qname, url=redis_url)
    ws = [Worker(qname, registry, url=redis_url, concurrency=2) for _ in range(2)]
    tasks = [asyncio.create_task(w.run(handle_signals=False)) for w in ws]
    try:
        await q.add_bulk([("t", {}) for _ in range(100)])
        await wait_until(lambda: _completed(q, 100), timeout=20, message="warm-up jobs done")
        for grouped in (False, True):
            runs.clear()
            items: list[Any] = [("t", {}, {"group": f"g{i % 3}"}) if grouped else ("t", {})
                                for i in range(1500)]
            items += [("t", {}, {"delay": 30})] * 20
            await q.add_bulk(items)
            await wait_until(lambda: len(runs) >= 200, timeout=20, message="200 ran")
            n = await q.drain(delayed=True)
            await wait_until(lambda: _settled(q), timeout=10, message="nothing left")
            assert len(set(runs)) == len(runs)
            assert n + len(runs) == len(items), (n, len(runs))
    finally:
        for w in ws:
            await asyncio.wait_for(w.close(timeout=2), 10)
        await asyncio.wait_for(asyncio.gather(*tasks), 10)
        await q.obliterate(force=True)
        await q.close()


async def _settled(q: Queue) -> bool:
    stats = await q.get_stats()
    return stats["waiting"] == 0 and stats["active"] == 0 and stats["delayed"] == 0


async def test_cancel_true_for_a_frozen_holder_means_the_job_does_not_complete(
        redis_url: str, procs: list[Any]) -> None:
    """Queue.cancel: 'A holder that does not answer within its hold and HELD_REMOVE_WAIT
    (frozen or gone) may have started it: True, and the job fails as cancelled'. A holder
    SIGSTOPped, then SIGCONTed after cancel() answered True: the job completed."""
    prefix = fresh_prefix("brkcx")
    q = Queue("held", url=redis_url, prefix=prefix)
    wp = await warm_worker(redis_url, procs, q, prefix, 1)
    try:
        jobs = await q.add_bulk([("tick", {"sleep": 1.0})] + [("tick", {}) for _ in range(5)])
        ids = [j.id for j in jobs]
        await wait_until(lambda: _is(q, ids[1], b"held"), timeout=10, message="job held")
        os.kill(wp.pid, signal.SIGSTOP)
        try:
            answer = await asyncio.wait_for(q.cancel(ids[1]), 10)
        finally:
            os.kill(wp.pid, signal.SIGCONT)
        assert answer is True  # the holder did not answer
        await wait_until(lambda: _settled(q), timeout=20, message="all settled")
        job = await q.get_job(ids[1])
        assert job is not None
        assert (job.state, job.failed_reason) == ("failed", "cancelled"), job.state
    finally:
        await q.obliterate(force=True)
        await q.close()


async def test_drain_from_inside_a_job_with_two_workers_counts_what_did_not_run(
        redis_url: str, qname: str) -> None:
    """A job drains its own queue while two prefetching workers run the jobs around it:
    drain()'s count plus the jobs that ran is every job, each ran at most once."""
    answers: list[int] = []
    ran: list[str] = []

    async def proc(job: Any) -> None:
        ran.append(job.id)
        if job.data == "drain":
            answers.append(await job.queue.drain())
        else:
            await asyncio.sleep(0.003)

    q = Queue(qname, url=redis_url)
    ws = [Worker(qname, proc, url=redis_url, concurrency=2) for _ in range(2)]
    tasks = [asyncio.create_task(w.run(handle_signals=False)) for w in ws]
    try:
        await q.add_bulk([("t", {}) for _ in range(100)])
        await wait_until(lambda: len(ran) >= 100, timeout=20, message="warm-up jobs done")
        for _ in range(5):
            ran.clear()
            answers.clear()
            items: list[Any] = [("t", {})] * 30 + [("t", "drain")] + [("t", {})] * 30
            await q.add_bulk(items)
            await wait_until(lambda: bool(answers), timeout=10, message="drain returned")
            await wait_until(lambda: _settled(q), timeout=10, message="nothing left")
            assert len(set(ran)) == len(ran)
            assert answers[0] + len(ran) == len(items), (answers, len(ran))
    finally:
        for w in ws:
            await asyncio.wait_for(w.close(timeout=2), 10)
        await asyncio.wait_for(asyncio.gather(*tasks), 10)
        await q.obliterate(force=True)
        await q.close()


async def _stop(q: Queue, w: Worker, task: asyncio.Task[None]) -> None:
    await asyncio.wait_for(w.close(timeout=2), 10)
    await asyncio.wait_for(task, 10)
    await q.obliterate(force=True)
    await q.close()
