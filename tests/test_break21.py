"""Break round 21: attempt counts carried by results, places tagged with tokens, retention
of logs (meta xl/xr), tokens without string.format, re-sent finish headers."""

from __future__ import annotations

import asyncio
from typing import Any

import driver
from helpers import wait_until

from minique import Queue


async def _redis_ms(q: Queue) -> int:
    sec, usec = await q.redis.time()
    return int(sec) * 1000 + int(usec) // 1000


def _counts_of(raw: list[Any], job_id: str) -> str:
    body = raw[driver.HEADER:]
    for i in range(0, len(body), driver.JOB_FIELDS):
        if body[i].decode() == job_id:
            return f":{int(body[i + 5])}:{int(body[i + 6])}"
    raise AssertionError(f"{job_id} not taken")


async def test_held_job_retried_between_calls_records_its_attempt(queue: Queue) -> None:
    # A held job that starts and fails before its worker's next call: the result carries
    # its start time and counts. The attempt history must read as one-at-a-time would:
    # attempt 1, started when it started.
    job = await queue.add("t", 1, attempts=3)
    raw = await driver.take(queue, "w", 0, 1, hold_ms=5000)
    counts = _counts_of(raw, job.id)
    tok = raw[driver.HEADER + 1].decode()
    started = await _redis_ms(queue)
    statuses, _, _ = await driver.finish(
        queue, [(job.id, tok, "r", "boom", "stk", 0, -1, -1, str(started), counts)], worker="w")
    assert statuses == [1]
    j = await queue.get_job(job.id)
    assert j is not None and j.attempts_made == 1 and j.attempts_started == 1
    attempts = await queue.get_job_attempts(job.id)
    assert [(a.number, a.outcome) for a in attempts] == [(1, "retried")]
    assert attempts[0].started_at == started / 1000.0


async def _warm(q: Queue, n: int = 40) -> None:
    await q.add_bulk([("warm", None) for _ in range(n)])
    await wait_until(lambda: _done(q, n), timeout=20, message="warm-up done")


async def _done(q: Queue, n: int) -> bool:
    s = await q.get_stats()
    return s["completed"] + s["failed"] >= n


async def test_prefetching_worker_attempt_history_matches_one_at_a_time(
        redis_url: str, qname: str) -> None:
    # Jobs that fail their first attempt and complete the second, on a prefetching worker
    # at concurrency 1: every job's history must say "attempt 1 retried, attempt 2
    # completed", as with prefetch=False.
    from minique import Worker

    results: dict[bool, list[Any]] = {}
    for prefetch in (False, True):
        q = Queue(qname + str(prefetch), url=redis_url,
                  default_job_options={"remove_on_complete": False})

        async def work(job: Any) -> Any:
            if job.name == "x" and job.attempts_made == 0:
                raise RuntimeError("first attempt fails")
            return None

        w = Worker(q.name, work, url=redis_url, concurrency=1, prefetch=prefetch)
        task = asyncio.create_task(w.run(handle_signals=False))
        try:
            await _warm(q)
            jobs = await q.add_bulk([("x", i, {"attempts": 2}) for i in range(60)])
            await wait_until(lambda q=q: _done(q, 100), timeout=30, message="jobs done")
            seen = []
            for j in jobs:
                attempts = await q.get_job_attempts(j.id)
                seen.append([(a.number, a.outcome) for a in attempts])
            results[prefetch] = seen
        finally:
            await w.close(timeout=2)
            await task
            await q.obliterate(force=True)
            await q.close()
    want = [[(1, "retried"), (2, "completed")]] * 60
    assert results[False] == want
    bad = [i for i, s in enumerate(results[True]) if s != want[0]]
    assert not bad, (len(bad), results[True][bad[0]])


async def _run_mix(redis_url: str, name: str, prefetch: bool, jobs_spec: list[Any],
                   work: Any, concurrency: int = 1, **worker_kw: Any) -> dict[str, Any]:
    """Runs ``jobs_spec`` (add_bulk tuples) on one worker; per job its final state, counts
    and attempt history."""
    from minique import Worker

    q = Queue(name, url=redis_url, default_job_options={"remove_on_complete": False,
                                                         "remove_on_fail": False})
    w = Worker(q.name, work, url=redis_url, concurrency=concurrency, prefetch=prefetch,
               **worker_kw)
    task = asyncio.create_task(w.run(handle_signals=False))
    try:
        await _warm(q)
        jobs = await q.add_bulk(jobs_spec)
        n = 40 + len(jobs)
        await wait_until(lambda: _done(q, n), timeout=30, message="jobs done")
        out = {}
        for j in jobs:
            got = await q.get_job(j.id)
            assert got is not None
            attempts = await q.get_job_attempts(j.id)
            out[j.id] = (got.state, got.attempts_made, got.attempts_started,
                         [(a.number, a.outcome) for a in attempts])
        return out
    finally:
        await w.close(timeout=2)
        await task
        await q.obliterate(force=True)
        await q.close()


