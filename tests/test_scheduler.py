"""Job schedulers: next-run computation, upsert/remove semantics, and real multi-process runs."""

from __future__ import annotations

import asyncio
import itertools
import multiprocessing
import time
from datetime import datetime
from typing import Any
from zoneinfo import ZoneInfo

import pytest
from driver import HEADER, JOB_FIELDS
from helpers import wait_until

from minique import Queue, Worker, scripts
from minique.scheduler import (
    CRON_BATCH,
    cron_fire_times,
    get_job_scheduler,
    next_fire_time,
    refill_due,
    remove_all_job_schedulers,
)
from minique.worker import encode_results

# ----- next-run computation (pure; the clock is an argument) ------------------------------

# (zone, the local date clocks jump forward, the local date clocks go back)
DST_DAYS = [
    ("America/New_York", (2026, 3, 8), (2026, 11, 1)),   # gap 02:00-03:00, repeat 01:00-02:00
    ("Europe/Berlin", (2026, 3, 29), (2026, 10, 25)),    # gap 02:00-03:00, repeat 02:00-03:00
]


def _local(ts: float, tz: str) -> datetime:
    return datetime.fromtimestamp(ts, ZoneInfo(tz))


def _runs_on(expr: str, tz: str, day: tuple[int, int, int]) -> list[datetime]:
    zone = ZoneInfo(tz)
    start = datetime(*day, tzinfo=zone).timestamp() - 1
    return [_local(t, tz) for t in cron_fire_times(expr, tz, start, 50)
            if _local(t, tz).date() == datetime(*day).date()]


@pytest.mark.parametrize(("tz", "spring", "fall"), DST_DAYS)
def test_daily_job_runs_once_on_both_dst_days(tz: str, spring: Any, fall: Any) -> None:
    # 02:00 does not exist on the spring day: it runs once, right after the gap.
    runs = _runs_on("0 2 * * *", tz, spring)
    assert [(r.hour, r.minute) for r in runs] == [(3, 0)]
    # On the fall day every 2 AM and 1 AM job runs once, though those wall times may repeat.
    for expr, hour in (("0 2 * * *", 2), ("0 1 * * *", 1), ("30 1 * * *", 1), ("30 2 * * *", 2)):
        runs = _runs_on(expr, tz, fall)
        assert len(runs) == 1 and runs[0].hour == hour, (expr, runs)
        assert runs[0].fold == 0  # the first occurrence
    # The day after each transition is back to normal.
    for day in (spring, fall):
        after = (day[0], day[1], day[2] + 1)
        assert [(r.hour, r.minute) for r in _runs_on("0 2 * * *", tz, after)] == [(2, 0)]


@pytest.mark.parametrize(("tz", "spring", "fall"), DST_DAYS)
def test_hourly_wildcards_follow_real_time_through_dst(tz: str, spring: Any, fall: Any) -> None:
    zone = ZoneInfo(tz)
    for day, expected_runs in ((spring, 46), (fall, 50)):  # 23 h and 25 h days
        start = datetime(*day, tzinfo=zone).timestamp() - 1
        times = cron_fire_times("*/30 * * * *", tz, start, 100)
        same_day = [t for t in times if _local(t, tz).date() == datetime(*day).date()]
        assert len(same_day) == expected_runs
        gaps = {b - a for a, b in itertools.pairwise(same_day)}
        assert gaps == {1800.0}  # never twice at once, never a missing half hour


def test_next_fire_time_with_an_injected_clock() -> None:
    ny = ZoneInfo("America/New_York")
    now = datetime(2026, 3, 7, 12, 0, tzinfo=ny).timestamp()
    nxt = next_fire_time("0 2 * * *", "America/New_York", now)
    assert nxt is not None and _local(nxt, "America/New_York") == datetime(2026, 3, 8, 3, 0, tzinfo=ny)
    # Strictly after: a fire time equal to now is not the next one.
    exact = datetime(2026, 1, 5, 9, 0, tzinfo=ZoneInfo("UTC")).timestamp()
    assert next_fire_time("0 9 * * *", "UTC", exact) == exact + 86400
    # end= stops the list: fewer times than asked means no more.
    assert cron_fire_times("0 9 * * *", "UTC", exact, 10, end=exact + 3 * 86400) == [
        exact + 86400, exact + 2 * 86400, exact + 3 * 86400]


