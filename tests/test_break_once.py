"""Break tests for "re-sends never duplicate" (docs/guide/workers.md, docs/design/lua.md):
every call that can be re-sent changes nothing twice and answers as the first send would.

Each test makes a call's first send run while its reply is lost (the held-reply proxy of
tests/test_break_wire.py), so redis-py re-sends it, then checks the state, the answer and
the events stream against one send. The tests up to the "attacks that pass" line
describe promises a break run found broken, fixed since (each failed on the code before
its fix); the others are regression guards.
"""

from __future__ import annotations

import asyncio
import re
from collections.abc import Awaitable, Callable
from typing import Any

import pytest
from driver import die_holding, take
from helpers import wait_until
from resend import held_around, held_replies, proxied_queue

from minique import Queue, Worker, scripts
from minique.server import RedisServer

# ----- helpers ----------------------------------------------------------------------------


async def _events(q: Queue, after: bytes = b"-") -> list[tuple[str, dict[str, str]]]:
    entries = await q.redis.xrange(q.keys.events, after, "+")
    out = []
    for eid, fields in entries:
        if eid == after:
            continue
        d = {k.decode(): v.decode(errors="replace") for k, v in fields.items()}
        out.append((d.get("ev", ""), d))
    return out


async def _last_event_id(q: Queue) -> bytes:
    last = await q.redis.xrevrange(q.keys.events, "+", "-", count=1)
    return bytes(last[0][0]) if last else b"0-0"


async def _resent_once(redis_server: RedisServer, name: str,
                       setup: Callable[[Queue], Awaitable[Any]],
                       act: Callable[[Queue], Awaitable[Any]]) -> tuple[Any, list[Any]]:
    """Runs ``act`` once with its reply lost; returns (its outcome, the events it made)."""
    async with proxied_queue(redis_server, name) as (q, direct, proxy):
        await setup(direct)
        mark = await _last_event_id(direct)
        [outcome] = await held_replies(proxy, direct.redis, [act(q)])
        return outcome, await _events(direct, mark)


def _kinds(events: list[tuple[str, dict[str, str]]]) -> list[str]:
    return [e for e, _ in events]


# ----- findings: calls that a re-send changes twice ----------------------------------------


async def test_a_resent_pause_group_emits_group_paused_once(redis_server: RedisServer) -> None:
    """docs/guide/workers.md: every call that changes state "is either idempotent or
    carries an identity", "an event is emitted once". ``pause_group`` (set_group.lua) has
    neither: it emits 'group-paused' on every run, so a re-send of a call whose reply was
    lost puts two 'group-paused' events in the queue's stream for one call (``pause``,
    whose set_paused.lua is --@once, emits one 'paused')."""
    async def setup(d: Queue) -> None:
        await d.add("x", 1, job_id="a", group="g")

    out, events = await _resent_once(redis_server, "bo-pause-group", setup,
                                     lambda q: q.pause_group("g"))
    assert out is None
    assert _kinds(events) == ["group-paused"], f"one pause_group call emitted {_kinds(events)}"


async def test_a_pause_group_resent_after_another_clients_resume_does_not_pause_again(
        redis_server: RedisServer) -> None:
    """A client pauses group g; its first send runs, the reply is lost. Meanwhile another
    client (a dashboard) resumes g, and its call returns. Then redis-py re-sends the pause,
    which runs again: g is paused again although the resume came after the pause ran, and
    stays paused until someone notices. A --@once call (``pause``/``resume``) is answered
    from its first run instead. Expected: g running, one 'group-paused' event."""
    async with proxied_queue(redis_server, "bo-pause-group-2") as (q, direct, proxy):
        await direct.add("x", 1, job_id="a", group="g")
        mark = await _last_event_id(direct)
        await held_around(proxy, direct.redis, q.pause_group("g"),
                           lambda: direct.resume_group("g"))
        group = await direct.get_group("g")
        assert group is not None
        kinds = _kinds(await _events(direct, mark))
        assert not group.paused, (f"the group was resumed after the pause ran, yet the "
                                  f"re-sent pause paused it again; events {kinds}")


