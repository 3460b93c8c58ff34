"""Break round 14c: holding workers with job schedulers, re-sent new calls, abort(),
worker hooks and SyncQueue. Each test FAILS on the code it was written against; its
docstring says what is expected and what happens."""

from __future__ import annotations

import asyncio
import multiprocessing
import threading
import time
from typing import Any

import driver
import pytest
from helpers import wait_until
from resend import held_around, proxied_queue

from minique import Queue, SyncQueue, Worker
from minique.server import RedisServer


async def test_a_resent_remove_deduplication_key_answers_as_its_first_send(
        redis_server: RedisServer) -> None:
    """docs/guide/workers.md: every call that may be re-sent "answers as the first send
    would". remove_deduplication_key is a plain DEL + ZREM pipeline, neither --@once nor
    idempotent in its answer: job a holds dedup id 'k'; the call's first send frees it
    (True), the reply is lost, redis-py re-sends, the DEL finds nothing and the call
    returns False ("the id was not held"). Expected: True."""
    async with proxied_queue(redis_server, "b14c-dedup-resend") as (q, direct, proxy):
        await direct.add("x", 1, job_id="a", dedup={"id": "k"})
        assert await direct.get_deduplication_job_id("k") == "a"
        out = await held_around(proxy, direct.redis, q.remove_deduplication_key("k"),
                                lambda: direct.sweep(1))  # (a script call between)
        assert await direct.get_deduplication_job_id("k") is None
        assert out is True, f"the re-sent call answered {out!r} for an id it freed"


async def test_a_resent_remove_deduplication_key_does_not_free_a_later_holder(
        redis_server: RedisServer) -> None:
    """The same call, re-sent after another client added job b with dedup id 'k' (the
    id was free by then, so b took it): the re-send deletes b's claim. The next add with
    'k' then adds a second unfinished job c beside b: one call freed the id twice.
    Expected: the re-send changes nothing; 'k' stays with b and the add returns b."""
    async with proxied_queue(redis_server, "b14c-dedup-resend2") as (q, direct, proxy):
        await direct.add("x", 1, job_id="a", dedup={"id": "k"})

        async def between() -> None:
            await direct.add("x", 2, job_id="b", dedup={"id": "k"})
        await held_around(proxy, direct.redis, q.remove_deduplication_key("k"), between)
        holder = await direct.get_deduplication_job_id("k")
        again = await direct.add("x", 3, job_id="c", dedup={"id": "k"})
        assert (holder, again.id) == ("b", "b"), (
            f"after one remove_deduplication_key and b's add, 'k' is held by {holder!r} "
            f"and a further add made job {again.id!r}")


# ----- job schedulers and holding workers ---------------------------------------------------


async def test_a_drained_held_firing_does_not_use_up_its_schedulers_limit(queue: Queue) -> None:
    """docs/guide/workers.md: a held job "behaves exactly like a waiting one";
    schedulers.md: a firing a worker holds "is waiting, to you, and is treated as one".
    A scheduler every 60 s with limit=1: its first firing is due now, and a worker whose
    slots are busy holds it (lua/fetch.lua's take). drain() removes it. Taking it to hold
    already counted it (includes/scheduler.lua scheduler_on_take: 'ic' 1, and the limit
    reached, the scheduler ended): the scheduler is over with iterations=1 and its one
    firing never ran. One taken at a time, the firing would have been waiting when
    drained: iterations 0, the scheduler not ended (scheduler_maint.lua repairs a drained
    firing), and it would still fire its one time."""
    await queue.upsert_job_scheduler("s", every=60.0, job_name="x", limit=1)
    # A busy worker would hold the due firing ahead; a firing is never held now (its
    # run is counted when taken): it stays waiting, pending.
    assert await driver.hold(queue, 1, 300) == {}
    assert await queue.drain() == 1
    s = await queue.get_job_scheduler("s")
    assert s is not None
    assert (s.iterations, s.ended) == (0, False), (
        f"the drained firing never ran, yet the scheduler counts {s.iterations} "
        f"iteration(s) and ended={s.ended} (limit 1)")