# ----- bad input ---------------------------------------------------------------------------


@pytest.mark.parametrize(("options", "error", "match"), [
    ({"cron": "61 * * * *"}, ValueError, "invalid cron"),
    ({"cron": "* * *"}, ValueError, "5-field"),
    ({"cron": "0 0 30 2 *"}, ValueError, "never fires"),
    ({"cron": "0 * * * *", "tz": "Mars/Olympus"}, ValueError, "unknown time zone"),
    ({"cron": "0 * * * *", "every": 5.0}, ValueError, "exactly one of"),
    ({}, ValueError, "exactly one of"),
    ({"every": 0}, ValueError, "every must be"),
    ({"every": 1.0, "job_options": {"atempts": 3}}, TypeError, "unknown job option"),
    ({"every": 1.0, "job_options": {"delay": 3}}, TypeError, "cannot be set on a scheduler"),
    ({"every": 1.0, "job_options": {"attempts": 0}}, ValueError, "attempts"),
    ({"every": 1.0, "catch_up": "all"}, ValueError, "catch_up"),
    ({"every": 1.0, "limit": 0}, ValueError, "limit"),
    ({"every": 1.0, "start_date": 100.0, "end_date": 50.0}, ValueError, "end_date"),
    ({"every": 1.0, "data": {"x": object()}}, TypeError, "cannot be encoded"),
    ({"every": 1.0, "pattern": "x"}, TypeError, "unknown option"),
])
async def test_bad_input_is_rejected_and_nothing_is_written(
        queue: Queue, client: Any, options: dict[str, Any], error: type[Exception],
        match: str) -> None:
    with pytest.raises(error, match=match):
        await queue.upsert_job_scheduler("s1", **options)
    assert await client.keys(queue.keys.base + "*") == []
    assert await queue.get_job_schedulers() == []


# ----- upsert, change, remove (no worker: the pending firing is inspected directly) ---------


async def _delayed_ids(queue: Queue) -> list[str]:
    return await queue.get_job_ids("delayed", 0, 100)


async def test_concurrent_upserts_leave_one_scheduler_and_one_firing(
        queue: Queue, redis_url: str) -> None:
    start = time.time() + 3600
    queues = [Queue(queue.name, url=redis_url) for _ in range(10)]
    try:
        results = await asyncio.gather(*(
            q.upsert_job_scheduler("hourly", cron="0 * * * *", tz="Europe/Berlin",
                                   job_name="sync", data={"a": 1}, start_date=start)
            for q in queues))
    finally:
        for q in queues:
            await q.close()
    assert len({r.pending_job_id for r in results}) == 1
    assert len({r.generation for r in results}) == 1
    [sched] = await queue.get_job_schedulers()
    assert await queue.get_job_scheduler("hourly") == sched
    assert await queue.get_job_scheduler("daily") is None
    assert sched.id == "hourly" and sched.cron == "0 * * * *" and sched.tz == "Europe/Berlin"
    assert sched.next_run is not None and sched.next_run >= start
    assert sched.next_run % 3600 == 0 and sched.iterations == 0 and not sched.ended
    assert await _delayed_ids(queue) == [sched.pending_job_id]
    # Nine of the ten were no-ops: one generation, one firing ever added, none replaced.
    assert sched.generation == 1
    events = [f for _, f in await queue.redis.xrange(queue.keys.events)]
    assert [f[b"ev"] for f in events] == [b"added", b"delayed"]
    job = await queue.get_job(sched.pending_job_id or "")
    assert job is not None and job.name == "sync" and job.data == {"a": 1}
    assert job.delay_until == sched.next_run