async def test_two_concurrent_log_lines_resent_are_each_appended_once(
        redis_server: RedisServer) -> None:
    """docs/guide/workers.md: "the job's hash keeps the last call's id (lgc, pgc), so a
    re-sent line is appended once". It keeps only the *last* call's id: two log lines sent
    at once (``asyncio.gather(job.log(a), job.log(b))``, or a processor and a dashboard)
    whose replies are both lost are both re-sent; the first re-send finds the other
    call's id in 'lgc' and appends its line again. The log ends with 3 or 4 lines for 2
    calls, and that add_log returns the count after the duplicate."""
    async with proxied_queue(redis_server, "bo-two-logs") as (q, direct, proxy):
        await direct.add("x", 1, job_id="j")
        outs = await held_replies(proxy, direct.redis, [q.add_log("j", "A"), q.add_log("j", "B")])
        logs = await direct.get_job_logs("j")
        assert sorted(logs) == ["A", "B"], f"two add_log calls left the log {logs}"
        assert sorted(outs) == [1, 2], outs


async def test_a_progress_resent_after_a_later_progress_does_not_go_back(
        redis_server: RedisServer) -> None:
    """A processor reports progress 30; the first send runs, the reply is lost. Before the
    re-send, progress 60 arrives on another connection (a second task of the same
    processor, or another client). The re-send finds 'pgc' holding the 60-call's id, not
    its own, and runs again: the job's progress goes back from 60 to 30, and a third
    'progress' event (30 again) is emitted for two calls."""
    async with proxied_queue(redis_server, "bo-progress-back") as (q, direct, proxy):
        await direct.add("x", 1, job_id="j")
        mark = await _last_event_id(direct)
        await held_around(proxy, direct.redis, q.update_progress("j", 30),
                           lambda: direct.update_progress("j", 60))
        job = await direct.get_job("j")
        assert job is not None
        kinds = _kinds(await _events(direct, mark))
        assert (job.progress, kinds.count("progress")) == (60, 2), (
            f"progress {job.progress} after 30 then 60; {kinds.count('progress')} events")


async def test_a_resent_rate_limit_lasts_from_its_first_send(redis_server: RedisServer) -> None:
    """``rate_limit(delay)`` is treated as idempotent (no call id), but its re-send sets
    the limit again from the time of the re-send ("a longer limit already in force is
    kept": the first send's is shorter by then). Every re-send extends the stop: by the
    0.3 s socket timeout here, by up to a 15 s timeout per re-send with the default
    connection. Expected: the queue takes jobs again ``delay`` after the call ran."""
    async with proxied_queue(redis_server, "bo-rate-limit") as (q, direct, proxy):
        sec, usec = await direct.redis.time()
        t0 = int(sec) * 1000 + int(usec) // 1000
        await held_replies(proxy, direct.redis, [q.rate_limit(5)])
        ends = int(await direct.redis.pexpiretime(direct.keys.pause_until))
        late = ends - (t0 + 5000)
        assert late < 150, f"the rate limit ends {late} ms after the call's first send + 5 s"


async def test_a_resent_set_global_concurrency_does_not_undo_a_later_change(
        redis_server: RedisServer) -> None:
    """``set_global_concurrency`` has no call id (treated as idempotent). Its first send
    (limit 3) runs, the reply is lost; meanwhile another client clears the limit, and
    that call returns. The re-send runs again and sets 3: the later change is undone
    (set_group_options and set_group_defaults behave the same). Expected, as for a
    --@once call: the re-send changes nothing, the limit stays cleared."""
    async with proxied_queue(redis_server, "bo-gconc") as (q, direct, proxy):
        await held_around(proxy, direct.redis, q.set_global_concurrency(3),
                           lambda: direct.set_global_concurrency(None))
        limit = await direct.redis.hget(direct.keys.meta, "gconc")
        assert limit is None, f"the limit cleared after the call ran is back: {limit!r}"


# ----- findings: jobs taken back from a dead worker's hold (hrc) ---------------------------


async def test_a_job_taken_back_from_a_dead_workers_hold_keeps_its_priority_order(
        queue: Queue) -> None:
    """docs/design/leases.md: a marked (hrc) job "that is innocent only loses its place
    in a batch held ahead". A plain job h is held by a worker that dies; the sweep puts it
    back in its place, marked. A busy prefetching worker's next call (no free slot, asks
    to hold one) pops h, may not hold it, and puts it back with enqueue_front: score
    'fc' seq, ahead of every priority. A priority-1 job p added afterwards then waits
    behind the plain job h: the next free slot runs h, not p (prioritized jobs always go
    before plain ones otherwise)."""
    await queue.add("x", 1, job_id="h")
    await die_holding(queue, ["h"])
    await take(queue, "busy", 0, 1)  # a busy worker asks to hold one job
    assert await queue.get_state("h") == "waiting"
    await queue.add("x", 1, job_id="p", priority=1)
    await take(queue, "free", 1, 0)  # one free slot
    states = {"h": await queue.get_state("h"), "p": await queue.get_state("p")}
    assert states == {"h": "waiting", "p": "active"}, (
        f"the free slot took the plain job before the priority-1 one: {states}")


