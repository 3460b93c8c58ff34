"""Shutdown past its grace during a batch call (brk-hooks): the jobs the processor had
already given an outcome keep it. They used to go back to waiting with the rest, so a
webhook batch cut by a deploy sent its delivered events again."""

from __future__ import annotations

import asyncio

import pytest

from minique import Batch, JobFailed, Queue, Registry, UnrecoverableError, Worker


async def test_outcomes_given_before_the_cut_are_kept(queue: Queue, redis_url: str) -> None:
    registry = Registry()
    reached = asyncio.Event()

    @registry.processor(queue.name, batch={"size": 4, "timeout": 5.0})
    async def deliver(batch: Batch) -> None:
        done, refused, retried, _hung = batch.jobs
        batch.complete(done, {"status": 204})
        batch.fail(refused, UnrecoverableError("410"))
        batch.fail(retried, "503")
        reached.set()
        await asyncio.Event().wait()  # the fourth never answers: cut at shutdown

    jobs = [await queue.add(n, None, attempts=3, backoff=0)
            for n in ("done", "refused", "retried", "hung")]
    worker = Worker(queue.name, registry, url=redis_url)
    task = asyncio.create_task(worker.run())
    await asyncio.wait_for(reached.wait(), 5)
    await worker.close(timeout=0.1)
    await asyncio.wait_for(task, 5)
    done, refused, retried, hung = [await queue.get_job(j.id) for j in jobs]
    assert done is not None and done.state == "completed" and done.return_value == {"status": 204}
    assert refused is not None and refused.state == "failed" and refused.attempts_made == 1
    assert retried is not None and retried.state in ("waiting", "delayed")
    assert retried.attempts_made == 1 and "503" in (retried.failed_reason or "")
    assert hung is not None and hung.state == "waiting" and hung.attempts_made == 0


async def test_a_job_done_within_its_timeout_keeps_its_outcome(queue: Queue, redis_url: str) -> None:
    """A job's timeout inside a batch: the processor completed it at once, well within its
    timeout, and the call went on for its batch-mate. As alone, it completes; it used to
    fail as timed out (and run again: a webhook sent twice), whether the call returned or
    was cut once every job's timeout had passed."""
    registry = Registry()

    @registry.processor(queue.name, batch={"size": 2, "timeout": 5.0})
    async def work(batch: Batch) -> None:
        quick, slow = batch.jobs
        batch.complete(quick, "done")
        if slow.data == "returns":
            await asyncio.sleep(0.5)  # past quick's timeout, within slow's
            batch.complete(slow, "late but in time")
        else:
            await asyncio.Event().wait()  # cut once slow's timeout has passed too

    worker = Worker(queue.name, registry, url=redis_url)
    task = asyncio.create_task(worker.run())
    try:
        for how in ("returns", "hangs"):
            quick = await queue.add("quick", how, timeout=0.2, attempts=1)
            slow = await queue.add("slow", how, timeout=1.0, attempts=1)
            assert await quick.wait_until_finished(timeout=5) == "done"
            if how == "returns":
                assert await slow.wait_until_finished(timeout=5) == "late but in time"
            else:
                with pytest.raises(JobFailed, match=r"timed out after 1\.0s"):
                    await slow.wait_until_finished(timeout=5)
    finally:
        await worker.close()
        await asyncio.wait_for(task, 5)