async def test_changing_the_pattern_replaces_the_pending_firing(queue: Queue) -> None:
    start = time.time() + 3600
    first = await queue.upsert_job_scheduler("s", every=60.0, start_date=start)
    same = await queue.upsert_job_scheduler("s", every=60.0, start_date=start)
    assert same.pending_job_id == first.pending_job_id and same.generation == first.generation
    second = await queue.upsert_job_scheduler("s", cron="30 4 * * *", tz="UTC", start_date=start)
    assert second.generation > first.generation
    assert second.pending_job_id != first.pending_job_id
    assert await queue.get_job(first.pending_job_id or "") is None
    assert await _delayed_ids(queue) == [second.pending_job_id]
    assert second.next_run is not None and second.next_run % 86400 == 4 * 3600 + 1800
    # A new template (same timing) keeps the schedule and updates the pending firing.
    third = await queue.upsert_job_scheduler("s", cron="30 4 * * *", tz="UTC", start_date=start,
                                             job_name="other", data=[1, 2],
                                             job_options={"attempts": 4})
    assert third.pending_job_id == second.pending_job_id and third.job_options == {"attempts": 4}
    job = await queue.get_job(third.pending_job_id or "")
    assert job is not None and job.name == "other" and job.data == [1, 2]
    assert job.opts.attempts == 4


async def test_remove_then_upsert_again_creates_a_new_firing(queue: Queue, client: Any) -> None:
    start = time.time() + 3600
    first = await queue.upsert_job_scheduler("s", every=60.0, start_date=start)
    assert await queue.remove_job_scheduler("s") is True
    assert await queue.remove_job_scheduler("s") is False
    assert await queue.get_job(first.pending_job_id or "") is None
    assert await queue.get_job_schedulers() == []
    assert [k for k in await client.keys(queue.keys.base + ":sch*")] == []
    # BullMQ #3063: the same fire time again must still produce a job, even if a job of the
    # old scheduler with that fire time is retained (here: re-created by hand as completed).
    await client.hset(queue.keys.job(first.pending_job_id or ""), mapping={"st": "completed"})
    again = await queue.upsert_job_scheduler("s", every=60.0, start_date=start)
    assert again.next_run == first.next_run
    assert again.pending_job_id != first.pending_job_id
    assert await _delayed_ids(queue) == [again.pending_job_id]


async def test_remove_all_leaves_no_scheduler_keys(queue: Queue, client: Any) -> None:
    await queue.upsert_job_scheduler("a", every=60.0, start_date=time.time() + 60)
    await queue.upsert_job_scheduler("b", cron="0 3 * * *", tz="Europe/Berlin")
    assert len(await _delayed_ids(queue)) == 2
    assert await remove_all_job_schedulers(queue, batch=1) == 2
    assert await _delayed_ids(queue) == []
    assert await client.keys(queue.keys.base + ":sch*") == []
    assert await queue.get_job_schedulers() == []


# ----- the fetch hook, driven by the real fetch script ------------------------------------


async def _take_with_tokens(queue: Queue, count: int = 10) -> list[tuple[str, str]]:
    reply = await queue._run("fetch", [count, 30000, "test-worker", 0, 0, 1000])
    body = reply[HEADER:]  # after the header (see lua/includes/take.lua)
    return [(body[i].decode(), body[i + 1].decode()) for i in range(0, len(body), JOB_FIELDS)]


async def _take(queue: Queue, count: int = 10) -> list[str]:
    return [job_id for job_id, _ in await _take_with_tokens(queue, count)]


async def test_cron_firing_is_taken_and_the_next_one_made_in_the_same_script(
        queue: Queue, client: Any) -> None:
    s = await queue.upsert_job_scheduler("c", cron="* * * * *", data={"n": 1})
    times_key = queue.keys.base + ":sch:t:c"
    assert CRON_BATCH - 2 <= await client.zcard(times_key) <= CRON_BATCH
    first = s.pending_job_id or ""
    await queue.promote_job(first)  # do not wait a minute: make it due now
    [(taken, token)] = await _take_with_tokens(queue)
    assert taken == first
    after = await get_job_scheduler(queue, "c")
    assert after is not None and after.iterations == 1 and after.last_run == s.next_run
    assert after.next_run == (s.next_run or 0) + 60
    assert await _delayed_ids(queue) == [after.pending_job_id]
    # The firing fails and is retried at once: taking it again must not advance the schedule.
    retry = (first, token, "r", "boom", "", 0, -1, -1, "", "")
    reply = await queue._run("finish", [0, 30000, "test-worker", 0, 0, 1000, 0, 0, "c1", 1,
                                        *encode_results([retry])])
    assert reply[-1] == 1  # the result's status comes last
    assert await _take(queue) == [first]
    again = await get_job_scheduler(queue, "c")
    assert again is not None and again.iterations == 1
    assert again.pending_job_id == after.pending_job_id
    assert await _delayed_ids(queue) == [after.pending_job_id]
    # Nothing to refill yet: one cheap call, nothing done.
    assert await refill_due(queue) == 0


