"""Break round 14: report figures (get_stats), hostile exception texts, schedulers and
retries. Each test FAILS on the code it was written against; its docstring says what the
docs promise and what happens instead."""

from __future__ import annotations

import asyncio
import contextlib
import multiprocessing
import time
from typing import Any

import pytest
import redis
from break14_procs import raise_account_closed, raise_bad_str
from helpers import wait_until

from minique import JobFailed, Queue, Registry, SyncQueue, Worker
from minique.errors import AddOutcomeUnknown


async def _state_is(q: Queue, job_id: str, state: str) -> bool:
    return await q.get_state(job_id) == state


# ----- 1. report figures ----------------------------------------------------------------


async def test_get_stats_never_counts_a_job_twice_with_per_job_retention(
        redis_url: str, qname: str) -> None:
    """docs/guide/retries.md: each job keeps its own retention setting; jobs whose setting
    differs from the state's shared one live in '<set>:keep:<count>:<age>' sets, "which
    listing and stats merge". get_stats() says it is "one snapshot (MULTI/EXEC)" so that no
    job a script moves between reads is counted twice or nowhere.

    What happens: the sizes of the keep sets are read in a second pipeline, after the
    MULTI/EXEC. A job that was active (or waiting) in the snapshot and completed into a
    keep set before the second read is counted twice: sampled in a loop while one worker
    runs 2,000 short jobs, 'total' reads 2,001 + up to ~20 (the jobs of one finish call),
    in dozens of samples. With every job on the shared setting the same loop never sees a
    wrong total."""
    q = Queue(qname, url=redis_url)

    async def work(job: Any) -> None:
        await asyncio.sleep(0.001)

    worker = Worker(qname, work, url=redis_url, concurrency=20)
    task = asyncio.create_task(worker.run(handle_signals=False))
    try:
        # The first job stored sets the completed state's shared setting ...
        first = await q.add("x", {}, remove_on_complete={"count": 10})
        await first.wait_until_finished(timeout=10)
        # ... and these, kept by a setting of their own, go to a keep set.
        n = 2000
        await q.add_bulk([("x", i, {"remove_on_complete": {"count": 100_000}})
                          for i in range(n)])
        wrong: list[dict[str, int]] = []
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline:
            stats = await q.get_stats()
            if stats["total"] != n + 1:
                wrong.append(stats)
            if stats["completed"] == n + 1 and stats["total"] == n + 1:
                break
        assert (await q.get_stats())["completed"] == n + 1, "the jobs did not all complete"
    finally:
        await worker.close(timeout=5)
        await task
        await q.obliterate(force=True)
        await q.close()
    assert not wrong, (f"{len(wrong)} samples of get_stats() had a total other than {n + 1} "
                       f"(the queue holds exactly {n + 1} jobs all along); first ones: "
                       f"{[(s['total'], s) for s in wrong[:3]]}")


# ----- 4. hostile input -----------------------------------------------------------------


async def test_an_exception_text_with_a_lone_surrogate_fails_its_job_not_the_worker(
        redis_url: str, qname: str) -> None:
    """docs/guide/queue.md treats a lone surrogate (what os.fsdecode makes of a file name
    that is not UTF-8) as hostile input everywhere a user hands minique text: payloads,
    return values, ids, names and groups are refused or failed with a clear reason. A
    processor's exception message is such text too: `raise ValueError(f"cannot read
    {path}")` for a path from os.listdir(). Expected: the job fails with that reason (the
    surrogate replaced) and the worker goes on with the next job.

    What happens: the reason goes into the worker's finish call as it is; redis-py
    cannot encode it (UnicodeEncodeError, not a connection error), the dispatch loop dies
    and Worker.run() raises. Every result batched with it and every later job is stuck:
    the job added next never runs. Under `minique worker` the process dies, and the job's
    lease expiry hands the same poison job to the next worker."""
    q = Queue(qname, url=redis_url)

    async def work(job: Any) -> Any:
        if job.data == "bad":
            raise ValueError("cannot read caf\udce9.csv")
        return "ok"

    bad = await q.add("x", "bad", attempts=1)
    worker = Worker(qname, work, url=redis_url, concurrency=2)
    task = asyncio.create_task(worker.run(handle_signals=False))
    crashed: BaseException | None = None
    try:
        async def failed_or_dead() -> bool:
            return task.done() or await _state_is(q, bad.id, "failed")

        await wait_until(failed_or_dead, timeout=10,
                         message="the job failed (or the worker died)")
        good = await q.add("x", "good")
        if not task.done():
            assert await good.wait_until_finished(timeout=10) == "ok"
    finally:
        await worker.close(timeout=2)
        try:
            await task
        except BaseException as exc:  # what the worker died of is the finding
            crashed = exc
        state = await q.get_state(bad.id)
        await q.obliterate(force=True)
        await q.close()
    assert crashed is None, f"Worker.run() died with {type(crashed).__name__}: {crashed}"
    assert state == "failed", state


