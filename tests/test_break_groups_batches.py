"""Hostile tests of groups and batches (issue 13): each test is a failure found by attacking
the features the way users report bugs against BullMQ Pro, Celery and arq."""

from __future__ import annotations

import asyncio
import itertools
import math
import signal
from typing import Any

import pytest
from helpers import start_worker, wait_until
from test_group_workers import stamps, workers

from minique import Batch, Delayed, GroupRateLimited, Job, Queue, RateLimited, Registry, Worker
from minique.options import StoredOptions

_prefixes = itertools.count()


@pytest.mark.parametrize("delay", [math.inf, 1e300, 10 * 365 * 86400.0 + 1])
@pytest.mark.parametrize("make", [GroupRateLimited, RateLimited, Delayed,
                                  lambda d: RateLimited(d, group=True)])
def test_a_delay_beyond_ten_years_is_refused_where_it_is_raised(make: object,
                                                                delay: float) -> None:
    # Found: GroupRateLimited(inf) was accepted, then killed the worker's runner task with
    # OverflowError (the job stayed active for good, the worker lost a slot); 1e300 wrapped
    # in Lua and the throttle was silently ignored (the job ran again at once).
    with pytest.raises(ValueError, match="delay"):
        make(delay)  # type: ignore[operator]


@pytest.mark.parametrize("delay", ["1", None, True])
def test_a_delay_that_is_not_a_number_is_a_type_error(delay: object) -> None:
    with pytest.raises(TypeError, match="delay"):
        GroupRateLimited(delay)  # type: ignore[arg-type]
    with pytest.raises(TypeError, match="delay"):
        Delayed(delay)  # type: ignore[arg-type]


async def test_a_group_whose_settings_are_cleared_or_that_is_resumed_is_forgotten(
        queue: Queue) -> None:
    # Found: setting then clearing a group's options, or pausing then resuming a group with
    # no jobs (the dashboard's buttons), left the group in the index for good:
    # get_group_counts() said groups=3 while get_groups() listed none.
    await queue.set_group_options("x", concurrency=1)
    await queue.set_group_options("x")
    await queue.pause_group("y")
    await queue.resume_group("y")
    await queue.set_group_options("z", limiter={"max": 1, "duration": 1.0})
    await queue.set_group_options("z", concurrency=None, limiter=None)
    assert await queue.get_groups() == []
    assert (await queue.get_group_counts()).groups == 0
    # A group that still has a reason to be known stays.
    await queue.add("n", 1, group="w")
    await queue.set_group_options("w", concurrency=2)
    await queue.set_group_options("w")
    await queue.pause_group("p")
    assert [g.id for g in await queue.get_groups()] == ["w", "p"]
    assert (await queue.get_group_counts()).groups == 2


async def test_a_group_id_that_is_not_utf8_text_is_a_clear_error(queue: Queue) -> None:
    # Found: a lone surrogate reached the Redis client and came back as a bare
    # UnicodeEncodeError that did not say which argument was wrong.
    for call in (lambda: queue.add("n", 1, group="\ud800"),
                 lambda: queue.add_bulk([("n", 1, {"group": "ok"}), ("n", 1, {"group": "\udfff"})]),
                 lambda: queue.set_group_options("\ud800", concurrency=1),
                 lambda: queue.pause_group("\ud800")):
        with pytest.raises(ValueError, match="group must be text that encodes as UTF-8"):
            await call()
    assert (await queue.get_stats())["waiting"] == 0


async def _run(redis_url: str, q: Queue, registry: Registry, **kw: Any) -> tuple[Worker, Any]:
    worker = Worker(q.name, registry, url=redis_url, shutdown_timeout=1.0, **kw)
    return worker, asyncio.create_task(worker.run())


async def _finished(q: Queue, job_id: str) -> bool:
    return await q.get_state(job_id) in ("completed", "failed")


