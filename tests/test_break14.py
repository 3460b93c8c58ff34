"""Break round 14: report figures (get_stats), hostile exception texts, schedulers and
retries. Each test FAILS on the code it was written against; its docstring says what the
docs promise and what happens instead."""

from __future__ import annotations

import asyncio
import contextlib
import time
from typing import Any

from break14_procs import raise_bad_str
from helpers import wait_until

from minique import JobFailed, Queue, Registry, Worker


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
        await wait_until(lambda: task.done() or _state_is(q, bad.id, "failed"), timeout=10,
                         message="the job failed (or the worker died)")
        good = await q.add("x", "good")
        if not task.done():
            assert await good.wait_until_finished(timeout=10) == "ok"
    finally:
        await worker.close(timeout=2)
        try:
            await task
        except BaseException as exc:
            crashed = exc
        state = await q.get_state(bad.id)
        await q.obliterate(force=True)
        await q.close()
    assert crashed is None, f"Worker.run() died with {type(crashed).__name__}: {crashed}"
    assert state == "failed", state


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
    q = Queue(qname, url=redis_url)
    registry = Registry()
    registry.add(qname, raise_bad_str, name="bad")
    job = await q.add("bad", 1, attempts=1)
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
    assert done.failed_reason is not None and done.failed_reason.startswith("BadStr"), (
        f"failed_reason {done.failed_reason!r}; the thread and async forms give 'BadStr: ...'")
    assert done.stacktrace and "raise_bad_str" in done.stacktrace, done.stacktrace