async def _failed_in_a_cpu_process(redis_url: str, qname: str, fn: Any, attempts: int) -> Any:
    """Runs one job of sync processor ``fn`` in a child process (processes=1) until it
    fails for good; the job as stored then."""
    q = Queue(qname, url=redis_url)
    registry = Registry()
    registry.add(qname, fn, name="x")
    job = await q.add("x", 1, attempts=attempts)
    worker = Worker(qname, registry, url=redis_url, concurrency=1, processes=1)
    task = asyncio.create_task(worker.run(handle_signals=False))
    try:
        with contextlib.suppress(JobFailed):
            await job.wait_until_finished(timeout=20)
        done = await q.get_job(job.id)
    finally:
        await worker.close(timeout=5)
        await task
        await q.obliterate(force=True)
        await q.close()
    assert done is not None and done.state == "failed"
    return done


async def test_an_exception_whose_str_raises_keeps_its_type_in_a_cpu_process(
        redis_url: str, qname: str) -> None:
    """worker.py handles a processor exception whose __str__ raises: the attempt fails as
    `BadStr: <str() failed>` with its stack trace, in an async processor and in a thread.
    docs/guide/workers.md: with `processes=N` / `--cpu-processes` the same sync processor
    runs in a child process, and "a child that dies on its own fails the attempt with
    ProcessDied" -- this child did not die on its own.

    What happens: the child's _portable() calls str(exc) outside any try, the child
    process dies of the RuntimeError, and the job fails as
    `ProcessDied: the process running the job died (exit code 1)`: the exception's type and
    the processor's traceback are lost, and the child is restarted for nothing."""
    done = await _failed_in_a_cpu_process(redis_url, qname, raise_bad_str, attempts=1)
    assert done.failed_reason is not None and done.failed_reason.startswith("BadStr"), (
        f"failed_reason {done.failed_reason!r}; the thread and async forms give 'BadStr: ...'")
    assert done.stacktrace and "raise_bad_str" in done.stacktrace, done.stacktrace


async def test_an_unrecoverable_error_subclass_is_not_retried_in_a_cpu_process(
        redis_url: str, qname: str) -> None:
    """docs/guide/retries.md: "`UnrecoverableError` fails the job at once, whatever
    attempts remain." A project's own subclass whose constructor takes other arguments
    than the message (`AccountClosed(account, status)`) does so in a thread or an async
    processor: one attempt, reason `AccountClosed: ...`.

    What happens with `processes=N` / `--cpu-processes`: the exception does not survive
    pickle (its __init__ wants two arguments), pool.py replaces it by a plain
    `ProcessorError`, which is no UnrecoverableError, and the job is retried: all 3
    attempts run (each a call to an account known to be closed), reason
    `ProcessorError: AccountClosed: ...`. The child knew it was unrecoverable and could
    have said so."""
    done = await _failed_in_a_cpu_process(redis_url, qname, raise_account_closed, attempts=3)
    assert done.attempts_made == 1, (
        f"an UnrecoverableError ran {done.attempts_made} attempts (reason "
        f"{done.failed_reason!r}); in a thread it runs one")
    assert done.failed_reason == "AccountClosed: account acct-42 is closed (HTTP 403)"