async def test_cron_list_running_low_is_topped_up_by_refill_due(queue: Queue, client: Any) -> None:
    s = await queue.upsert_job_scheduler("c", cron="*/5 * * * *", tz="Asia/Kolkata")
    times_key = queue.keys.base + ":sch:t:c"
    refill_key = queue.keys.base + ":schedulers:refill"
    await client.zremrangebyrank(times_key, 5, -1)
    await queue.promote_job(s.pending_job_id or "")
    assert await _take(queue) == [s.pending_job_id]
    low = await get_job_scheduler(queue, "c")
    assert low is not None and low.pending_job_id is not None
    assert await client.zscore(refill_key, "c") is not None  # marked while still running
    # Two workers refilling at once: both harmless, the list is one list.
    assert sum(await asyncio.gather(refill_due(queue), refill_due(queue))) >= 1
    times = [int(t) for t in await client.zrange(times_key, 0, -1)]
    assert len(times) >= CRON_BATCH - 1 and times[0] == round((low.next_run or 0) * 1000)
    assert {b - a for a, b in itertools.pairwise(times)} == {300_000}
    after = await get_job_scheduler(queue, "c")
    assert after is not None and after.pending_job_id == low.pending_job_id
    assert await client.zscore(refill_key, "c") is None


async def test_cron_list_is_refilled_when_low_and_after_running_dry(
        queue: Queue, client: Any) -> None:
    s = await queue.upsert_job_scheduler("c", cron="* * * * *")
    times_key = queue.keys.base + ":sch:t:c"
    refill_key = queue.keys.base + ":schedulers:refill"
    # Leave only the pending time: the next take runs the list dry.
    await client.zremrangebyrank(times_key, 1, -1)
    await queue.promote_job(s.pending_job_id or "")
    assert await _take(queue) == [s.pending_job_id]
    starved = await get_job_scheduler(queue, "c")
    assert starved is not None and starved.pending_job_id is None and not starved.ended
    assert await client.zscore(refill_key, "c") is not None
    assert await refill_due(queue) == 1
    fed = await get_job_scheduler(queue, "c")
    assert fed is not None and fed.pending_job_id is not None
    assert fed.next_run == (s.next_run or 0) + 60  # the schedule resumes where it stopped
    assert await client.zcard(times_key) >= CRON_BATCH - 2
    assert await client.zscore(refill_key, "c") is None
    assert await refill_due(queue) == 0  # and a second refill has nothing to do


async def test_cron_downtime_longer_than_the_stored_times_catches_up_once(
        queue: Queue, client: Any) -> None:
    s = await queue.upsert_job_scheduler("c", cron="* * * * *")
    pending = s.pending_job_id or ""
    times_key = queue.keys.base + ":sch:t:c"
    # Rewind: the pending firing was due 5 minutes ago, and every stored time has passed
    # too (a downtime longer than the list), so taking it leaves the list dry.
    now_ms = round(time.time() * 1000) // 60000 * 60000
    past = [now_ms - 60000 * k for k in range(5, 0, -1)]
    await client.hset(queue.keys.job(pending), "sft", past[0])
    await client.delete(times_key)
    await client.zadd(times_key, {str(t): t for t in past})
    await queue.promote_job(pending)
    assert await _take(queue) == [pending]  # the one catch-up run
    dry = await get_job_scheduler(queue, "c")
    assert dry is not None and dry.pending_job_id is None and dry.iterations == 1
    assert await refill_due(queue) == 1
    fed = await get_job_scheduler(queue, "c")
    # Resumes at the next minute after now: no second catch-up for the same downtime.
    assert fed is not None and (fed.next_run or 0) * 1000 > now_ms
    assert (fed.next_run or 0) % 60 == 0