async def test_a_held_firing_handed_back_by_pause_is_not_counted_as_run(queue: Queue) -> None:
    """A scheduler (every 60 s, limit=1) whose due firing a busy worker holds; pause()
    makes the worker hand it back: the firing is waiting (paused) and has not run. The
    scheduler already reads iterations=1, last_run set, ended=True and no pending firing,
    although its one firing waits to run. One taken at a time (the worker's slots busy,
    nothing held) get_job_scheduler would show iterations 0, no last run, not ended, the
    waiting firing pending: holding is observable."""
    sched = await queue.upsert_job_scheduler("s", every=60.0, job_name="x", limit=1)
    tokens = await driver.hold(queue, 1, 300)
    assert tokens == {}  # a firing is never held now: it stays waiting, pending
    firing = sched.pending_job_id
    await queue.pause()
    assert await queue.get_state(firing) in ("waiting", "paused")
    s = await queue.get_job_scheduler("s")
    assert s is not None
    seen = (s.iterations, s.last_run is None, s.ended, s.pending_job_id)
    assert seen == (0, True, False, firing), (
        f"firing {firing} is waiting, unrun; the scheduler reads iterations={s.iterations}, "
        f"last_run={s.last_run}, ended={s.ended}, pending={s.pending_job_id}")



@pytest.mark.parametrize("catch_up", ["once", "skip"])
async def test_a_held_firing_handed_back_by_pause_keeps_the_catch_up_policy(
        queue: Queue, catch_up: str) -> None:
    """schedulers.md: a firing taken after the next fire time has passed too is late;
    with catch_up="once" "the late firing runs as one catch-up", with "skip" it is
    dropped too. A scheduler every 0.5 s whose due firing F1 a busy worker holds; pause()
    makes the worker hand F1 back; the queue stays paused 1.3 s, then resume(). Taking F1
    to hold already made F2 (due 0.5 s later) and F1 is never judged late again: after
    resume, "once" runs F1 and F2 (two catch-up runs for one pause), "skip" runs the late
    F1. With nothing held (the worker's slots busy, F1 waiting through the pause) the same
    pause gives one run ("once") and none ("skip"), the next firing after now."""
    await queue.upsert_job_scheduler("s", every=0.5, job_name="x", catch_up=catch_up)
    tokens = await driver.hold(queue, 1, 300)
    assert tokens == {}  # a firing is never held now: it stays waiting, pending
    await queue.pause()
    await asyncio.sleep(1.3)
    await queue.resume()
    ran = []
    for _ in range(3):  # a free worker's calls right after resume()
        ran += [job_id for job_id, _ in await driver.fetch(queue, 5)]
    expected = 1 if catch_up == "once" else 0
    assert len(ran) == expected, (
        f"catch_up={catch_up!r}: after a 1.3 s pause of a scheduler every 0.5 s, "
        f"{len(ran)} firing(s) run at once: {ran}")



# ----- other controls that do not reach held jobs ------------------------------------------


async def test_clean_waiting_removes_jobs_a_worker_holds(queue: Queue) -> None:
    """docs/guide/queue.md: clean(grace, "waiting") removes the waiting jobs older than
    grace "wherever they sit"; workers.md: a held job counts as waiting everywhere and
    "behaves exactly like a waiting one". Four waiting jobs; a busy worker holds the first
    two ahead. clean(0, "waiting") returns ['a2', 'a3'] only: the held a0 and a1 are not
    cleaned (their holder is not asked) and, handed back, they run. With nothing held the
    same call cleans all four. Expected: all four cleaned, none run."""
    await queue.add_bulk([("x", i, {"job_id": f"a{i}"}) for i in range(4)])
    await asyncio.sleep(0.02)  # older than the grace of 0 by Redis' clock
    tokens = await driver.hold(queue, 2, 300)
    assert sorted(tokens) == ["a0", "a1"]
    cleaning = asyncio.ensure_future(queue.clean(0, "waiting"))
    await asyncio.wait([cleaning], timeout=0.2)
    await driver.hand_back(queue, tokens)  # as the holder does when asked, or its hold ends
    cleaned = sorted(await asyncio.wait_for(cleaning, 10))
    taken = [job_id for job_id, _ in await driver.fetch(queue, 5)]
    assert (cleaned, taken) == (["a0", "a1", "a2", "a3"], []), (
        f"clean(0, 'waiting') cleaned {cleaned}; a free worker then took {taken}")


