"""Break tests (from a break run on sync processors, timeouts, cancel and shutdown): a sync
processor's sys.exit() must not take its worker down, a processor that catches the cancel
of a cancel() or of its timeout must not complete the job, and a cancel that crosses an
attempt going back to the queue must still end the job."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from typing import Any

import pytest
from driver import back_to_wait, fetch, finish, retry, take
from helpers import start_worker, wait_until

from minique import JobFailed, Queue, Worker


@pytest.fixture
async def bs(redis_url: str, qname: str) -> AsyncIterator[Queue]:
    q = Queue("bs", url=redis_url, prefix=qname)
    yield q
    await q.obliterate(force=True)
    await q.close()


@pytest.mark.parametrize(("raised", "mode", "name"), [
    ("SystemExit", [], "exits"), ("KeyboardInterrupt", [], "exits"),
    ("SystemExit", ["--cpu-processes", "1"], "exits"),
    ("SystemExit", [], "aexits"), ("KeyboardInterrupt", [], "aexits")],
    ids=["exit-thread", "interrupt-thread", "exit-process", "exit-async", "interrupt-async"])
async def test_a_processors_sys_exit_fails_its_attempt_not_the_worker(
        bs: Queue, qname: str, redis_url: str, procs: list[Any], raised: str,
        mode: list[str], name: str) -> None:
    """sys.exit() in a plain def ends the thread it runs in (or is carried back from its
    child process); the worker re-raised it on its event loop, which left the process
    hanging with its jobs unreported: the job beside it never finished, the failing job
    was never retried. An async def's did the same (it escaped the event loop, and the
    process hung with the jobs beside it unreported). Now the attempt fails (and is
    retried) and the worker runs on: a job's sys.exit() (click's standalone mode, a
    library's) is the job's error, not a request to stop the worker, which SIGTERM is."""
    key = bs.keys.base + ":trace"
    bad = await bs.add(name, {"url": redis_url, "key": key, "raise": raised}, attempts=2)
    good = await bs.add(name, {"url": redis_url, "key": key, "sleep": 0.3}, attempts=1)
    proc = start_worker(redis_url, "bs", "--prefix", qname, "--concurrency", "2",
                        "--lock-duration", "1", *mode, target="tests.sync_break_procs:registry")
    procs.append(proc)
    assert await good.wait_until_finished(timeout=30) == "ok"
    with pytest.raises(JobFailed, match=raised):
        await bad.wait_until_finished(timeout=30)
    done = await bs.get_job(bad.id)
    assert done is not None and done.attempts_made == 2
    assert proc.poll() is None  # still serving
    later = await bs.add(name, {"url": redis_url, "key": key}, attempts=1)
    assert await later.wait_until_finished(timeout=30) == "ok"


def _stubborn(started: asyncio.Event) -> Any:
    """An async processor that catches every exception, the cancel included, and returns."""
    async def stubborn(job: Any) -> str:
        started.set()
        with contextlib.suppress(BaseException):  # the cancel included: the point
            await asyncio.sleep(30)
        return "done anyway"
    return stubborn


async def _run_worker(queue: Queue, redis_url: str, fn: Any) -> tuple[Worker, asyncio.Task[None]]:
    w = Worker(queue.name, fn, url=redis_url, concurrency=1)
    return w, asyncio.create_task(w.run())


@pytest.mark.parametrize("how", ["cancel", "timeout"])
async def test_a_processor_that_catches_the_cancel_does_not_complete_the_job(
        queue: Queue, redis_url: str, how: str) -> None:
    """An async processor that catches every exception, the cancel included, and returns a
    value: that value completed a job that was cancelled or past its timeout. As for a
    thread, it is now dropped once the processor returns: the job fails as cancelled /
    timed out."""
    started = asyncio.Event()
    stubborn = _stubborn(started)
    job = await queue.add("x", None, attempts=1, timeout=0.2 if how == "timeout" else None)
    w, task = await _run_worker(queue, redis_url, stubborn)
    try:
        await asyncio.wait_for(started.wait(), 10)
        if how == "cancel":
            assert await queue.cancel(job.id)
        with pytest.raises(JobFailed, match="cancelled" if how == "cancel" else "timed out"):
            await job.wait_until_finished(timeout=10)
    finally:
        await w.close()
        await task


async def test_a_processor_that_catches_the_shutdown_cancel_keeps_its_real_outcome(
        queue: Queue, redis_url: str) -> None:
    """The guard for the above: past the shutdown grace, a processor that catches the
    cancel and returns keeps its result (as a thread's run past the grace does)."""
    started = asyncio.Event()
    stubborn = _stubborn(started)
    job = await queue.add("x", None, attempts=1)
    w, task = await _run_worker(queue, redis_url, stubborn)
    await asyncio.wait_for(started.wait(), 10)
    await w.close(timeout=0.05)
    await task
    assert await job.wait_until_finished(timeout=5) == "done anyway"


@pytest.mark.parametrize("kind", ["retry", "rate-limited", "shutdown", "delayed", "handed-back"])
async def test_a_cancel_that_crosses_an_attempt_going_back_ends_the_job(
        queue: Queue, redis_url: str, kind: str) -> None:
    """cancel() of an active job returns True, but the worker had already decided to send
    the attempt back (the processor raised and a retry is due, Delayed, a rate limit, a
    shutdown, a job handed back unstarted): the cancel message finds no running job, and
    the job went back to the queue and ran again (completing, or cancelled at some later
    renewal when long enough). The cancel now ends the job as cancelled, once."""
    job = await queue.add("x", None, attempts=3)
    (jid, tok), = await fetch(queue)
    assert await queue.cancel(jid)
    result = {
        "retry": retry(jid, tok, delay_ms=0),
        "rate-limited": back_to_wait(jid, tok),
        "shutdown": (jid, tok, "w", "worker shut down", "", 0, -1, -1),
        "delayed": (jid, tok, "d", "later", "", 0, -1, -1),
        "handed-back": (jid, tok, "h", "", "", 0, -1, -1),
    }[kind]
    statuses, _, _ = await finish(queue, [result])
    assert statuses == [1]
    ran: list[int] = []

    async def proc(j: Any) -> str:
        ran.append(j.attempts_made)
        return "ran again"

    w, task = await _run_worker(queue, redis_url, proc)
    try:
        with pytest.raises(JobFailed, match="cancelled"):
            await job.wait_until_finished(timeout=10)
        # A job added after it runs, so the worker had its chance at the cancelled one.
        after = await queue.add("y", None)
        assert await after.wait_until_finished(timeout=10) == "ran again"
    finally:
        await w.close()
        await task
    assert ran == [0]  # only the job added after
    done = await queue.get_job(jid)
    assert done is not None and done.state == "failed" and done.failed_reason == "cancelled"


async def test_a_held_job_handed_back_as_cancel_reaches_it_waits_and_runs(queue: Queue) -> None:
    """A job held ahead (prefetched) is waiting to everyone else, and a cancel does not
    reach a waiting job: cancel() waits for its holder's answer. Handed back unstarted (its
    hold ran out, or the cancel itself), it goes back to its place without the cancel flag,
    cancel() answers False and the job runs in its turn, as one taken one at a time would.
    (It used to fail as cancelled without ever running.)"""
    job = await queue.add("x", None, attempts=3)
    await take(queue, "w1", 0, 1)
    assert await queue.redis.hget(queue.keys.job(job.id), "st") == b"held"
    tok = (await queue.redis.hget(queue.keys.job(job.id), "tok")).decode()
    asking = asyncio.create_task(queue.cancel(job.id))
    await wait_until(lambda: _flagged(queue, job.id), timeout=5, message="cancel asked")
    statuses, _, _ = await finish(queue, [(job.id, tok, "h", "", "", 0, -1, -1)])
    assert statuses == [1]
    assert await asking is False
    assert await queue.get_state(job.id) == "waiting"
    assert await queue.redis.hget(queue.keys.job(job.id), "cx") is None
    [(again, _tok)] = await fetch(queue)
    assert again == job.id


async def _flagged(queue: Queue, job_id: str) -> bool:
    return bool(await queue.redis.hexists(queue.keys.job(job_id), "cx"))


@pytest.mark.parametrize("held", [False, True], ids=["active", "held"])
async def test_a_cancelled_job_whose_worker_died_is_not_run_again(queue: Queue,
                                                                    held: bool) -> None:
    """cancel() reached a job (True) whose worker then died (kill -9) before it heard of the
    cancel: the stalled sweep put the job back, 'cx' set, and another worker ran it again.
    The sweep now fails it as cancelled, as the dead worker would have."""
    job = await queue.add("x", None, attempts=3)
    if held:
        # A worker's hold (worker.HOLD_TIME): cancel() waits it out, and HELD_REMOVE_WAIT.
        await take(queue, "dead", 0, 1, lease_ms=1, hold_ms=50)
    else:
        await fetch(queue, lease_ms=1, worker="dead")
    assert await queue.cancel(job.id)

    async def swept() -> bool:
        await queue._run("stalled", [5, 100, 100, -1, "sweeper"])
        return await queue.redis.hget(queue.keys.job(job.id), "st") not in (b"active", b"held")
    await wait_until(swept, timeout=5, message="the dead worker's job taken back")
    done = await queue.get_job(job.id)
    assert done is not None and done.state == "failed" and done.failed_reason == "cancelled"
