"""Break round 13: drain(), cancel() and flows against held (prefetched) jobs, after the
changes of review 13 (drain's phases, parent_ahead, cancel of a held job that ended)."""

from __future__ import annotations

import asyncio
from typing import Any

import driver
from helpers import wait_until

from minique import Queue


async def _redis_ms(q: Queue) -> int:
    sec, usec = await q.redis.time()
    return int(sec) * 1000 + int(usec) // 1000


async def _held_by_driver(q: Queue, n: int, hold_ms: int = 50,
                          worker: str = "holder") -> dict[str, str]:
    raw = await driver.take(q, worker, 0, n, hold_ms=hold_ms)
    body = raw[driver.HEADER:]
    return {body[i].decode(): body[i + 1].decode()
            for i in range(0, len(body), driver.JOB_FIELDS)}


def _inject(q: Queue, phase: str, action: Any) -> Any:
    """Runs ``action()`` once, right after drain()'s first call of ``phase``."""
    run = q._run
    done: list[bool] = []

    async def racing_run(name: str, args: Any, *rest: Any) -> Any:
        reply = await run(name, args, *rest)
        if name == "drain" and args[2] == phase and not done:
            done.append(True)
            await action()
        return reply

    q._run = racing_run  # type: ignore[method-assign]
    return run


async def test_drain_does_not_count_a_held_job_that_ran_and_was_removed_on_complete(
        redis_url: str, qname: str) -> None:
    """A held job that had started when drain() was called (its start note on the way)
    "runs on and is not counted in what drain() returns, as an active job would not be".
    _held_drained counts a marked job as drained when its hash is gone (st None). A job
    that ran and completed with removeOnComplete (retention keep 0) has no hash either:
    drain() counts a job that ran. One at a time it was active: drain() returns 0."""
    q = Queue(qname, url=redis_url)
    try:
        job = await q.add("t", {})
        tokens = await _held_by_driver(q, 1)
        started = await _redis_ms(q) - 5  # the holder started it before drain() was called

        async def holder_reports() -> None:
            statuses, _, _ = await driver.finish(
                q, [driver.complete(job.id, tokens[job.id], keep=(0, -1)) + (started,)],
                worker="holder")
            assert statuses == [1]

        run = _inject(q, "mark", holder_reports)
        n = await q.drain()
        q._run = run  # type: ignore[method-assign]
        assert n == 0, (f"drain() returned {n} for a queue whose only job had started before "
                        f"the call and completed (removed on complete)")
    finally:
        await q.obliterate(force=True)
        await q.close()


async def test_a_job_taken_as_held_during_drain_and_handed_back_is_drained(
        redis_url: str, qname: str) -> None:
    """drain() marks held jobs, deletes the waiting ones, then marks the held ones again.
    A job a worker takes as held after the first marking (while the waiting phase runs)
    and hands back before the second (a pause elsewhere, a prioritized add, its hold ran
    out) lands in the priority set after the waiting phase passed: drain() returns with
    the job waiting, and it starts afterwards although it never started during drain().
    One at a time, the job taken during drain() would have been active (and run then); no
    job that was waiting when drain() was called is waiting once drain() returns."""
    q = Queue(qname, url=redis_url)
    try:
        jobs = await q.add_bulk([("t", {}) for _ in range(3)])
        tokens: dict[str, str] = {}

        async def holder_takes() -> None:
            tokens.update(await _held_by_driver(q, 3))

        run = _inject(q, "mark", holder_takes)
        run2 = q._run

        async def hands_back(name: str, args: Any, *rest: Any) -> Any:
            if name == "drain" and args[2] == "held" and tokens:
                statuses, _, _ = await driver.finish(
                    q, [(i, t, "h", "", "", 0, -1, -1) for i, t in tokens.items()],
                    worker="holder")
                tokens.clear()
            return await run2(name, args, *rest)

        q._run = hands_back  # type: ignore[method-assign]
        n = await q.drain()
        q._run = run  # type: ignore[method-assign]
        waiting = (await q.get_stats())["waiting"]
        states = [await q.redis.hget(q.keys.job(j.id), "st") for j in jobs]
        assert waiting == 0, (f"drain() returned {n}; {waiting} jobs that were waiting when "
                              f"it was called and never started are waiting after it: {states}")
    finally:
        await q.obliterate(force=True)
        await q.close()
