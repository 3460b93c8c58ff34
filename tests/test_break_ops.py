"""Break tests of queue operations (retries and backoff, priorities, clean), as users
report them against BullMQ, Celery and arq. Each test up to the "attacks that pass" line
failed on the code before its fix."""

from __future__ import annotations

import asyncio
import re
import time
from collections.abc import Callable
from typing import Any

import pytest
from driver import complete, fetch, finish
from helpers import wait_until
from resend import held_replies, proxied_queue

from minique import PayloadError, Queue, Worker
from minique.options import MAX_PRIORITY, MAX_SECONDS
from minique.server import RedisServer

# ----- retries: the delay a backoff gives ------------------------------------------------


async def _boom(job: Any) -> None:
    raise RuntimeError("boom")


@pytest.mark.parametrize("returns", ["raises", "text", "inf", "nan"])
async def test_a_backoff_strategy_that_fails_fails_its_job_and_the_worker_goes_on(
        queue: Queue, redis_url: str, returns: str) -> None:
    """docs/guide/retries.md: a custom strategy returns seconds or None. One that raises
    (a bug in it), or returns no number of seconds ('abc', inf, nan), raised out of the
    worker's runner task: the job stayed active until its lease ran out and ran again as
    stalled, and the runner was gone ("Task exception was never retrieved"), so a worker
    of concurrency 1 took no job again. Expected: the job fails now with a reason that
    names the strategy (as one not registered does), and the worker goes on."""
    strategies: dict[str, Callable[..., Any]] = {
        "raises": lambda n, err, job: 1 / 0, "text": lambda n, err, job: "abc",
        "inf": lambda n, err, job: float("inf"), "nan": lambda n, err, job: float("nan")}

    async def work(job: Any) -> str:
        if job.name == "bad":
            raise RuntimeError("boom")
        return "ok"

    bad = await queue.add("bad", 1, attempts=3, backoff={"type": "mine"})
    w = Worker(queue.name, work, url=redis_url, concurrency=1,
               backoff_strategies={"mine": strategies[returns]})
    task = asyncio.create_task(w.run(handle_signals=False))
    try:
        await wait_until(lambda: _state_is(queue, bad.id, "failed"), timeout=5,
                         message="the job failed")
        failed = await queue.get_job(bad.id)
        assert failed is not None and failed.failed_reason is not None
        assert "boom" in failed.failed_reason and "'mine'" in failed.failed_reason
        good = await queue.add("good", 2)
        assert await good.wait_until_finished(timeout=5) == "ok"
    finally:
        await w.close(timeout=2)
        await task


@pytest.mark.parametrize("backoff,made", [({"type": "exponential", "delay": 1}, 60),
                                          ({"type": "exponential", "delay": 1}, 1500),
                                          ({"type": "mine"}, 0)])
async def test_a_retry_delay_past_ten_years_waits_ten_years(
        queue: Queue, redis_url: str, backoff: dict[str, Any], made: int) -> None:
    """Exponential backoff without max_delay doubles for ever: by attempt 45 (attempts=100,
    a 'retry for ever' setting) the delay in ms, times 4096 in the delayed score, passed
    what Lua's string.format('%d') holds, the job's due time became -2^63, and the job
    was retried at once, every attempt after in a hot loop. Past attempt 1025 the worker
    raised OverflowError (int too large to convert to float) instead; a custom strategy
    returning 1e20 s did the same as the first. Expected: a retry delay is at most 10
    years, as every other time minique takes (delay, Delayed, RateLimited)."""
    job = await queue.add("x", 1, attempts=made + 5, backoff=backoff)
    if made:
        await queue.redis.hset(queue.keys.job(job.id), "atm", made)
    w = Worker(queue.name, _boom, url=redis_url, concurrency=1,
               backoff_strategies={"mine": lambda n, err, job: 1e20})
    task = asyncio.create_task(w.run(handle_signals=False))
    try:
        await wait_until(lambda: _state_is(queue, job.id, "delayed"), timeout=5,
                         message="the job waits for its retry")
        fresh = await queue.get_job(job.id)
        assert fresh is not None and fresh.attempts_made == made + 1
        due = fresh.delay_until
        assert due is not None
        assert time.time() + MAX_SECONDS - 60 < due <= time.time() + MAX_SECONDS + 1
    finally:
        await w.close(timeout=2)
        await task


