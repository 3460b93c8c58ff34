"""Jobs a worker holds ahead (prefetch) obey the queue like waiting jobs: pause, drain,
rate limits, priorities, global concurrency and idle workers elsewhere all reach them.

Real worker processes hold the jobs; starts are stamped with the Redis clock
(tests/held_procs.py), so "after pause() returned" is measured on the clock the scripts use.
"""

from __future__ import annotations

import asyncio
from typing import Any

import pytest
from driver import fetch
from held_support import (
    completed,
    fresh_prefix,
    redis_ms,
    started,
    started_at_least,
    starts,
    warm_worker,
)
from helpers import wait_until

from minique import Queue, Worker
from minique.worker import HOLD_TIME


async def test_held_jobs_go_to_an_idle_worker_instead_of_waiting_behind_a_long_job(
        redis_url: str, procs: list[Any]) -> None:
    prefix = fresh_prefix("held")
    q = Queue("held", url=redis_url, prefix=prefix)
    await warm_worker(redis_url, procs, q, prefix, concurrency=1)
    jobs = await q.add_bulk([("tick", {"sleep": 4.0})] + [("tick", {}) for _ in range(100)])
    long_job = jobs[0]
    await wait_until(lambda: _state_is(q, long_job.id, b"active"), timeout=10,
                     message="the long job running")
    # An idle worker joins once the busy one has taken what it takes.
    from tests import held_procs

    idle = Worker("held", held_procs.registry, url=redis_url, prefix=prefix, concurrency=1)
    task = asyncio.create_task(idle.run(handle_signals=False))
    try:
        await wait_until(lambda: completed(q, 60 + 100), timeout=30,
                         message="the 100 short jobs done")
        # ...while the long job still runs: none of them waited behind it.
        assert await _state_is(q, long_job.id, b"active")
        assert idle.jobs_done > 0
    finally:
        await idle.close(timeout=1)
        await task
    await q.obliterate(force=True)
    await q.close()


async def _state_is(q: Queue, job_id: str, state: bytes) -> bool:
    return bool(await q.redis.hget(q.keys.job(job_id), "st") == state)


async def test_after_pause_returns_no_held_job_starts(redis_url: str, procs: list[Any]) -> None:
    prefix = fresh_prefix("held")
    q = Queue("held", url=redis_url, prefix=prefix)
    await warm_worker(redis_url, procs, q, prefix, concurrency=2)
    await q.add_bulk([("tick", {"sleep": 0.001}) for _ in range(2000)])
    await wait_until(lambda: started_at_least(q, 100), timeout=20, message="100 started")
    await q.pause()
    paused_at = await redis_ms(q)
    await asyncio.sleep(1.0)  # any held job would have started by now
    late = [s for s in await starts(q) if s[1] > paused_at]
    assert len(late) <= 2, f"{len(late)} jobs started after pause() returned"
    stats = await q.get_stats()
    assert stats["active"] == 0 and stats["waiting"] > 0
    await q.resume()
    await wait_until(lambda: started_at_least(q, 2000), timeout=60, message="all ran after resume")
    assert len({s[0] for s in await starts(q)}) == 2000  # each once
    await q.obliterate(force=True)
    await q.close()




async def test_a_rate_limited_job_stops_held_jobs_too(redis_url: str, procs: list[Any]) -> None:
    prefix = fresh_prefix("held")
    q = Queue("held", url=redis_url, prefix=prefix)
    await warm_worker(redis_url, procs, q, prefix, concurrency=3)
    jobs = await q.add_bulk([("tick", {}) for _ in range(20)] + [("tick", {"limit": 1.5})]
                            + [("tick", {}) for _ in range(60)])
    limiter = jobs[20].id
    await wait_until(lambda: started(q, limiter), timeout=20, message="the limiting job ran")
    await asyncio.sleep(1.0)
    seen = await starts(q)
    limited_at = next(ms for job_id, ms, _ in seen if job_id == f"limited:{limiter}")
    # The stamp of the raise is a round trip before the worker knows of it: in that time
    # each of the other two slots may stamp the job it runs and start one more. Nothing
    # held starts after that (before the fix: 59 of 60).
    within = [s for s in seen if limited_at < s[1] < limited_at + 1000
              and not s[0].startswith("limited:")]
    assert len(within) <= 4, f"{len(within)} jobs started inside the rate limit"
    await wait_until(lambda: completed(q, 60 + 81), timeout=30, message="all done after the limit")
    assert len({s[0] for s in await starts(q)}) == 82  # 81 jobs, each once, and the raise
    await q.obliterate(force=True)
    await q.close()