async def test_missed_fire_times_once_runs_one_catch_up_then_resumes(queue: Queue) -> None:
    s = await queue.upsert_job_scheduler("e", every=0.1)  # first firing due at once
    anchor = s.next_run or 0
    # "Downtime": no worker takes anything while three more fire times pass.
    await wait_until(lambda: time.time() > anchor + 0.35, timeout=5, message="downtime")
    took_at = time.time()  # read before the take, so a slow test cannot move it later
    assert await _take(queue) == [s.pending_job_id]  # the one catch-up run
    after = await get_job_scheduler(queue, "e")
    assert after is not None and after.iterations == 1
    nxt = after.next_run or 0
    assert nxt > took_at - 0.002  # resumes after the take: missed ones are dropped
    assert round((nxt - anchor) * 1000) % 100 == 0  # ...on the original grid: no drift
    assert len(await _delayed_ids(queue)) + len(await queue.get_job_ids("waiting")) == 1


async def test_missed_firing_is_dropped_with_skip_when_the_hook_may_drop(queue: Queue) -> None:
    s = await queue.upsert_job_scheduler("e", every=0.1, catch_up="skip")
    anchor = s.next_run or 0
    await wait_until(lambda: time.time() > anchor + 0.35, timeout=5, message="downtime")
    # What take_jobs does with the proposed hook call (`can_drop`): pop, then ask the hook.
    source = scripts.eval_source(
        "local id = ARGV[2]; local jk = JP .. id\n"
        "unlink_job(jk, id)\n"
        "return scheduler_on_take(jk, id, now_ms(), true) and 1 or 0\n")
    pending = s.pending_job_id or ""
    took_at = time.time()
    dropped = await queue.redis.eval(source, len(queue.keys.vector), *queue.keys.vector,
                                     queue.keys.job_prefix, pending)
    assert dropped == 1
    assert await queue.get_job(pending) is None
    after = await get_job_scheduler(queue, "e")
    assert after is not None and after.iterations == 0 and after.skipped == 1
    assert (after.next_run or 0) > took_at - 0.002
    # Through the real fetch script: it drops the late firing if it lets the hook drop jobs,
    # else (the hook call without `can_drop`) the late firing runs, as with "once".
    late = after.pending_job_id or ""
    await wait_until(lambda: time.time() > (after.next_run or 0) + 0.25, timeout=5)
    hook_may_drop = "scheduler_on_take(jk, id, now, true" in scripts.script("fetch").source
    assert await _take(queue) == ([] if hook_may_drop else [late])
    final = await get_job_scheduler(queue, "e")
    assert final is not None and final.skipped == (2 if hook_may_drop else 1)
    assert (await queue.get_job(late) is None) == hook_may_drop


async def test_raising_the_limit_resumes_and_lowering_it_ends(queue: Queue) -> None:
    s = await queue.upsert_job_scheduler("e", every=0.05, limit=1)
    assert await _take(queue) == [s.pending_job_id]  # the first firing is due at once
    done = await get_job_scheduler(queue, "e")
    assert done is not None and done.ended and done.iterations == 1
    assert await _delayed_ids(queue) == []
    more = await queue.upsert_job_scheduler("e", every=0.05, limit=2)
    assert not more.ended and more.pending_job_id is not None
    assert (more.next_run or 0) > (done.last_run or 0)  # the schedule goes on, not repeats
    less = await queue.upsert_job_scheduler("e", every=0.05, limit=1)
    assert less.ended and less.pending_job_id is None
    assert await queue.get_job(more.pending_job_id) is None


async def test_a_pending_firing_deleted_by_hand_is_repaired(queue: Queue) -> None:
    s = await queue.upsert_job_scheduler("e", every=0.1)
    assert await queue.remove_job(s.pending_job_id or "") is True
    assert await refill_due(queue, grace=0.0) == 1
    fixed = await get_job_scheduler(queue, "e")
    assert fixed is not None and fixed.pending_job_id not in (None, s.pending_job_id)
    assert await queue.get_job(fixed.pending_job_id or "") is not None