async def test_obliterate_is_not_refused_for_jobs_a_worker_only_holds(queue: Queue) -> None:
    """docs/guide/queue.md: obliterate() "raises InvalidJobState while jobs are active,
    unless force". Four waiting jobs, two of them held ahead by a busy worker: get_stats()
    says active 0, waiting 4, yet obliterate() raises "queue has active jobs; pass
    force=True". With nothing held it obliterates the queue. Expected: held jobs count
    as waiting here too (handed back and deleted, as drain() does)."""
    await queue.add_bulk([("x", i, {"job_id": f"a{i}"}) for i in range(4)])
    tokens = await driver.hold(queue, 2, 300)
    stats = await queue.get_stats()
    assert (stats["active"], stats["waiting"]) == (0, 4)
    obliterating = asyncio.ensure_future(queue.obliterate())
    await asyncio.wait([obliterating], timeout=0.2)
    await driver.hand_back(queue, tokens)
    outcome = (await asyncio.gather(asyncio.wait_for(obliterating, 10),
                                    return_exceptions=True))[0]
    assert outcome is None and await queue.get_state("a0") == "unknown", (
        f"obliterate() with no active job and 2 held: {outcome!r}")


# ----- abort ----------------------------------------------------------------------------------


async def test_abort_does_not_answer_true_for_a_job_that_then_completes(queue: Queue) -> None:
    """docs/guide/workers.md: abort() "returns True for either [removed, or cancelled as
    by cancel()], and False for a job that had finished"; it is offered as arq's
    ``Job.abort()`` (which answers whether the job ended aborted). A running job: abort()
    finds it active, asks for the cancel (cancel.lua sets 'cx') and returns True at once.
    The worker's completion, decided before the cancel reached it, lands next and
    finish.lua keeps it (only an attempt going back is turned into "cancelled"): the job
    is completed, with its return value, after abort() said it was stopped. A stress run
    (a real worker, 40 aborts at random moments among 200 short jobs, 6 rounds) met this
    in 1 to 2 of 240 aborts. Expected: True only for a job that was removed or ends
    cancelled (abort waiting for the worker's answer, as cancel() does for a held job),
    else False."""
    job = await queue.add("t", 1)
    [(_, token)] = await driver.fetch(queue, 1)  # a worker runs it
    aborting = asyncio.create_task(queue.abort(job.id, timeout=10))

    async def asked() -> bool:
        return await queue.redis.hget(queue.keys.job(job.id), "cx") is not None
    await wait_until(asked, timeout=5, message="the cancel was asked")
    # The worker's completion, already on its way when the cancel was asked.
    statuses, _, _ = await driver.finish(queue, [driver.complete(job.id, token)])
    assert statuses == [1]
    answered = await aborting
    state = await queue.get_state(job.id)
    assert not (answered is True and state == "completed"), (
        f"abort() answered {answered}, and the job then {state}")
    assert answered is False
    # And one the worker cancels: True once it has failed as cancelled.
    other = await queue.add("t", 2)
    [(_, token)] = await driver.fetch(queue, 1)
    aborting = asyncio.create_task(queue.abort(other.id, timeout=10))
    await asyncio.sleep(0.1)
    assert not aborting.done(), "abort() answered before the worker did"
    await driver.finish(queue, [driver.fail(other.id, token, "cancelled")])
    assert await aborting is True