async def test_after_drain_returns_no_drained_job_starts(redis_url: str, procs: list[Any]) -> None:
    prefix = fresh_prefix("held")
    q = Queue("held", url=redis_url, prefix=prefix)
    await warm_worker(redis_url, procs, q, prefix, concurrency=1)
    await q.add_bulk([("tick", {"sleep": 0.001}) for _ in range(300)])
    await wait_until(lambda: started_at_least(q, 5), timeout=20, message="jobs running")
    removed = await q.drain()
    drained_at = await redis_ms(q)
    await asyncio.sleep(0.5)
    late = [s for s in await starts(q) if s[1] > drained_at]
    assert len(late) <= 1, f"{len(late)} jobs started after drain() returned"
    stats = await q.get_stats()
    assert stats["waiting"] == 0 and stats["active"] == 0
    ran = len(await starts(q))
    # Every job either ran or was drained; a held job that started before its worker
    # heard of the drain counts in both (it ran before drain() returned).
    assert 300 <= ran + removed <= 305, (ran, removed)
    assert len({s[0] for s in await starts(q)}) == ran  # none ran twice
    # Every job that ran completed: a held job that had started before its worker heard
    # of the drain runs on (drain() counted it, so ran + removed may pass 300 by that).
    assert stats["completed"] == 60 + ran
    await q.obliterate(force=True)
    await q.close()


async def test_held_jobs_count_as_waiting_and_against_a_global_concurrency_set_later(
        queue: Queue) -> None:
    await queue.add_bulk([("x", i) for i in range(10)])
    from driver import finish

    _, taken, header = await finish(queue, [], 2, hold=5, hold_ms=int(HOLD_TIME * 1000))
    assert len(taken) == 7 and int(header[1]) == 2  # two active, five held
    stats = await queue.get_stats()
    assert stats["active"] == 2 and stats["waiting"] == 8
    assert len(await queue.get_job_ids("waiting", 0, 99)) == 8
    state = await queue.get_state(taken[-1][0])
    assert state == "waiting"
    # Under a global limit of 3, the held ones count until their worker hands them back (or
    # reports their start): any of them may have started already, its note on the way, and
    # a take one at a time would have counted it. Handed back, one more job may start.
    await queue.set_global_concurrency(3)
    assert await fetch(queue, 5) == []
    await finish(queue, [(job_id, token, "h", "", "", 0, -1, -1, "") for job_id, token in taken[2:]])
    assert len(await fetch(queue, 5)) == 1


async def test_control_changes_wait_out_the_longest_hold(queue: Queue) -> None:
    from driver import finish

    await queue.add_bulk([("x", i) for i in range(10)])
    await finish(queue, [], 1, hold=5, hold_ms=300)
    loop = asyncio.get_running_loop()
    t0 = loop.time()
    await queue.pause()
    assert loop.time() - t0 >= 0.2  # the hold granted 300 ms ago had most of it left
    # A paused queue grants no hold.
    _, taken, header = await finish(queue, [], 0, hold=5, hold_ms=300)
    assert taken == [] and int(header[7]) == 0


async def test_a_shrinking_prefetch_never_asks_for_a_negative_count(
        queue: Queue, redis_url: str, caplog: Any) -> None:
    import logging

    async def work(job: Any) -> None:
        if job.data["slow"]:
            await asyncio.sleep(0.03)

    caplog.set_level(logging.WARNING, logger="minique.worker")
    await queue.add_bulk([("x", {"slow": False}) for _ in range(30)]
                         + [("x", {"slow": True}) for _ in range(30)])
    worker = Worker(queue.name, work, url=redis_url, concurrency=1)
    task = asyncio.create_task(worker.run(handle_signals=False))
    try:
        await wait_until(lambda: completed(queue, 60), timeout=20, message="60 done")
    finally:
        await worker.close()
        await task
    errors = [r.getMessage() for r in caplog.records if r.levelno >= logging.WARNING]
    assert not errors, errors


async def test_a_held_job_cancelled_before_it_starts_fails_without_a_start(queue: Queue) -> None:
    from driver import finish

    await queue.add_bulk([("x", i) for i in range(3)])
    _, taken, _ = await finish(queue, [], 1, hold=2, hold_ms=int(HOLD_TIME * 1000))
    held_id, token = taken[-1]
    assert await queue.get_state(held_id) == "waiting"
    assert await queue.cancel(held_id)  # reaches the worker that holds it
    # The worker fails it as it would a running job, but it never started: no start time.
    statuses, _, _ = await finish(queue, [(held_id, token, "f", "cancelled", "", 0, -1, -1, "")])
    assert statuses == [1]
    job = await queue.get_job(held_id)
    assert job is not None and job.state == "failed" and job.failed_reason == "cancelled"
    assert job.attempts_started == 0 and job.processed_on is None