async def _state_is(queue: Queue, job_id: str, state: str) -> bool:
    return await queue.get_state(job_id) == state


# ----- priorities ---------------------------------------------------------------------------


@pytest.mark.parametrize("group", [None, "g"])
async def test_jobs_of_the_highest_priority_number_accepted_run_in_the_order_added(
        queue: Queue, redis_url: str, group: str | None) -> None:
    """docs/guide/queue.md accepted priorities 0..2^21, and equal priorities run FIFO. A
    job's score is priority * 2^32 + sequence, exact in a double only below 2^53: at
    priority 2^21 the sequence was rounded off (scores 2^53, 2^53+2, 2^53+4 three times,
    ...), and jobs whose scores tied ran in the order of their ids, not of their adds.
    Expected: every priority that add() accepts keeps FIFO (with or without a group)."""
    ids = [f"job-{c}" for c in "zyxwvutsrqponmlk"]
    for job_id in ids:
        await queue.add("x", 1, job_id=job_id, priority=MAX_PRIORITY, group=group)
    order: list[str] = []

    async def work(job: Any) -> None:
        order.append(job.id)

    w = Worker(queue.name, work, url=redis_url, concurrency=1)
    task = asyncio.create_task(w.run(handle_signals=False))
    try:
        await wait_until(lambda: len(order) == len(ids), timeout=5, message="every job ran")
    finally:
        await w.close(timeout=2)
        await task
    assert order == ids


class _Unprintable(Exception):
    def __str__(self) -> str:
        raise ValueError("no text for you")


async def test_an_error_that_cannot_be_printed_fails_its_job_and_the_worker_goes_on(
        queue: Queue, redis_url: str) -> None:
    """The same class as the backoff strategy's: a processor's exception whose __str__
    raises (a library's exception built with arguments its __str__ does not expect) made
    the worker's reason line raise out of its runner task: the job stayed active until
    it stalled and a concurrency-1 worker took no job again. Expected: the job fails
    with a reason naming the exception's type."""
    async def work(job: Any) -> str:
        if job.name == "bad":
            raise _Unprintable()
        return "ok"

    bad = await queue.add("bad", 1)
    w = Worker(queue.name, work, url=redis_url, concurrency=1)
    task = asyncio.create_task(w.run(handle_signals=False))
    try:
        await wait_until(lambda: _state_is(queue, bad.id, "failed"), timeout=5,
                         message="the job failed")
        failed = await queue.get_job(bad.id)
        assert failed is not None and "_Unprintable" in (failed.failed_reason or "")
        good = await queue.add("good", 2)
        assert await good.wait_until_finished(timeout=5) == "ok"
    finally:
        await w.close(timeout=2)
        await task


# ----- clean: every old job is reached --------------------------------------------------------


async def _old_then_new(queue: Queue, old: str, old_options: dict[str, Any], new: str,
                        new_options: dict[str, Any]) -> None:
    """Adds job ``old`` made to look created 2 h ago (its 'ts', which job.timestamp reads),
    then 150 jobs ``<new><i>`` added now."""
    await queue.add("x", 1, job_id=old, **old_options)
    await queue.redis.hset(queue.keys.job(old), "ts", int((time.time() - 7200) * 1000))
    await queue.add_bulk([("x", i, {"job_id": f"{new}{i}", **new_options}) for i in range(150)])


async def test_clean_delayed_reaches_an_old_job_due_after_newer_ones(queue: Queue) -> None:
    """clean(grace, "delayed", limit) looked only at the first `limit` delayed jobs by due
    time and kept those created after the cutoff: an old job due after them (a long delay
    added two hours ago, behind jobs added now with short ones) was never reached, and the
    call returned [] although a job older than the grace was there. Expected: it is removed,
    whatever the limit and however many newer jobs are due before it."""
    await _old_then_new(queue, "old", {"delay": 7200}, "new", {"delay": 60})
    assert await queue.clean(3600, "delayed", limit=1) == ["old"]
    await _old_then_new(queue, "old2", {"delay": 7200}, "newer", {"delay": 60})
    assert await queue.clean(3600, "delayed") == ["old2"]
    assert (await queue.get_stats())["delayed"] == 300