async def test_queues_of_different_prefixes_do_not_share_their_jobs(redis_url: str) -> None:
    """Queue names and prefixes may contain colons (BullMQ-style names such as
    "emails:welcome", prefixes such as "app:prod"); both are accepted. Two queues are
    the same queue only when both the prefix and the name are the same.

    What happens: the keys' hash tag is "{" + prefix + ":" + name + "}", so
    Queue("b:c", prefix="a") and Queue("c", prefix="a:b") are the same keys
    ("{a:b:c}:..."): a job added to one is counted, listed and run by the other, and
    obliterating one deletes the other. (`minique queues` reads "{a:b:c}" as prefix "a",
    queue "b:c" for both.)"""
    # Now refused: a prefix may not hold ":" (queue names may).
    with pytest.raises(ValueError, match="must not contain ':'"):
        Queue("c", url=redis_url, prefix="a14:b14")
    with pytest.raises(ValueError, match="must not contain ':'"):
        Queue("c", url=redis_url, prefix="{a14:b14}")
    one = Queue("b14:c", url=redis_url, prefix="a14")
    try:
        assert (await one.get_stats())["total"] == 0
    finally:
        await one.close()


async def test_the_waiting_listing_never_lists_a_job_twice(redis_url: str, qname: str) -> None:
    """docs/guide/workers.md: "Holding is unobservable: a held job behaves exactly like a
    waiting one"; get_jobs("waiting") (and the dashboard's list, `minique jobs --state
    waiting`) lists "held jobs, the priority set and the stream first".

    What happens: _waiting_ids reads the held set, then the priority set, then the stream,
    in separate calls. A held job handed back in between (a pause(), any control change,
    a hold that ran out: it goes back to the priority set) is listed twice, once as held
    and once in the priority set; a job taken the other way in between is listed nowhere.
    With two workers on short jobs and a pause()/resume() every few ms, one page of the
    waiting jobs repeats 15-50 ids within a second or two."""
    q = Queue(qname, url=redis_url)

    async def work(job: Any) -> None:
        await asyncio.sleep(0.0005)

    workers = [Worker(qname, work, url=redis_url, concurrency=5) for _ in range(2)]
    tasks = [asyncio.create_task(w.run(handle_signals=False)) for w in workers]
    stop = asyncio.Event()

    async def toggle() -> None:
        while not stop.is_set():
            await asyncio.sleep(0.005)
            await q.pause()
            await q.resume()

    toggler = asyncio.create_task(toggle())
    twice: list[str] = []
    try:
        # Before the fix, ids repeated within 1-2 s.
        deadline = time.monotonic() + 4
        while time.monotonic() < deadline and not twice:
            if (await q.get_stats())["waiting"] < 300:
                await q.add_bulk([("x", i, {"priority": i % 2}) for i in range(600)])
            ids = await q.get_job_ids("waiting", 0, 5000)
            twice = sorted({i for i in ids if ids.count(i) > 1})
    finally:
        stop.set()
        await toggler
        for w in workers:
            await w.close(timeout=5)
        for t in tasks:
            await t
        await q.obliterate(force=True)
        await q.close()
    assert not twice, f"one listing of the waiting jobs holds {len(twice)} ids twice: {twice[:5]}"


def _stats_in_child(q: SyncQueue, conn: Any) -> None:
    started = time.monotonic()
    try:
        conn.send(("ok", q.get_stats(), time.monotonic() - started))
    except BaseException as exc:  # what the child met is the finding
        conn.send(("error", repr(exc), time.monotonic() - started))


def test_a_sync_queue_made_before_a_fork_works_in_the_child(redis_url: str, qname: str) -> None:
    """docs/guide/sync.md: SyncQueue is for code that is not async, "Django, Flask,
    scripts". Such apps commonly make their clients at import time and are then forked:
    gunicorn --preload, uWSGI without lazy-apps, a multiprocessing pool (fork). redis-py's
    own clients notice the new pid and reconnect.

    What happens: the facade's event loop runs in a daemon thread of the parent, and a
    forked child has no such thread; every call of the child submits its coroutine to a
    loop that nobody runs, waits the whole `timeout` (30 s by default) and raises a bare
    `TimeoutError()`, with nothing saying why. Expected: the call works in the child (a
    loop thread of its own), or fails at once with an error that says to make the
    SyncQueue after the fork."""
    q = SyncQueue(qname, url=redis_url, timeout=3)
    try:
        q.add("x", 1)
        ctx = multiprocessing.get_context("fork")
        mine, theirs = ctx.Pipe()
        child = ctx.Process(target=_stats_in_child, args=(q, theirs))
        child.start()
        assert mine.poll(20), "the child did not answer"
        outcome = mine.recv()
        child.join(5)
        if child.is_alive():
            child.kill()
    finally:
        q.obliterate(force=True)
        q.close()
    assert outcome[0] == "ok" and outcome[1]["waiting"] == 1, (
        f"SyncQueue.get_stats() in a forked child: {outcome[1]} after {outcome[2]:.1f}s")