async def test_active_never_counts_more_than_concurrency_jobs(queue: Queue, redis_url: str) -> None:
    """Held jobs count as waiting; a job is active from its start: with prefetch on,
    get_stats()["active"] stays within the worker's concurrency (it read up to twice that,
    counting jobs taken for a slot that a held job had filled)."""
    # Each job runs until the sampler has read the stats once more, so the samples keep
    # pace with the jobs however fast the machine is (CI once took 20 samples of 3000 jobs).
    sampled = asyncio.Event()

    async def work(job: Any) -> None:
        sampled.clear()
        await asyncio.wait_for(sampled.wait(), 30)

    await queue.add_bulk([("x", i) for i in range(400)])
    worker = Worker(queue.name, work, url=redis_url, concurrency=1)
    task = asyncio.create_task(worker.run(handle_signals=False))
    seen: list[int] = []
    try:
        while True:
            stats = await queue.get_stats()
            seen.append(stats["active"])
            sampled.set()
            if stats["waiting"] == 0 and stats["active"] == 0:
                break
            await asyncio.sleep(0.001)
    finally:
        await worker.close()
        await task
    assert len(seen) >= 400, "too few samples to mean anything"
    assert sum(a == 1 for a in seen) >= 100, "the samples never saw a job running"
    assert max(seen) <= 1, f"active read {max(seen)} in {sum(a > 1 for a in seen)} samples"


async def test_a_held_job_started_before_a_global_concurrency_is_set_counts_at_once(
        queue: Queue) -> None:
    # Worker A holds two jobs and starts one; its start note goes with A's next call. A
    # global concurrency of 1 set meanwhile must count it, as a take one at a time would
    # have: worker B gets nothing until A's jobs are accounted for and the one running ends.
    from driver import complete, finish

    await queue.add_bulk([("x", i) for i in range(4)])
    _, held, _ = await finish(queue, [], 0, hold=2, hold_ms=50, worker="A")
    assert len(held) == 2
    started_ms = await redis_ms(queue)  # A starts held[0] now
    await queue.set_global_concurrency(1)
    _, taken_by_b, _ = await finish(queue, [], 5, worker="B")
    assert taken_by_b == []
    await finish(queue, [(*held[0], "s", "", "", 0, -1, -1, str(started_ms)),
                         (*held[1], "h", "", "", 0, -1, -1, "")], 0, worker="A")
    assert await fetch(queue, 5) == []  # the started one counts: the limit is reached
    await finish(queue, [complete(*held[0])], 0, worker="A")
    assert len(await fetch(queue, 5)) == 1


async def _waiting_event_ms(q: Queue, job_id: str) -> int:
    """Redis ms of the events-stream entry that made ``job_id`` waiting (its promotion)."""
    from minique.events import read_events_back

    for event in await read_events_back(q.redis, q.keys, "+", 10_000):
        if event.job_id == job_id and event.name == "waiting":
            return int(event.entry_id.split("-")[0])
    raise AssertionError(f"no waiting event for {job_id}")


@pytest.mark.parametrize("how, ahead", [
    ("added", {"priority": 1}), ("fallen due", {"priority": 1}), ("promoted", {"priority": 1}),
    ("added", {"lifo": True}), ("fallen due", {"lifo": True})])
async def test_a_higher_priority_job_does_not_wait_behind_held_jobs(
        redis_url: str, procs: list[Any], how: str, ahead: dict[str, Any]) -> None:
    """However a prioritized job becomes waiting (added, its delay run out, promoted; a
    retry, a debounce, a firing and a flow parent go the same way), held jobs give way to
    it: a worker taking one job at a time would take it at its next fetch. So do they to
    a LIFO job (the head of the plain line)."""
    prefix = fresh_prefix("held")
    q = Queue("held", url=redis_url, prefix=prefix)
    await warm_worker(redis_url, procs, q, prefix, concurrency=1)
    later = await q.add("tick", {}, **ahead, delay=3600) if how == "promoted" else None
    await q.add_bulk([("tick", {}) for _ in range(3000)])
    await wait_until(lambda: started_at_least(q, 50), timeout=20, message="jobs running")
    if later is not None:
        urgent = later
        await q.promote_job(urgent.id)
    else:
        urgent = await q.add("tick", {}, **ahead, delay=0.3 if how == "fallen due" else 0)
    waiting_at = await redis_ms(q)
    await wait_until(lambda: started(q, urgent.id), timeout=20, message="urgent job ran")
    if how == "fallen due":
        waiting_at = await _waiting_event_ms(q, urgent.id)
    seen = await starts(q)
    urgent_at = next(ms for job_id, ms, _ in seen if job_id == urgent.id)
    # Between the moment it became waiting and its start: at most the job that was running
    # and one a round trip could not stop, never the jobs held ahead.
    between = [s for s in seen if waiting_at < s[1] < urgent_at]
    assert len(between) <= 2, f"{len(between)} held jobs started before the urgent one"
    await q.obliterate(force=True)
    await q.close()