@pytest.mark.parametrize("how", ["abort", "remove_job"])
async def test_removing_a_flow_parent_removes_a_child_a_worker_holds(
        queue: Queue, how: str) -> None:
    """docs/guide/flows.md: "Removing a parent removes its pending children (and theirs);
    a child a worker has already started runs on, detached"; workers.md: abort() removes
    "a flow parent waiting for its children, with them", and a held job "behaves exactly
    like a waiting one". Parent p waits for children c1 and c2; a busy worker holds c1
    ahead. abort(p) (or remove_job(p)) returns True at once: p and the waiting c2 are
    gone, but c1 is left held (its holder is not even asked: the control version does not
    move), and once handed back (or started) it runs, an orphan of a removed parent. With
    nothing held, the same call removes c1 with c2. Expected: c1 removed (its holder asked
    to hand it back, as remove_job of a held job does), never run."""
    await queue.add("p", 1, job_id="p", delay=60)
    await queue.add("c", 1, job_id="c1", parent={"id": "p", "queue": queue.name})
    await queue.add("c", 1, job_id="c2", parent={"id": "p", "queue": queue.name})
    tokens = await driver.hold(queue, 1, 300)
    assert list(tokens) == ["c1"]
    call = queue.abort("p") if how == "abort" else queue.remove_job("p")
    calling = asyncio.ensure_future(call)
    # The holder answers as a worker asked to hand back would, once asked (or at once).
    await asyncio.wait([calling], timeout=0.2)
    await driver.hand_back(queue, tokens)
    assert await asyncio.wait_for(calling, 10) is True
    assert await queue.get_state("c2") == "unknown"
    taken = [job_id for job_id, _ in await driver.fetch(queue, 5)]
    state = await queue.get_state("c1")
    assert (state, taken) == ("unknown", []), (
        f"after {how}('p'), its held child c1 is {state} and a free worker took {taken}")


# ----- worker hooks ---------------------------------------------------------------------------


async def test_close_does_not_wait_for_ever_on_a_hanging_on_startup(
        queue: Queue, redis_url: str) -> None:
    """docs/guide/workers.md: SIGTERM or close() "stops fetching at once"; running jobs get
    the grace, and a shutdown "ends instead of waiting for it for ever". An
    ``on_startup`` hook that hangs (a pool connecting to a database that does not answer)
    makes ``close(timeout=1)`` (and the SIGTERM handler, which closes the same way) wait
    until the hook returns, however long: run() waits in the hook, close() waits for
    run(). Expected: close(timeout=1) ends run() within about its grace (the hook
    cancelled, or run() ending once the hook returns, with no job taken)."""
    entered = asyncio.Event()

    async def startup(w: Worker) -> None:
        entered.set()
        await asyncio.sleep(30)

    async def work(job: Any) -> None:
        pass

    w = Worker(queue.name, work, url=redis_url, on_startup=startup)
    task = asyncio.create_task(w.run(handle_signals=False))
    try:
        await asyncio.wait_for(entered.wait(), 10)
        t0 = time.monotonic()
        closing = asyncio.ensure_future(w.close(timeout=1))
        done, _ = await asyncio.wait([closing, task], timeout=6,
                                     return_when=asyncio.ALL_COMPLETED)
        waited = time.monotonic() - t0
        assert closing in done and task in done, (
            f"close(timeout=1) during a hanging on_startup: after {waited:.1f}s "
            f"close() done={closing.done()}, run() done={task.done()}")
    finally:
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)


# ----- SyncQueue and fork ---------------------------------------------------------------------