def test_a_sync_add_that_times_out_says_which_job_it_may_have_added(
        module_redis_url: str, qname: str) -> None:
    """docs/guide/queue.md: an add whose outcome is unknown raises `AddOutcomeUnknown`
    carrying the job ids, "so you can look them up; adding again with the same job_id is
    always safe"; an add cancelled before its call went out adds nothing. docs/guide/sync.md:
    SyncQueue offers "the same calls without await", its `timeout` bounding each call.

    What happens: SyncQueue.add gives up after its timeout with a bare `TimeoutError()`
    (no ids), and the add is neither cancelled nor told: it goes on in the facade's loop
    and adds the job once Redis answers. A caller that does what a timeout suggests (try
    again) adds the job twice, and cannot look the first one up. Here Redis holds writes
    for 1.5 s (CLIENT PAUSE ... WRITE, as during a failover or a slow fork) and the facade's
    timeout is 0.5 s."""
    q = SyncQueue(qname, url=module_redis_url, timeout=0.5)
    looker = SyncQueue(qname, url=module_redis_url)
    admin = redis.Redis.from_url(module_redis_url)
    try:
        q.get_stats()  # connected, scripts loaded
        admin.execute_command("CLIENT", "PAUSE", "1500", "WRITE")  # type: ignore[no-untyped-call]
        raised: BaseException | None = None
        try:
            q.add("x", 1)
        except BaseException as exc:  # what it raised is the finding
            raised = exc
        deadline = time.monotonic() + 5
        waiting = 0
        while time.monotonic() < deadline and not waiting:
            waiting = looker.get_stats()["waiting"]  # (waits out the pause)
            time.sleep(0.05)
    finally:
        admin.execute_command("CLIENT", "UNPAUSE")  # type: ignore[no-untyped-call]
        admin.close()
        q.obliterate(force=True)
        q.close()
        looker.close()
    if raised is None:
        return  # it waited for the answer: fine
    assert isinstance(raised, AddOutcomeUnknown) or not waiting, (
        f"SyncQueue.add raised {raised!r} (no job ids), and then added the job anyway "
        f"({waiting} waiting)")


# ----- 3. retries -----------------------------------------------------------------------


async def test_a_cancelled_error_of_the_processors_own_is_retried_like_any_error(
        redis_url: str, qname: str) -> None:
    """docs/guide/workers.md: a job fails as `cancelled` when someone cancels it
    (`queue.cancel()`, a lease lost); any other exception of the processor fails the
    attempt, which "is retried if attempts remain" (even sys.exit() and
    KeyboardInterrupt "fail the attempt like any other exception").

    What happens: the processor awaits a helper task that something else cancelled (a
    gather() whose child was cancelled, a library's internal task, an aiohttp request
    cancelled by its own timeout): asyncio raises CancelledError in the processor,
    although nobody cancelled the job. The worker takes every CancelledError for a cancel
    of the job: it fails for good with reason 'cancelled' after 1 of its 3 attempts. The
    worker knows better: it did not cancel that task (no cancel reason, task.cancelling()
    is 0)."""
    q = Queue(qname, url=redis_url)
    attempts_seen: list[int] = []

    async def work(job: Any) -> str:
        attempts_seen.append(job.attempts_made)
        if job.attempts_made == 0:
            helper = asyncio.create_task(asyncio.sleep(10))
            await asyncio.sleep(0)
            helper.cancel()  # e.g. a sibling request given up on
            await helper  # CancelledError: the helper's, not the job's
        return "ok"

    job = await q.add("x", 1, attempts=3)
    worker = Worker(qname, work, url=redis_url, concurrency=2)
    task = asyncio.create_task(worker.run(handle_signals=False))
    outcome: Any
    try:
        try:
            outcome = await job.wait_until_finished(timeout=10)
        except JobFailed as exc:
            outcome = exc
    finally:
        await worker.close(timeout=5)
        await task
        await q.obliterate(force=True)
        await q.close()
    assert outcome == "ok", (f"no one cancelled the job, it had 3 attempts, yet it ended "
                             f"with {outcome!r} after attempts {attempts_seen}")