async def test_a_job_sent_to_the_head_of_the_line_does_not_wait_behind_held_jobs(
        redis_url: str, procs: list[Any]) -> None:
    """Delayed(0) (and a job taken back from a dead worker) goes to the head of the line:
    a worker taking one job at a time takes it next, so held jobs give way to it too."""
    prefix = fresh_prefix("held")
    q = Queue("held", url=redis_url, prefix=prefix)
    await warm_worker(redis_url, procs, q, prefix, concurrency=1)
    jobs = await q.add_bulk([("tick", {"again": i == 100}) for i in range(3000)])
    again = jobs[100].id
    await wait_until(lambda: _started_twice(q, again), timeout=20, message="ran again")
    seen = await starts(q)
    raised_at = next(ms for job_id, ms, _ in seen if job_id == f"again:{again}")
    second_at = [ms for job_id, ms, _ in seen if job_id == again][1]
    between = [s for s in seen if raised_at < s[1] < second_at and s[0] != again]
    assert len(between) <= 2, f"{len(between)} held jobs started before the job sent back"
    await q.obliterate(force=True)
    await q.close()


async def _started_twice(q: Queue, job_id: str) -> bool:
    return sum(1 for s in await starts(q) if s[0] == job_id) >= 2


async def test_a_cancel_of_a_held_job_sends_back_the_jobs_of_a_reply_on_its_way(
        queue: Queue, redis_url: str) -> None:
    """A cancel that hands back a held job while a call is out: the jobs that call took
    were behind the cancelled job in the queue, so they go back too when its reply lands
    (the worker counts the cancel as a control change, and the reply is stale). Kept,
    they would start before the cancelled job is taken again, out of its turn. One worker
    at concurrency 1 starts jobs in the order they were added, as one taken at a time."""
    order: list[int] = []

    async def work(job: Any) -> None:
        order.append(job.data)
        await asyncio.sleep(0.001)  # short enough to hold ahead, long enough to hold some

    ids = [j.id for j in await queue.add_bulk([("x", i) for i in range(300)])]
    worker = Worker(queue.name, work, url=redis_url, concurrency=1)
    worker._prefetch = lambda: 20  # type: ignore[method-assign]
    send = worker._send_call
    cancelled: list[str] = []

    async def cancel_while_out(args: list[Any]) -> Any:
        reply = await send(args)  # Redis has run the call: its jobs are taken
        held = [r for r in worker._buffered if r.held and r.task is None]
        took = int(args[1]) + int(args[7])  # jobs asked for: free slots, and to hold
        if not cancelled and took and len(held) >= 2 and ids.index(held[0].job.id) > 50:
            # The cancel's message arrives before the reply is handled (pub/sub and the
            # call travel on different connections).
            cancelled.append(held[0].job.id)
            worker._cancel_local(held[0].job.id, "cancelled")
        return reply

    worker._send_call = cancel_while_out  # type: ignore[method-assign]
    task = asyncio.create_task(worker.run(handle_signals=False))
    try:
        await wait_until(lambda: completed(queue, 300), timeout=60, message="300 jobs done")
    finally:
        await worker.close()
        await task
    assert cancelled, "no call took jobs while jobs were held: the test proves nothing"
    first_out_of_turn = next((i for i, data in enumerate(order) if data != i), None)
    if first_out_of_turn is not None:
        around = order[max(0, first_out_of_turn - 3):first_out_of_turn + 3]
        raise AssertionError(f"job {cancelled[0]} was handed back on a cancel; start "
                             f"{first_out_of_turn} was job data {order[first_out_of_turn]} "
                             f"(starts {around})")
    assert sorted(order) == list(range(300))