async def test_a_job_taken_back_from_a_dead_workers_hold_is_not_starved_by_a_busy_worker(
        redis_url: str, qname: str) -> None:
    """leases.md again: an innocent marked job "only loses its place in a batch held
    ahead". A marked job is never held, and it is taken only by a call with a free slot;
    a warm prefetching worker (concurrency 1) that always has held jobs to start next
    makes its calls with no free slot, popping the marked job each time and putting it
    back at the front. Here a worker runs through 3,000 plain jobs; 300, 900 and 1,500
    in, a job is marked as the sweep marks a dead worker's held job (lua/stalled.lua: HINCRBY hrc,
    meta xs, enqueue_return: back before the stream). A marked job mostly runs only when
    the worker runs dry, after all the jobs that were waiting behind it (one of three
    now and then gets a free slot early, so the test marks three); with a steady supply of jobs
    it would never run. Expected: among the next jobs taken."""
    q = Queue(qname, url=redis_url)
    order: list[str] = []

    async def work(job: Any) -> None:
        order.append(job.id)
        await asyncio.sleep(0.001)

    w = Worker(qname, work, url=redis_url, concurrency=1)
    task = asyncio.create_task(w.run(handle_signals=False))
    try:
        await q.add_bulk([("x", i, {"job_id": f"w{i}"}) for i in range(300)])
        await wait_until(lambda: len(order) >= 300, timeout=20, message="warm-up done")
        marks = ["h1", "h2", "h3"]
        await q.add_bulk([("x", 1, {"job_id": h, "delay": 600}) for h in marks])
        await q.add_bulk([("x", i, {"job_id": f"u{i}"}) for i in range(3000)])
        # What stalled.lua does to a held job of a dead worker (here out of delayed).
        mark = ("redis.call('ZREM', K.delayed, ARGV[2]); local jk = JP .. ARGV[2]; "
                "redis.call('HINCRBY', jk, 'hrc', 1); redis.call('HSET', K.meta, 'xs', '1'); "
                "enqueue_return(jk, ARGV[2], '')")
        marked_at = {}
        for n, h in enumerate(marks):
            await wait_until(lambda n=n: len(order) >= 600 + 600 * n, timeout=20,
                             message="the worker is busy")
            await q.redis.eval(scripts.eval_source(mark), len(q.keys.vector),
                               *q.keys.vector, q.keys.job_prefix, h)
            marked_at[h] = len(order)
        await wait_until(lambda: len(order) >= 3303, timeout=40, message="every job ran")
        later = {h: order.index(h) - marked_at[h] for h in marks}
        assert max(later.values()) < 300, (
            f"jobs run between each marked job going back to the front and its run: "
            f"{later} (the queue had ~{3300 - marked_at['h1']} left at the first mark)")
    finally:
        await w.close(timeout=2)
        await task
        await q.obliterate(force=True)
        await q.close()


async def test_a_job_taken_back_from_a_dead_workers_hold_waits_out_every_group(
        queue: Queue) -> None:
    """The same with groups: a worker with one free slot and room to hold gives that slot
    to a grouped job (half the free slots while ungrouped jobs wait too, rounded up), so a
    marked ungrouped job is always past the free slots and put back at the front, while
    the ungrouped jobs added after it are held and run. It waits until every group is
    empty: here 30 grouped and 5 later ungrouped jobs all go before it."""
    await queue.add("x", 1, job_id="h")
    await die_holding(queue, ["h"])
    await queue.add_bulk([("x", i, {"group": f"g{i % 3}", "job_id": f"g{i}"}) for i in range(30)])
    await queue.add_bulk([("x", i, {"job_id": f"u{i}"}) for i in range(5)])
    before_h: list[str] = []
    for _ in range(30):
        await take(queue, "w1", 1, 3)  # one free slot, room to hold 3
        taken = [x.decode() for x in await queue.redis.zrange(queue.keys.active, 0, -1)]
        taken += [x.decode() for x in await queue.redis.zrange(queue.keys.held, 0, -1)]
        if "h" in taken:  # taken to run now, or held to run next
            break
        before_h += taken
        # Those jobs done: their worker calls again with one free slot.
        await queue.redis.delete(queue.keys.active, queue.keys.held)
        for job_id in taken:
            await queue.redis.hset(queue.keys.job(job_id), "st", "completed")
    ungrouped = [j for j in before_h if j.startswith("u")]
    assert len(before_h) < 10, (f"{len(before_h)} jobs ran before h, {len(ungrouped)} of "
                                f"them ungrouped jobs added after it")