async def test_a_job_timeout_holds_inside_a_batch(redis_url: str, queue: Queue) -> None:
    # Found: add(..., timeout=0.2) was ignored when the job ran in a batch: a call of 1 s
    # completed it, where alone it fails as timed out ("each job keeps its own life").
    registry = Registry()
    release = asyncio.Event()

    @registry.processor(queue.name, batch={"size": 2, "timeout": 5.0})
    async def handle(batch: Batch) -> None:
        await release.wait()

    short = await queue.add("j", 1, timeout=0.2)
    free = await queue.add("j", 2)
    worker, task = await _run(redis_url, queue, registry)
    await wait_until(lambda: _active(queue, 2), timeout=10, message="batch running")
    await asyncio.sleep(0.4)  # past the short job's timeout (what is tested: its outcome)
    release.set()
    for job in (short, free):
        await wait_until(lambda j=job: _finished(queue, j.id), timeout=10, message="finished")
    got = await queue.get_job(short.id)
    assert got is not None and got.state == "failed"
    assert "timed out after 0.2s" in (got.failed_reason or "")
    assert await queue.get_state(free.id) == "completed"  # the call was not cut for it
    await worker.close()
    await task


async def test_a_hung_batch_call_is_cut_once_every_job_timed_out(redis_url: str,
                                                                  queue: Queue) -> None:
    registry = Registry()

    @registry.processor(queue.name, batch={"size": 2, "timeout": 5.0})
    async def handle(batch: Batch) -> None:
        await asyncio.Event().wait()  # hangs for good

    jobs = [await queue.add("j", 1, timeout=0.2, attempts=2,
                            backoff={"type": "fixed", "delay": 60.0}),
            await queue.add("j", 2, timeout=0.3)]
    worker, task = await _run(redis_url, queue, registry)
    await wait_until(lambda: _finished(queue, jobs[1].id), timeout=10, message="cut")
    retried = await queue.get_job(jobs[0].id)
    assert retried is not None and retried.state == "delayed"  # its own attempts, backoff
    failed = await queue.get_job(jobs[1].id)
    assert failed is not None and "timed out after 0.3s" in (failed.failed_reason or "")
    await worker.close()
    await task


async def _active(q: Queue, n: int) -> bool:
    return (await q.get_stats())["active"] == n


@pytest.mark.parametrize("how", ["drain", "clean", "remove", "pause"])
async def test_a_new_group_is_not_stuck_behind_groups_emptied_or_paused(
        redis_url: str, queue: Queue, how: str) -> None:
    # Found: after drain(), clean(0, "waiting"), removing jobs, or pausing many groups, the
    # round-robin still named those groups. A fetch drops at most 2n + 16 of them per call
    # and asked itself to fetch again, but reported the wake stream's id including that very
    # wake-up, so the worker blocked for block_timeout: a job of a new group waited about
    # (groups / 18) x block_timeout (6 s for 1,000 groups at the default 5 s; hours for
    # 100,000).
    registry = Registry()

    @registry.processor(queue.name)
    async def handle(job: Any) -> str:
        return "done"

    jobs = await queue.add_bulk([("j", i, {"group": f"g{i}"}) for i in range(300)])
    if how == "drain":
        assert await queue.drain() == 300
    elif how == "clean":
        assert len(await queue.clean(0, "waiting")) == 300
    elif how == "remove":
        for job in jobs:
            assert await queue.remove_job(job.id)
    else:
        for i in range(300):
            await queue.pause_group(f"g{i}")
    worker, task = await _run(redis_url, queue, registry, concurrency=1, block_timeout=60.0)
    await wait_until(lambda: _workers_up(queue), timeout=10, message="worker up")
    new = await queue.add("j", "new", group="new")
    assert await new.wait_until_finished(timeout=10) == "done"
    if how != "pause":
        assert (await queue.get_group_counts()).groups == 0
    await worker.close()
    await task


async def _workers_up(q: Queue) -> bool:
    return len(await q.get_workers()) == 1