def _first_calls_in_child(q: SyncQueue, conn: Any, n: int) -> None:
    results: list[Any] = [None] * n
    barrier = threading.Barrier(n)

    def one(i: int) -> None:
        barrier.wait()
        try:
            results[i] = ("ok", q.get_stats()["waiting"])
        except BaseException as exc:  # what each thread met is the finding
            results[i] = ("error", repr(exc)[:120])

    threads = [threading.Thread(target=one, args=(i,)) for i in range(n)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(20)
    conn.send(results)


def test_a_sync_queue_made_before_a_fork_serves_a_childs_threads_at_once(
        redis_url: str, qname: str) -> None:
    """docs/guide/sync.md: a SyncQueue made before a fork "starts again in the child at
    its first call there" ("the parent's are left alone"), and SyncQueue "is safe to use
    from any thread". A forked child (a gunicorn --preload worker with threads) whose 8
    threads make their first call at once: one thread restarts the facade;
    SyncQueue._start sets ``_pid`` to the child's pid before the new loop and Queue
    exist, so the other threads take the parent's Queue and a loop nobody runs (or the
    parent's Queue on the new loop): they time out after ``timeout`` or fail with
    "attached to a different loop". When one of them sends on the parent's Queue, it
    writes on the parent's sockets: the parent's next calls read the child's replies
    (obliterate() got b'OK' for its count in about 1 run in 4). Expected: every thread's
    get_stats() answers (waiting=1), and the parent's calls afterwards answer right."""
    q = SyncQueue(qname, url=redis_url, timeout=3)
    parent: list[Any] = []
    try:
        q.add("x", 1)
        ctx = multiprocessing.get_context("fork")
        mine, theirs = ctx.Pipe()
        child = ctx.Process(target=_first_calls_in_child, args=(q, theirs, 8))
        child.start()
        assert mine.poll(30), "the child did not answer"
        results = mine.recv()
        child.join(5)
        if child.is_alive():
            child.kill()
        for _ in range(3):  # the parent goes on with its facade
            try:
                parent.append(q.get_stats()["waiting"])
                parent.append(q.get_job_ids("waiting"))
            except BaseException as exc:
                parent.append(repr(exc)[:120])
    finally:
        try:
            q.obliterate(force=True)
        except BaseException as exc:
            parent.append(f"obliterate: {exc!r}"[:120])
            with SyncQueue(qname, url=redis_url) as fresh:
                fresh.obliterate(force=True)
        q.close()
    bad = [r for r in results if r != ("ok", 1)]
    wrong = [x for x in parent if x not in (1, ["1"])]
    assert not bad and not wrong, (
        f"{len(bad)} of 8 threads of the child failed their first call: {bad[:3]}; "
        f"the parent's calls afterwards: {wrong[:3]}")


def test_sync_adds_in_flight_when_another_thread_closes_the_facade_end(
        redis_url: str, qname: str) -> None:
    """docs/guide/sync.md: SyncQueue is "safe to use from any thread"; add() "waits for
    its outcome, which the connection's own timeout (15 s) bounds". Four threads add jobs
    in a loop; another thread calls close() (an app shutting down). close() returns at
    once, and the adding threads never return: an add handed to the loop as it stops has
    a future nobody completes, and add() waits for it without a deadline. Expected: each
    add in flight ends (its outcome, or an error saying the facade is closed) within
    the bounds above; here 5 s."""
    q = SyncQueue(qname, url=redis_url, timeout=3)
    outcomes: list[Any] = []
    stop = threading.Event()

    def adder() -> None:
        n = 0
        while not stop.is_set() and n < 10000:
            try:
                q.add("x", n)
                n += 1
            except BaseException as exc:  # an error is an outcome too
                outcomes.append(repr(exc)[:100])
                return
        outcomes.append(("done", n))

    threads = [threading.Thread(target=adder, daemon=True) for _ in range(4)]
    for t in threads:
        t.start()
    try:
        time.sleep(0.3)
        q.close()
        stop.set()
        deadline = time.monotonic() + 5
        for t in threads:
            t.join(max(0.0, deadline - time.monotonic()))
        stuck = sum(t.is_alive() for t in threads)
    finally:
        with SyncQueue(qname, url=redis_url) as cleanup:
            cleanup.obliterate(force=True)
    assert stuck == 0, (f"{stuck} of 4 threads still inside SyncQueue.add 5 s after "
                        f"close() returned; the others: {outcomes}")


async def test_a_firing_is_never_held_and_jobs_behind_it_wait_with_it(queue: Queue) -> None:
    """The fix of the three tests above: a take that reaches a firing at a held place
    stops there; the firing and the jobs after it stay waiting in their order, and the
    next free slot takes the firing, which counts as run then."""
    first = await queue.add_bulk([("x", i) for i in range(2)])
    sched = await queue.upsert_job_scheduler("s", every=60.0, job_name="x")
    firing = sched.pending_job_id
    assert firing is not None
    await queue.promote_jobs()  # (due now already; made waiting behind the two)
    later = await queue.add_bulk([("x", i) for i in range(3)])
    _, taken, _ = await driver.finish(queue, [], 1, hold=5, hold_ms=300)
    assert [job_id for job_id, _ in taken] == [first[0].id, first[1].id]
    s = await queue.get_job_scheduler("s")
    assert s is not None and s.iterations == 0
    _, taken, _ = await driver.finish(queue, [], 1, hold=0)
    assert [job_id for job_id, _ in taken] == [firing]
    s = await queue.get_job_scheduler("s")
    assert s is not None and s.iterations == 1
    _, taken, _ = await driver.finish(queue, [], 3)
    assert [job_id for job_id, _ in taken] == [j.id for j in later]