async def test_clean_waiting_reaches_old_jobs_behind_newer_ones(queue: Queue) -> None:
    """The same for waiting jobs: prioritized ones were looked at only among the first
    `limit` by priority, so an old priority-5 job behind new priority-1 jobs stayed; and
    plain ones were taken from the ready stream by the time they entered it, so a job
    created hours ago and promoted (or retried) since was never old enough. Expected:
    clean(grace, "waiting") removes every waiting job created before the cutoff."""
    await _old_then_new(queue, "oldp", {"priority": 5}, "newp", {"priority": 1})
    assert await queue.clean(3600, "waiting", limit=1) == ["oldp"]
    await _old_then_new(queue, "promoted", {"delay": 600}, "new", {})
    await queue.promote_job("promoted")
    assert await queue.clean(3600, "waiting") == ["promoted"]
    assert (await queue.get_stats())["waiting"] == 300


# ----- re-adding an id ---------------------------------------------------------------------


@pytest.mark.parametrize("how", ["remove_job", "drain"])
async def test_an_id_removed_while_a_stuck_worker_held_it_can_be_added_again(
        queue: Queue, how: str) -> None:
    """A worker holds job a ahead and stops answering (a long GC pause, a frozen VM).
    remove_job("a") (or drain()) marks it removed and, once the hold has run out, returns:
    the job can no longer start. Its hash stayed until the worker handed it back or the
    stalled sweep took it back a lease later (30 s by default), and meanwhile add("a")
    found it and returned it as a duplicate: the new job was never added, no error, and
    the old one was deleted soon after; get_job("a") still found it. Expected: once the
    removal has returned, the job is gone, adding the id adds the new job, and the old
    holder's late hand-back does not touch it."""
    from driver import HEADER, JOB_FIELDS, take

    await queue.add("x", "first", job_id="a", group="g")
    await queue.add("x", "other", job_id="b")
    reply = await take(queue, "stuck", 0, 2, hold_ms=100)
    held = {reply[HEADER + i].decode(): reply[HEADER + 1 + i].decode()
            for i in range(0, len(reply) - HEADER, JOB_FIELDS)}
    assert set(held) == {"a", "b"}
    if how == "remove_job":
        assert await queue.remove_job("a") is True
    else:
        assert await queue.drain() == 2
    assert await queue.get_job("a") is None  # gone, as remove_job() and drain() said
    job = await queue.add("x", "second", job_id="a", group="g")
    assert (job.data, await queue.get_state("a")) == ("second", "waiting")
    fresh = await queue.get_job("a")
    assert fresh is not None and fresh.data == "second"
    # The stuck worker wakes up and hands back what it held: the new job is not its.
    statuses, _, _ = await finish(queue, [("a", held["a"], "h", b"", "", 0, -1, -1),
                                          ("b", held["b"], "h", b"", "", 0, -1, -1)],
                                  worker="stuck")
    assert statuses[0] == 0
    assert await queue.get_state("a") == "waiting"
    taken = await take(queue, "w2", 1, 0)  # its group was not left counting a hold
    assert taken[HEADER].decode() == "a"


# ----- bad arguments -------------------------------------------------------------------------


@pytest.mark.parametrize("count", [0, -1, True, 1.5, "2"])
async def test_promote_jobs_refuses_a_count_that_is_no_positive_integer(
        queue: Queue, count: Any) -> None:
    """retry_jobs(count=...) refuses a count that is no integer >= 1; promote_jobs took
    anything: 0 and -1 promoted nothing and said 0, True promoted one job, 1.5 came back
    as Redis' 'value is not an integer', '2' as a TypeError of a comparison. Expected: a
    ValueError naming the count, and nothing promoted."""
    await queue.add_bulk([("x", i, {"delay": 60}) for i in range(3)])
    with pytest.raises(ValueError, match="count"):
        await queue.promote_jobs(count)
    assert (await queue.get_stats())["delayed"] == 3


