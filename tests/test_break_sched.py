"""Break tests for job schedulers and deduplication (docs/guide/schedulers.md,
docs/guide/queue.md "dedup"): the ways BullMQ repeatable jobs, Celery beat and arq cron
break for their users, tried against minique. Each test up to the "attacks that pass" line
failed on the code before its fix; the others are regression guards.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import time
from typing import Any

import pytest
from driver import HEADER, JOB_FIELDS

from minique import Queue
from minique.scheduler import get_job_scheduler, refill_due


async def _take(queue: Queue, count: int = 10) -> list[str]:
    """Takes up to ``count`` jobs with the real fetch script (as a worker does)."""
    reply = await queue._run("fetch", [count, 30000, "break-sched", 0, 0, 1000])
    body = reply[HEADER:]
    return [body[i].decode() for i in range(0, len(body), JOB_FIELDS)]


async def _run_pending(queue: Queue, sid: str) -> str:
    """Makes the scheduler's pending firing due now and takes it; returns its id."""
    s = await get_job_scheduler(queue, sid)
    assert s is not None and s.pending_job_id is not None and not s.ended, s
    await queue.promote_job(s.pending_job_id)
    assert await _take(queue) == [s.pending_job_id]
    return s.pending_job_id


# ----- found broken, fixed ----------------------------------------------------------------


async def test_a_later_end_date_lets_a_running_cron_scheduler_go_on(queue: Queue) -> None:
    """A cron scheduler whose end date is moved later by a new upsert (same timing) must
    fire past the old end date. The time list had been cut at the old end and marked
    exhausted, and an upsert with the same timing kept both: the scheduler ended at the
    old end date anyway."""
    now = time.time()
    await queue.upsert_job_scheduler("c", cron="* * * * *", end_date=now + 150)
    later = await queue.upsert_job_scheduler("c", cron="* * * * *", end_date=now + 3600)
    assert later.end_date == pytest.approx(now + 3600, abs=0.01)
    for _ in range(6):  # two or three fire times were left before the old end date
        await _run_pending(queue, "c")
    s = await get_job_scheduler(queue, "c")
    assert s is not None and not s.ended and s.iterations == 6


async def test_a_later_end_date_resumes_an_ended_cron_scheduler(queue: Queue) -> None:
    """The same for a cron scheduler that has already ended at its end date ("an ended
    scheduler stays listed"; a later end date or no end date lets it go on)."""
    now = time.time()
    await queue.upsert_job_scheduler("c", cron="* * * * *", end_date=now + 90)
    for _ in range(3):
        s = await get_job_scheduler(queue, "c")
        assert s is not None
        if s.ended:
            break
        await _run_pending(queue, "c")
    ended = await get_job_scheduler(queue, "c")
    assert ended is not None and ended.ended and ended.pending_job_id is None
    resumed = await queue.upsert_job_scheduler("c", cron="* * * * *")  # no end date now
    assert not resumed.ended and resumed.pending_job_id is not None
    assert (resumed.next_run or 0) > (ended.last_run or 0)
    for _ in range(3):
        await _run_pending(queue, "c")