# ----- attacks that pass (regression guards) ------------------------------------------------


async def _finished(d: Queue, ids: list[str], fail: bool) -> None:
    for i in ids:
        await d.add("x", 1, job_id=i, remove_on_complete=False, remove_on_fail=False)

    async def work(job: Any) -> None:
        if fail:
            raise RuntimeError("boom")

    url = "redis://{host}:{port}/0".format(**d.redis.connection_pool.connection_kwargs)
    w = Worker(d.name, work, url=url)
    task = asyncio.create_task(w.run(handle_signals=False))
    state = "failed" if fail else "completed"
    try:
        await wait_until(lambda: _count_is(d, state, len(ids)), timeout=10,
                         message=f"{len(ids)} {state}")
    finally:
        await w.close(timeout=2)
        await task


async def _count_is(d: Queue, state: str, n: int) -> bool:
    return (await d.get_stats()).get(state, 0) >= n


async def _seq(*steps: Awaitable[Any]) -> None:
    for s in steps:
        await s


async def _activate(d: Queue) -> None:
    await take(d, "test-worker", 1, 0)


_CASES: dict[str, tuple[Callable[[Queue], Awaitable[Any]], Callable[[Queue], Awaitable[Any]]]] = {
    "remove_job": (lambda d: d.add("x", 1, job_id="a"), lambda q: q.remove_job("a")),
    "remove_job_missing": (lambda d: asyncio.sleep(0), lambda q: q.remove_job("zz")),
    "remove_job_active": (lambda d: _seq(d.add("x", 1, job_id="a"), _activate(d)),
                          lambda q: q.remove_job("a")),
    "remove_job_held": (lambda d: _seq(d.add("x", 1, job_id="a"), take(d, "gone", 0, 1, hold_ms=300)),
                        lambda q: q.remove_job("a")),
    "cancel": (lambda d: _seq(d.add("x", 1, job_id="a"), _activate(d)), lambda q: q.cancel("a")),
    "promote_job": (lambda d: d.add("x", 1, job_id="a", delay=60), lambda q: q.promote_job("a")),
    "promote_jobs": (lambda d: d.add_bulk([("x", i, {"delay": 60}) for i in range(5)]),
                     lambda q: q.promote_jobs()),
    "retry_job": (lambda d: _finished(d, ["a"], True), lambda q: q.retry_job("a")),
    "retry_jobs": (lambda d: _finished(d, ["a", "b", "c"], True), lambda q: q.retry_jobs()),
    "retry_jobs_completed": (lambda d: _finished(d, ["a", "b", "c"], False),
                             lambda q: q.retry_jobs("completed", count=2)),
    "pause": (lambda d: d.add("x", 1), lambda q: q.pause()),
    "resume": (lambda d: d.pause(), lambda q: q.resume()),
    "drain": (lambda d: d.add_bulk([("x", i) for i in range(5)] + [("x", 9, {"delay": 60})]),
              lambda q: q.drain(True)),
    "clean_completed": (lambda d: _finished(d, ["a", "b"], False),
                        lambda q: q.clean(0, "completed")),
    "clean_waiting_grouped": (
        lambda d: d.add_bulk([("x", i, {"group": "g"} if i % 2 else {}) for i in range(6)]),
        lambda q: q.clean(0, "waiting")),
    "set_global_concurrency": (lambda d: asyncio.sleep(0), lambda q: q.set_global_concurrency(3)),
    "set_group_options": (lambda d: d.add("x", 1, group="g"),
                          lambda q: q.set_group_options("g", concurrency=2)),
    "set_group_defaults": (lambda d: d.add("x", 1, group="g"),
                           lambda q: q.set_group_defaults(concurrency=2)),
    "resume_group": (lambda d: _seq(d.add("x", 1, group="g"), d.pause_group("g")),
                     lambda q: q.resume_group("g")),
    "upsert_job_scheduler": (lambda d: asyncio.sleep(0),
                             lambda q: q.upsert_job_scheduler("s", every=60, job_name="x")),
    "upsert_job_scheduler_new_timing": (
        lambda d: d.upsert_job_scheduler("s", every=60, job_name="x"),
        lambda q: q.upsert_job_scheduler("s", every=30, job_name="x")),
    "remove_job_scheduler": (lambda d: d.upsert_job_scheduler("s", every=60, job_name="x"),
                             lambda q: q.remove_job_scheduler("s")),
    "add_with_parent": (lambda d: d.add("p", 1, job_id="p", delay=60),
                        lambda q: q.add("c", 1, job_id="c", parent={"id": "p", "queue": q.name})),
    "obliterate": (lambda d: d.add_bulk([("x", i) for i in range(5)]), lambda q: q.obliterate()),
    "update_progress": (lambda d: d.add("x", 1, job_id="a"), lambda q: q.update_progress("a", 40)),
    "add_log": (lambda d: d.add("x", 1, job_id="a"), lambda q: q.add_log("a", "l")),
}