async def test_outcomes_counts_match_one_at_a_time(redis_url: str, qname: str) -> None:
    # Delayed and RateLimited use no attempt, UnrecoverableError fails at once, retries
    # use attempts: the same counts whether the job was held first or not.
    from minique import Delayed, UnrecoverableError

    async def work(job: Any) -> Any:
        if job.name == "warm":
            return None
        kind = job.data
        if kind == "delayed" and job.attempts_started == 1:
            raise Delayed(0.001)
        if kind == "unrec":
            raise UnrecoverableError("no")
        if kind == "retry3" and job.attempts_made < 2:
            raise RuntimeError("again")
        if kind == "fail":
            raise RuntimeError("always")
        return None

    kinds = ["plain", "delayed", "unrec", "retry3", "fail"]
    spec = [("x", kinds[i % len(kinds)], {"attempts": 3, "job_id": f"j{i}"})
            for i in range(50)]
    ref = await _run_mix(redis_url, qname + "ref", False, spec, work)
    got = await _run_mix(redis_url, qname + "pf", True, spec, work)
    # (The attempt histories differ too: see the test above; counts and states here.)
    diffs = {k: (ref[k][:3], got[k][:3]) for k in ref if ref[k][:3] != got[k][:3]}
    assert not diffs, (len(diffs), list(diffs.items())[:3])


async def _keys(q: Queue, pattern: str) -> set[bytes]:
    return {k async for k in q.redis.scan_iter(match=pattern, count=1000)}


async def test_retention_leaves_no_log_and_deletes_no_live_log(module_redis_url: str) -> None:
    # Jobs that log, trimmed by count, by age, removed on completion, cleaned and drained:
    # no log key outlives its job, and every job that logged still has its log.
    from minique import Worker

    q = Queue("logs21", url=module_redis_url)

    async def work(job: Any) -> Any:
        await job.log(f"line of {job.id}")
        if job.data == "fail":
            raise RuntimeError("x")
        return None

    w = Worker(q.name, work, url=module_redis_url, concurrency=4)
    task = asyncio.create_task(w.run(handle_signals=False))
    try:
        specs: list[Any] = []
        for i in range(120):
            opts: dict[str, Any] = {"job_id": f"j{i}"}
            if i % 4 == 0:
                opts["remove_on_complete"] = True
            elif i % 4 == 1:
                opts["remove_on_complete"] = {"count": 3}
            elif i % 4 == 2:
                opts["remove_on_fail"] = {"count": 2}
            else:
                opts["remove_on_complete"] = {"age": 0.05}
            specs.append(("x", "fail" if i % 4 == 2 else "ok", opts))
        await q.add_bulk(specs)
        await wait_until(lambda: _idle(q), timeout=30, message="all done")
        prefix = q.keys.base
        jobs = {k[len(prefix) + 3:] for k in await _keys(q, prefix + ":j:*")}
        logs = {k[len(prefix) + 6:] for k in await _keys(q, prefix + ":logs:*")}
        assert logs <= jobs, sorted(logs - jobs)[:5]
        for jid in jobs:
            st = await q.redis.hget(f"{prefix}:j:{jid.decode()}", "st")
            if st in (b"completed", b"failed"):
                assert jid in logs, jid
        await q.clean(0, "completed")
        await q.clean(0, "failed")
        left = await _keys(q, prefix + ":logs:*")
        assert not left, sorted(left)[:5]
    finally:
        await w.close(timeout=2)
        await task
        await q.obliterate(force=True)
        await q.close()


async def _idle(q: Queue) -> bool:
    s = await q.get_stats()
    return s["waiting"] + s["active"] + s["delayed"] == 0 and s["completed"] + s["failed"] > 0


async def test_held_retry_after_an_active_retry_keeps_both_attempts(queue: Queue) -> None:
    # Attempt 1 runs taken for a free slot and is retried; attempt 2 is held, starts and
    # is retried before its worker's next call. The history must hold both attempts (1
    # and 2): the second must not overwrite the first's ring entry.
    job = await queue.add("t", 1, attempts=3)
    [(jid, tok)] = await driver.fetch(queue, 1)
    assert (await driver.finish(queue, [driver.retry(jid, tok)]))[0] == [1]
    raw = await driver.take(queue, "w", 0, 1, hold_ms=5000)
    counts = _counts_of(raw, job.id)
    assert counts == ":1:2"
    tok2 = raw[driver.HEADER + 1].decode()
    started = await _redis_ms(queue)
    statuses, _, _ = await driver.finish(
        queue, [(job.id, tok2, "r", "boom", "stk", 0, -1, -1, str(started), counts)],
        worker="w")
    assert statuses == [1]
    attempts = await queue.get_job_attempts(job.id)
    assert [(a.number, a.outcome) for a in attempts] == [(1, "retried"), (2, "retried")]


async def test_dead_holder_stale_place_order_is_one_at_a_time(queue: Queue) -> None:
    # x once popped with its priority score (place written under that token), then
    # lowered to no priority: read from the stream by a holder that dies, it must go back
    # by its stream entry (behind a and b), not to its old priority place.
    x = await queue.add("x", 0, priority=2)
    tokens = await driver.hold(queue, 1, 5000)
    assert list(tokens) == [x.id]
    assert await driver.hand_back(queue, tokens) == [1]
    y = await queue.add("y", 0, priority=2)
    a, b = await queue.add_bulk([("a", 0), ("b", 0)])
    await queue.change_priority(x.id, 0)
    c = await queue.add("c", 0)
    await driver.die_holding(queue, [y.id, a.id, b.id, x.id])
    got = [i for i, _ in await driver.fetch(queue, 5)]
    assert got == [y.id, a.id, b.id, x.id, c.id]