async def test_a_refill_computed_for_the_old_end_date_does_not_end_the_scheduler(
        queue: Queue, client: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    """A worker's refill reads the schedule, computes times in Python and stores them in a
    second call; an upsert that moved the end date in between made that refill store a list
    cut at the old end date, marked exhausted (same generation), so the scheduler ended
    there. A refill computed for another end date is ignored now."""
    now = time.time()
    await queue.upsert_job_scheduler("c", cron="* * * * *", end_date=now + 66.5 * 60)
    times_key = queue.keys.base + ":sch:t:c"
    await client.zremrangebyrank(times_key, 5, -1)  # ran low: the next refill ends at the end
    await client.zadd(queue.keys.base + ":schedulers:refill", {"c": 0})
    run = queue._run
    moved = False

    async def upsert_between(name: str, *args: Any, **kw: Any) -> Any:
        nonlocal moved
        if name == "refill_scheduler" and not moved:
            moved = True
            await queue.upsert_job_scheduler("c", cron="* * * * *")  # no end date any more
        return await run(name, *args, **kw)

    monkeypatch.setattr(queue, "_run", upsert_between)
    await refill_due(queue)
    assert moved
    s = await get_job_scheduler(queue, "c")
    assert s is not None and s.end_date is None and not s.ended
    assert await client.hget(queue.keys.base + ":sch:h:c", "exhausted") == b"0"
    assert await client.zcard(times_key) >= 60


async def test_dedup_in_a_schedulers_job_options_is_refused(queue: Queue, client: Any) -> None:
    """``job_options={"dedup": ...}`` on a scheduler was accepted and silently ignored: the
    firings never claimed the dedup id (BullMQ leaves deduplication out of a scheduler's
    template too). It is refused like ``delay`` and ``job_id``, and nothing is written."""
    with pytest.raises(TypeError, match="dedup"):
        await queue.upsert_job_scheduler("d", every=60.0, job_options={"dedup": {"id": "x"}})
    assert await client.keys(queue.keys.base + "*") == []


async def test_a_new_template_reaches_a_firing_that_is_due_but_not_taken(queue: Queue) -> None:
    """Upserting again with the same timing updates the template "in place", pending firing
    included. An every-N scheduler's first firing is due at once (waiting, not delayed):
    it kept the old name, data and priority, so a deploy that changed the template still
    ran the old one first."""
    s = await queue.upsert_job_scheduler("w", every=3600.0, job_name="old", data={"v": 1})
    assert await queue.get_state(s.pending_job_id or "") == "waiting"
    await queue.add("other", 0)  # a job before it in line
    again = await queue.upsert_job_scheduler("w", every=3600.0, job_name="new", data={"v": 2},
                                             job_options={"priority": 5})
    assert again.pending_job_id == s.pending_job_id  # the same firing, not a second one
    job = await queue.get_job(s.pending_job_id or "")
    assert job is not None and (job.name, job.data, job.priority) == ("new", {"v": 2}, 5)
    assert job.state == "waiting"
    # The new priority is in force (a prioritized job runs before plain ones), and the
    # firing is taken once, with its new template.
    assert (await queue.get_stats())["waiting"] == 2
    assert await _take(queue, 1) == [s.pending_job_id]


async def test_a_new_group_reaches_the_pending_firing(queue: Queue) -> None:
    """The template's group (``job_options={"group": ...}``) is part of the template: a
    delayed pending firing kept the group it was made with."""
    start = time.time() + 3600
    s = await queue.upsert_job_scheduler("g", every=60.0, start_date=start)
    await queue.upsert_job_scheduler("g", every=60.0, start_date=start,
                                     job_options={"group": "acct-1"})
    job = await queue.get_job(s.pending_job_id or "")
    assert job is not None and job.group == "acct-1"
    await queue.upsert_job_scheduler("g", every=60.0, start_date=start)
    job = await queue.get_job(s.pending_job_id or "")
    assert job is not None and job.group is None
    # A waiting firing moves into the group (and is taken from there, once).
    w = await queue.upsert_job_scheduler("w", every=3600.0)
    await queue.upsert_job_scheduler("w", every=3600.0, job_options={"group": "acct-2"})
    job = await queue.get_job(w.pending_job_id or "")
    assert job is not None and job.group == "acct-2" and job.state == "waiting"
    assert (await queue.get_stats())["waiting"] == 1
    assert await _take(queue) == [w.pending_job_id]
    assert await _take(queue) == []


async def test_a_lost_firing_is_repaired_behind_many_overdue_schedulers(queue: Queue) -> None:
    """The maintenance repair looked at the first ``batch`` overdue schedulers only. When
    more than that many are overdue with their firing still waiting (a queue that is behind,
    or paused), a scheduler further on whose firing was lost (removed by hand, cleaned) was
    never repaired: it stayed dead however often the workers ran their upkeep."""
    for i in range(3):
        await queue.upsert_job_scheduler(f"s{i}", every=3600.0)  # each due at once, waiting
    lost = await get_job_scheduler(queue, "s2")  # the last of the three in the index
    assert lost is not None and lost.pending_job_id is not None
    assert await queue.remove_job(lost.pending_job_id) is True
    for _ in range(3):  # a few rounds of upkeep, two schedulers per call
        await refill_due(queue, batch=2, grace=0.0)
    fixed = await get_job_scheduler(queue, "s2")
    assert fixed is not None and fixed.pending_job_id is not None
    assert await queue.get_job(fixed.pending_job_id) is not None
    # The others were never touched: their firings still wait.
    for sid in ("s0", "s1"):
        s = await get_job_scheduler(queue, sid)
        assert s is not None and await queue.get_state(s.pending_job_id or "") == "waiting"


class _FastClock:
    """Stands in for the ``time`` module of minique.scheduler: this machine's clock runs
    ``ahead`` seconds fast (the Redis server's clock is the schedule's clock)."""

    def __init__(self, ahead: float) -> None:
        self.ahead = ahead

    def time(self) -> float:
        return time.time() + self.ahead


async def test_a_worker_clock_running_fast_does_not_skip_cron_fire_times(
        queue: Queue, client: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    """A refill computed its times after max(server clock, this machine's clock): a worker
    whose clock ran a day fast stored the next time and then the times after *its* now,
    so the scheduler skipped a day of fire times (every firing is decided on the server's
    clock). Refills and upserts use the server's clock."""
    import minique.scheduler as scheduler_module

    await queue.upsert_job_scheduler("c", cron="*/5 * * * *")
    times_key = queue.keys.base + ":sch:t:c"
    await client.zremrangebyrank(times_key, 5, -1)
    await client.zadd(queue.keys.base + ":schedulers:refill", {"c": 0})
    monkeypatch.setattr(scheduler_module, "time", _FastClock(86400), raising=False)
    assert await refill_due(queue) == 1
    times = [int(t) for t in await client.zrange(times_key, 0, -1)]
    assert len(times) >= 60
    assert {b - a for a, b in itertools.pairwise(times)} == {300_000}, "a gap"


async def test_an_upsert_from_a_client_whose_clock_runs_fast_fires_on_time(
        queue: Queue, monkeypatch: pytest.MonkeyPatch) -> None:
    """The upsert computed the cron times from its own clock less a minute: from a client an
    hour fast, the first firing came an hour late (the fire times before were skipped)."""
    import minique.scheduler as scheduler_module

    monkeypatch.setattr(scheduler_module, "time", _FastClock(3600), raising=False)
    before = time.time()
    s = await queue.upsert_job_scheduler("c", cron="* * * * *")
    assert s.next_run is not None and before < s.next_run <= before + 61


# ----- attacks that pass (regression guards) ----------------------------------------------


async def test_racing_upserts_of_different_specs_and_removes_leave_one_pending_firing(
        queue: Queue, redis_url: str) -> None:
    """Many clients upsert different specs of one scheduler id and remove it, all at once:
    afterwards either no scheduler and no firing, or one scheduler whose one pending firing
    is the only firing not yet taken (no orphan of a losing spec or a removed one)."""
    clients = [Queue(queue.name, url=redis_url) for _ in range(6)]
    specs: list[dict[str, Any]] = [
        {"every": 0.5}, {"every": 60.0, "data": {"v": 2}}, {"cron": "*/5 * * * *"},
        {"cron": "0 3 * * *", "tz": "Europe/Helsinki"}, {"every": 1.0, "job_name": "x"}]

    async def one(i: int) -> None:
        q = clients[i % len(clients)]
        if i % 7 == 3:
            await q.remove_job_scheduler("s")
            return
        # LookupError: removed by another client right after the upsert (documented).
        with contextlib.suppress(LookupError):
            await q.upsert_job_scheduler("s", **specs[i % len(specs)])

    try:
        for _ in range(5):
            await asyncio.gather(*(one(i) for i in range(40)))
            s = await get_job_scheduler(queue, "s")
            pending = set(await queue.get_job_ids("delayed", 0, 100)
                          + await queue.get_job_ids("waiting", 0, 100))
            if s is None:
                assert pending == set()
            else:
                assert s.pending_job_id is not None and pending == {s.pending_job_id}
    finally:
        for c in clients:
            await c.close()


@pytest.mark.parametrize("did", ["a:b", "a|b|c", "7|re|x", "{tag}", "ünï😀", "\n", "x" * 512])
async def test_odd_dedup_ids_dedupe_and_are_released(queue: Queue, did: str) -> None:
    from driver import complete, fetch, finish

    first = await queue.add("x", 1, dedup={"id": did})
    assert (await queue.add("x", 2, dedup={"id": did})).id == first.id
    other = await queue.add("x", 3, dedup={"id": did[:-1] + "#"})
    assert other.id != first.id
    await queue.remove_job(other.id)
    [(jid, tok)] = await fetch(queue)
    assert jid == first.id
    await finish(queue, [complete(jid, tok)])
    assert (await queue.add("x", 4, dedup={"id": did})).id != first.id


async def _held_firing(queue: Queue) -> tuple[str, str]:
    """A scheduler whose first firing is due now, held by worker "w" as an earlier version
    held firings (driver.legacy_held_firing: firings are never held now)."""
    from driver import legacy_held_firing, take

    made = await queue.upsert_job_scheduler("s", every=60.0)
    firing = made.pending_job_id or ""
    assert await queue.get_state(firing) == "waiting"
    assert await take(queue, "w", 0, 1) is not None
    assert await queue.redis.hget(queue.keys.job(firing), "st") == b"waiting"  # never held
    held, token = await legacy_held_firing(queue)
    assert held == firing
    return firing, token


async def test_removing_a_scheduler_withdraws_a_firing_a_worker_holds(queue: Queue) -> None:
    """Found by the break run: a firing a worker had prefetched but not started (waiting, to
    the user) was handed off to the worker when it was taken, so remove_job_scheduler did not
    withdraw it and it ran after the scheduler was gone. A firing fetched one job at a time
    would have been waiting, and withdrawn. Now the removal asks the holder to hand it back,
    waits for the answer, and the firing is deleted."""
    from driver import asking_holders, finish

    firing, token = await _held_firing(queue)
    removing = await asking_holders(queue, queue.remove_job_scheduler("s"))
    statuses, _, _ = await finish(queue, [(firing, token, "h", "", "", 0, -1, -1, "")],
                                  worker="w")
    assert statuses == [2]  # gone: removed
    assert await asyncio.wait_for(removing, 10) is True
    assert await queue.get_job(firing) is None
    assert await queue.get_job_schedulers() == []


async def test_a_held_firing_that_had_started_runs_on_after_its_scheduler_is_removed(
        queue: Queue) -> None:
    """The other order: its worker had started the firing before the removal reached it.
    It runs on, as a started firing does; the scheduler is gone."""
    from driver import asking_holders, finish

    firing, token = await _held_firing(queue)
    removing = await asking_holders(queue, queue.remove_job_scheduler("s"))
    now = await queue.redis.time()
    ms = str(int(now[0]) * 1000 + int(now[1]) // 1000)
    statuses, _, _ = await finish(queue, [(firing, token, "s", "", "", 0, -1, -1, ms)],
                                  worker="w")
    assert statuses == [1]
    assert await asyncio.wait_for(removing, 10) is True
    assert await queue.get_state(firing) == "active"
    assert await queue.get_job_schedulers() == []


async def test_schedulers_no_worker_can_compute_do_not_hide_the_others_from_the_top_ups(
        queue: Queue, client: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    """Found by the break run: the top-ups read the first `batch` schedulers of the refill
    set, and one that this worker cannot compute for (a time zone unknown on its machine) is
    skipped and stays there. `batch` of them at the head hid every scheduler behind them: a
    cron scheduler there ran dry. The top-ups go round the set now (meta 'rfo')."""
    import minique.scheduler as sched

    refill = queue.keys.base + ":schedulers:refill"
    for i, (sid, tz) in enumerate([("b1", "Europe/Berlin"), ("b2", "Europe/Berlin"),
                                   ("b3", "Europe/Berlin"), ("u", "UTC")]):
        await queue.upsert_job_scheduler(sid, cron="* * * * *", tz=tz)
        await client.zremrangebyrank(queue.keys.base + f":sch:t:{sid}", 5, -1)  # ran low
        await client.zadd(refill, {sid: i + 1})
    compute = sched._cron_batch

    def unknown_berlin(cron: str, tz: str, *args: Any) -> Any:
        if tz == "Europe/Berlin":
            raise ValueError("unknown time zone on this machine")
        return compute(cron, tz, *args)

    monkeypatch.setattr(sched, "_cron_batch", unknown_berlin)
    for _ in range(4):  # each call looks at 2: round the set of 4 in 2 calls
        await refill_due(queue, batch=2)
        if await client.zcard(queue.keys.base + ":sch:t:u") > 5:
            break
    assert await client.zcard(queue.keys.base + ":sch:t:u") >= 60, "u never topped up"
    assert await client.zscore(refill, "u") is None
    assert await client.zcard(refill) == 3  # the Berlin ones wait for a worker that can


async def test_a_new_template_reaches_a_firing_a_worker_holds(queue: Queue) -> None:
    """A firing a worker had taken to hold ahead of its start (waiting, to the user) kept
    the old template: the upsert refreshed only the scheduler's next firing. Now it is
    given the new template too, its holder is asked to hand it back, and the upsert returns
    once it has: taken again, it runs with the new template."""
    from driver import asking_holders, finish

    firing, token = await _held_firing(queue)
    upserting = await asking_holders(queue, queue.upsert_job_scheduler(
        "s", every=60.0, job_name="new-name", data={"v": 2}))
    assert not upserting.done()  # waits for the holder's answer
    statuses, _, _ = await finish(queue, [(firing, token, "h", "", "", 0, -1, -1, "")],
                                  worker="w")
    assert statuses == [1]
    await asyncio.wait_for(upserting, 10)
    job = await queue.get_job(firing)
    assert job is not None and job.state == "waiting"
    assert (job.name, job.data) == ("new-name", {"v": 2})


async def test_a_new_timing_withdraws_a_firing_a_worker_holds(queue: Queue) -> None:
    """A new timing withdraws the old generation's pending firing; one a worker holds ahead
    of its start is pending too: withdrawn (handed back and deleted), and the upsert waits
    for that."""
    from driver import asking_holders, finish

    firing, token = await _held_firing(queue)
    upserting = await asking_holders(queue, queue.upsert_job_scheduler("s", every=120.0))
    statuses, _, _ = await finish(queue, [(firing, token, "h", "", "", 0, -1, -1, "")],
                                  worker="w")
    assert statuses == [2]  # gone: withdrawn
    made = await asyncio.wait_for(upserting, 10)
    assert await queue.get_job(firing) is None
    assert made.pending_job_id and made.pending_job_id != firing