async def _snapshot(q: Queue, mark: bytes, outcome: Any) -> Any:
    """What a call left: its answer, the counts, each job's state and log, the events,
    some controls; times (ms, or s with a fraction) blanked out."""
    ids = sorted([k.decode()[len(q.keys.job_prefix):] async for k in
                  q.redis.scan_iter(match=f"{q.keys.job_prefix}*", count=1000)])
    jobs = {i: (await q.get_state(i), await q.get_job_logs(i)) for i in ids}
    events = [(e, d.get("id", d.get("group", ""))) for e, d in await _events(q, mark)]
    controls = await q.redis.hmget(q.keys.meta, "paused", "gconc", "gdc")
    text = repr((type(outcome).__name__, outcome, await q.get_stats(), jobs, events, controls))
    return re.sub(r"\d{10}\.\d+|\d{13}", "T", text)


@pytest.mark.parametrize("case", sorted(_CASES))
async def test_a_resent_call_leaves_what_one_send_leaves(redis_server: RedisServer,
                                                         case: str) -> None:
    """Each state-changing Queue call, once sent once and once with its first
    send's reply lost (re-sent by redis-py): the same answer (errors included), the same
    job states and logs, the same events, the same controls."""
    setup, act = _CASES[case]
    seen = []
    for resent in (False, True):
        async with proxied_queue(redis_server, f"bo-{case}-{int(resent)}") as (q, direct, proxy):
            await setup(direct)
            mark = await _last_event_id(direct)
            if resent:
                [outcome] = await held_replies(proxy, direct.redis, [act(q)])
            else:
                try:
                    outcome = await act(q)
                except Exception as exc:  # the same error is expected of the re-send
                    outcome = exc
            if isinstance(outcome, Exception):
                outcome = str(outcome)
            seen.append(await _snapshot(direct, mark, outcome))
    assert seen[0] == seen[1]


async def test_once_calls_in_eval_mode_answer_a_resend_from_the_first_run(
        redis_server: RedisServer, monkeypatch: pytest.MonkeyPatch) -> None:
    """MINIQUE_SCRIPT_MODE=eval (EVALSHA scripts instead of functions): the
    wrapper runs as a script too; a re-sent remove_job reports the removal, a re-sent
    drain counts once and emits one 'drained'."""
    monkeypatch.setattr(scripts, "_use_functions", False)
    async with proxied_queue(redis_server, "bo-eval") as (q, direct, proxy):
        await scripts.load_all(direct.redis)
        await direct.add_bulk([("x", i, {"job_id": f"e{i}"}) for i in range(4)])
        mark = await _last_event_id(direct)
        [removed] = await held_replies(proxy, direct.redis, [q.remove_job("e0")])
        [drained] = await held_replies(proxy, direct.redis, [q.drain()])
        assert (removed, drained) == (True, 3)
        assert _kinds(await _events(direct, mark)) == ["removed", "drained"]
        # One kept answer per call: remove_job's, and drain's four (held jobs marked,
        # waiting jobs, held jobs again, then held jobs whose workers never handed them
        # back).
        assert sum([await direct.redis.hlen(k) async for k in
                    direct.redis.scan_iter(match=f"{direct.keys.base}:once:*")]) == 5


async def test_obliterate_forgets_the_kept_answers_and_the_name_is_reusable(
        redis_server: RedisServer) -> None:
    """obliterate deletes the kept answers (':once:<minute>'); the same queue name then works
    afresh: a re-sent remove of a new job of an old id reports the new removal."""
    async with proxied_queue(redis_server, "bo-reuse") as (q, direct, proxy):
        await direct.add("x", 1, job_id="a")
        assert await held_replies(proxy, direct.redis, [q.remove_job("a")]) == [True]
        await direct.obliterate(force=True)
        assert [k async for k in direct.redis.scan_iter(match=f"{direct.keys.base}:once:*")] == []
        await direct.add("x", 2, job_id="a")
        assert await held_replies(proxy, direct.redis, [q.remove_job("a")]) == [True]
        assert await direct.get_job("a") is None