@pytest.mark.parametrize("keep", [-1, 1.5, "a", None, True])
async def test_add_log_refuses_a_keep_that_is_no_count(queue: Queue, keep: Any) -> None:
    """add_log(job_id, line, keep) passed keep to the script unchecked: 'a' and None failed
    with a Lua error ('attempt to compare number with nil'), 1.5 with Redis' 'value is not
    an integer' after the line was appended, -1 and True were taken as 'all' and 1.
    Expected: a ValueError naming keep, and no line appended."""
    await queue.add("x", 1, job_id="j")
    with pytest.raises(ValueError, match="keep"):
        await queue.add_log("j", "line", keep=keep)
    assert await queue.get_job_logs("j") == []


# ----- dedup ---------------------------------------------------------------------------------


async def test_a_retried_job_holds_its_dedup_id_again(queue: Queue) -> None:
    """docs/guide/queue.md: an add with a dedup id adds nothing while an unfinished job
    holds that id; the id is free when the job fails. retry_job (or retry_jobs, the
    dashboard's 'retry all failed') sent the failed job back to waiting, carrying its
    dedup id but not holding it: the next add with that id (a user's 'sync now') made a
    second job, and the two ran side by side. Expected: the retried job holds the id
    again, so the add returns it; if another job took the id meanwhile, that one keeps it
    (the retried job runs, without the id)."""
    from driver import fail

    a = await queue.add("x", 1, dedup={"id": "acct"}, remove_on_fail=False)
    [(jid, tok)] = await fetch(queue, 1)
    await finish(queue, [fail(jid, tok)])
    await queue.retry_job(a.id)
    again = await queue.add("x", 2, dedup={"id": "acct"})
    assert again.id == a.id and (await queue.get_stats())["waiting"] == 1
    # Failed again; another job takes the id; then the first is retried.
    [(jid, tok)] = await fetch(queue, 1)
    await finish(queue, [fail(jid, tok)])
    b = await queue.add("x", 3, dedup={"id": "acct"})
    assert b.id != a.id
    assert await queue.retry_jobs() == 1
    c = await queue.add("x", 4, dedup={"id": "acct"})
    assert c.id == b.id and (await queue.get_stats())["waiting"] == 2
    await queue.remove_job(a.id)  # a no longer holds the id: b keeps it
    d = await queue.add("x", 5, dedup={"id": "acct"})
    assert d.id == b.id


# ----- hostile payloads ----------------------------------------------------------------------


def _nested(depth: int) -> list[Any]:
    top: list[Any] = []
    cur = top
    for _ in range(depth):
        cur.append([])
        cur = cur[0]
    return top


@pytest.mark.parametrize("data,where", [
    (_nested(100_000), "nested too deeply"),
    ({"ok": 1, "name": "caf\udce9"}, "$.name"),          # os.fsdecode of a latin-1 file name
    ({"ok": 1, "by": {"caf\udce9": 1}}, "$.by (key"),
])
async def test_a_payload_that_cannot_be_encoded_is_a_payload_error_naming_it(
        queue: Queue, data: Any, where: str) -> None:
    """docs/guide/queue.md: "A payload that cannot be encoded raises PayloadError (a
    TypeError) naming the field". A payload nested too deeply raised RecursionError, and a
    string holding a lone surrogate (what os.fsdecode makes of a file name that is not
    UTF-8) a bare UnicodeEncodeError, neither naming where. Expected: PayloadError saying
    where, nothing written."""
    with pytest.raises(PayloadError, match=re.escape(where)):
        await queue.add("x", data)
    assert (await queue.get_stats())["total"] == 0