async def test_a_frozen_worker_gives_up_its_run_once_it_sees_the_lease_lost(
        redis_url: str, procs: list[Any]) -> None:
    # Found: a worker frozen (SIGSTOP: a VM pause, a GC stall) past its lease saw the lease
    # lost when it woke ("lease lost" logged at every renewal) but ran the job to its end,
    # beside the worker that had taken it back: two runs of one account's sync at group
    # concurrency 1, the overlap groups exist to prevent. Its result was discarded anyway.
    q = Queue("groups", url=redis_url, prefix=f"bgb{next(_prefixes)}")
    await q.set_group_options("acct", concurrency=1)
    fast = ("--lock-duration", "1", "--stalled-interval", "0.3")
    victim, = workers(redis_url, procs, q.prefix, 1, *fast)
    job = await q.add("work", {"g": "acct", "sleep_once": 20}, group="acct")
    await wait_until(lambda: _stamped(q, "start", 1), timeout=20, message="first run")
    victim.send_signal(signal.SIGSTOP)
    try:
        workers(redis_url, procs, q.prefix, 1, *fast)
        await wait_until(lambda: _stamped(q, "end", 1), timeout=30, message="second run done")
    finally:
        victim.send_signal(signal.SIGCONT)
    await wait_until(lambda: _stamped(q, "cancelled", 1), timeout=15,
                     message="the frozen worker giving its run up")
    ends = await stamps(q, "end")
    assert [(s.id, s.pid) for s in ends] == [(job.id, ends[0].pid)] and ends[0].pid != victim.pid
    assert await q.get_state(job.id) == "completed"
    async def idle() -> bool:
        info = await q.get_group("acct")
        return info is not None and info.active == 0 and info.waiting == 0
    await wait_until(idle, timeout=10, message="the group's slot given back")
    await q.close()


async def _stamped(q: Queue, what: str, n: int) -> bool:
    return len(await stamps(q, what)) >= n


async def test_a_frozen_batch_worker_gives_up_a_call_whose_every_lease_is_lost(
        redis_url: str, procs: list[Any]) -> None:
    # As above for a batch: every job of the call was taken back and run by another worker,
    # so nothing is left to lose by cutting the call (one lost lease alone does not cut it).
    q = Queue("batches", url=redis_url, prefix=f"bgb{next(_prefixes)}")
    fast = ("--prefix", q.prefix, "--lock-duration", "1", "--stalled-interval", "0.3")
    victim = start_worker(redis_url, "batches", *fast, target="tests.batch_procs:registry")
    procs.append(victim)
    jobs = await q.add_bulk([("b", {"sleep_once": 20}) for _ in range(3)])
    key = f"{q.keys.base}:batch-calls"

    async def calls(n: int) -> bool:
        return int(await q.redis.llen(key)) >= n

    await wait_until(lambda: calls(1), timeout=20, message="first call")
    victim.send_signal(signal.SIGSTOP)
    try:
        procs.append(start_worker(redis_url, "batches", *fast, target="tests.batch_procs:registry"))
        for job in jobs:
            await wait_until(lambda j=job: _finished(q, j.id), timeout=30, message="taken back")
    finally:
        victim.send_signal(signal.SIGCONT)

    async def gave_up() -> bool:
        return victim.pid in [int(x) for x in await q.redis.lrange(f"{q.keys.base}:batch-cancelled", 0, -1)]

    await wait_until(gave_up, timeout=15, message="the frozen worker giving its call up")
    assert all([await q.get_state(j.id) == "completed" for j in jobs])
    await q.close()


@pytest.mark.parametrize("error", [42, None, b"bytes"])
def test_batch_fail_refuses_an_error_that_is_not_a_string_or_an_exception(error: Any) -> None:
    # Found: batch.fail(job, 42) was accepted; the worker then crashed on it after the call
    # (traceback.format_exception of an int): the runner task died and every job of the
    # batch stayed active until its lease ran out. batch.fail(job, None) completed the job.
    job = Job(None, "1", "n", None, StoredOptions())
    batch = Batch([job])
    with pytest.raises(TypeError, match=r"batch\.fail needs a str or an exception"):
        batch.fail(job, error)
    assert batch.failed == {}


async def test_a_processor_that_consumes_batch_jobs_leaves_every_job_an_outcome(
        redis_url: str, queue: Queue) -> None:
    # Found: Batch.jobs was the worker's own list; a processor that consumed it
    # (`while batch.jobs: job = batch.jobs.pop()`) took the jobs out of the worker's hands:
    # none got an outcome and all stayed active until their leases ran out.
    registry = Registry()

    @registry.processor(queue.name, batch={"size": 3, "timeout": 5.0})
    async def handle(batch: Batch) -> None:
        while batch.jobs:
            job = batch.jobs.pop()
            if job.data == 0:
                batch.fail(job, "refused")  # still known to the batch once popped

    jobs = await queue.add_bulk([("j", i) for i in range(3)])
    worker, task = await _run(redis_url, queue, registry)
    for job in jobs:
        await wait_until(lambda j=job: _finished(queue, j.id), timeout=10, message="finished")
    assert [await queue.get_state(j.id) for j in jobs] == ["failed", "completed", "completed"]
    await worker.close()
    await task