# ----- with real workers -----------------------------------------------------------------


async def _fired(queue: Queue) -> dict[int, int]:
    raw = await queue.redis.hgetall(f"{queue.name}:fired")
    return {int(k): int(v) for k, v in raw.items()}


async def test_limit_and_end_date_stop_the_firings(queue: Queue, redis_url: str) -> None:
    async def record(job: Any) -> None:
        await queue.redis.hincrby(f"{queue.name}:fired", job.id, 1)

    end = time.time() + 0.45
    await queue.upsert_job_scheduler("lim", every=0.05, limit=3)
    await queue.upsert_job_scheduler("end", every=0.1, end_date=end)
    worker = Worker(queue.name, record, url=redis_url, block_timeout=0.2)
    task = asyncio.create_task(worker.run())

    async def both_ended() -> bool:
        return all(s.ended for s in await queue.get_job_schedulers())

    await wait_until(both_ended, timeout=5, message="both schedulers ended")
    await wait_until(lambda: _idle(queue), timeout=5, message="firings finished")
    await worker.close()
    await task
    fired = await queue.redis.hgetall(f"{queue.name}:fired")
    lim = [k for k in fired if b":lim:" in k]
    ends = [int(k.rsplit(b":", 1)[1]) for k in fired if b":end:" in k]
    assert len(lim) == 3 and all(v == b"1" for v in fired.values())
    assert 3 <= len(ends) <= 5 and max(ends) <= end * 1000
    by_id = {s.id: s for s in await queue.get_job_schedulers()}
    assert by_id["lim"].iterations == 3 and by_id["lim"].next_run is None
    assert by_id["end"].next_run is None and await _delayed_ids(queue) == []


async def _idle(queue: Queue) -> bool:
    stats = await queue.get_stats()
    return stats["waiting"] == 0 and stats["active"] == 0


async def test_three_upserters_and_three_workers_fire_each_time_exactly_once(
        queue: Queue, redis_url: str) -> None:
    from scheduler_procs import upsert_main, worker_main

    ctx = multiprocessing.get_context("spawn")
    go = ctx.Event()
    readies = [ctx.Event() for _ in range(3)]
    upserters = [ctx.Process(target=upsert_main, args=(redis_url, queue.name, go, 0.5))
                 for _ in range(3)]
    workers = [ctx.Process(target=worker_main, args=(redis_url, queue.name, r)) for r in readies]
    procs = upserters + workers
    for p in procs:
        p.start()
    try:
        await wait_until(lambda: all(r.is_set() for r in readies), timeout=20,
                         message="workers started")
        go.set()
        for p in upserters:
            await asyncio.to_thread(p.join, 20)
            assert p.exitcode == 0

        async def enough() -> bool:
            return len(await _fired(queue)) >= 7  # about 3.5 s of firings

        await wait_until(enough, timeout=15, message="seven firings processed")
    finally:
        await queue.redis.rpush(f"{queue.name}:stop", *range(len(workers)))
        for p in workers:
            await asyncio.to_thread(p.join, 20)
        for p in procs:
            if p.is_alive():
                p.kill()
    assert all(p.exitcode == 0 for p in workers)
    fired = await _fired(queue)
    times = sorted(fired)
    # Exactly once each, and none missing: consecutive fire times are one period apart.
    assert all(n == 1 for n in fired.values()), fired
    assert {b - a for a, b in itertools.pairwise(times)} == {500}, times
    # The first fire time is the upsert (every: the first run is immediate).
    created = await queue.redis.hget(queue.keys.base + ":sch:h:tick", "created")
    assert times[0] == int(created)
    # One scheduler, one generation: the two losing upserts changed nothing.
    [sched] = await queue.get_job_schedulers()
    assert sched.iterations >= len(times) and sched.generation == 1
    late = [int(v) for v in (await queue.redis.hgetall(f"{queue.name}:late")).values()]
    assert min(late) >= 0