async def test_a_return_value_that_cannot_be_encoded_fails_its_job_for_good(
        queue: Queue, redis_url: str) -> None:
    """The same for a return value: a processor returning a string with a lone surrogate
    raised UnicodeEncodeError, taken as the attempt's error, so the job was retried (each
    attempt running the processor again) where a value that cannot be encoded "fails its
    job for good". Expected: one attempt, failed with a reason naming the field."""
    runs: list[str] = []

    async def work(job: Any) -> dict[str, str]:
        runs.append(job.id)
        return {"file": "caf\udce9"}

    job = await queue.add("x", 1, attempts=3)
    w = Worker(queue.name, work, url=redis_url)
    task = asyncio.create_task(w.run(handle_signals=False))
    try:
        await wait_until(lambda: _state_is(queue, job.id, "failed"), timeout=5,
                         message="the job failed")
    finally:
        await w.close(timeout=2)
        await task
    failed = await queue.get_job(job.id)
    assert failed is not None and "$.file" in (failed.failed_reason or "")
    assert runs == [job.id]


# ----- re-sent adds ----------------------------------------------------------------------------


async def test_a_resent_add_of_an_existing_id_returns_the_existing_job(
        redis_server: RedisServer) -> None:
    """docs/guide/queue.md: adding an existing id "returns the existing job unchanged".
    When the call's reply was lost and redis-py sent it again, the re-send was answered as
    such (nothing changed twice: good), but add() then returned a job made from its own
    arguments, as if it had added it: data 'new', name 'other', state 'waiting', for a job
    whose stored data is 'old' and which had completed. Expected: the stored job, as
    without the re-send."""
    async with proxied_queue(redis_server, "bo-resent-dup") as (q, direct, proxy):
        await direct.add("x", "old", job_id="a", remove_on_complete=False)
        [(jid, tok)] = await fetch(direct, 1)
        await finish(direct, [complete(jid, tok)])
        [job] = await held_replies(proxy, direct.redis, [q.add("other", "new", job_id="a")])
        assert (job.name, job.data) == ("x", "old")
        [jobs] = await held_replies(proxy, direct.redis, [q.add_bulk(
            [("other", "new", {"job_id": "a"}), ("other", "b", {"job_id": "b"})])])
        assert [(j.id, j.data) for j in jobs] == [("a", "old"), ("b", "b")]
        assert (await direct.get_stats())["total"] == 2


# ----- clocks ----------------------------------------------------------------------------------


@pytest.mark.parametrize("state", ["waiting", "completed"])
async def test_clean_measures_age_by_the_redis_clock_not_the_callers(
        queue: Queue, monkeypatch: pytest.MonkeyPatch, state: str) -> None:
    """Every time a job keeps (created, finished, due) is Redis' clock; clean(grace) took
    its cutoff from the caller's clock. On a host whose clock runs an hour ahead (a VM
    back from suspend, a container without NTP), clean(1800, "waiting") deleted jobs added
    a second before, none of them 30 minutes old: waiting jobs lost. Expected: age measured
    by Redis' clock, the jobs kept."""
    await queue.add("x", 1, job_id="fresh", remove_on_complete=False)
    if state == "completed":
        [(jid, tok)] = await fetch(queue, 1)
        await finish(queue, [complete(jid, tok)])
    real = time.time
    monkeypatch.setattr(time, "time", lambda: real() + 3600)
    assert await queue.clean(1800, state) == []
    assert await queue.get_state("fresh") == state


async def test_get_metrics_reads_the_minutes_of_the_redis_clock(
        queue: Queue, monkeypatch: pytest.MonkeyPatch) -> None:
    """The same class: the per-minute counts are kept under Redis' minute, and get_metrics
    read the minutes of the caller's clock: an hour ahead, the chart (and the dashboard's)
    showed no job at all. Expected: the completed job counted in the last minutes."""
    await queue.add("x", 1)
    [(jid, tok)] = await fetch(queue, 1)
    await finish(queue, [complete(jid, tok)])
    real = time.time
    monkeypatch.setattr(time, "time", lambda: real() + 3600)
    metrics = await queue.get_metrics(minutes=5)
    assert sum(metrics["completed"]) == 1
    assert abs(metrics["minutes"][-1] - real()) < 120
