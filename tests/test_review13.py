"""Review 13: held jobs (prefetch) against the rule "batching must be unobservable", and
re-sent calls against "a retry must never duplicate"."""

from __future__ import annotations

import asyncio
from typing import Any

import driver
import pytest
from helpers import wait_until

from minique import Delayed, FlowProducer, InvalidJobState, Queue, Worker

order: list[str] = []
_raised: set[str] = set()
urgent: list[str] = []


async def proc(job: Any) -> None:
    """Never awaits (but to add a job): a runner goes through such jobs without yielding
    (for RUNNER_SLICE)."""
    order.append(job.id)
    data = job.data or {}
    if data.get("again") and job.id not in _raised:
        _raised.add(job.id)
        raise Delayed(0)
    if data.get("add_child_of"):
        parent = {"id": data["add_child_of"][1], "queue": data["add_child_of"][0]}
        child = await job.queue.add("t", {}, priority=1, parent=parent)
        urgent.extend([job.id, child.id])
    if data.get("add_urgent"):
        urgent.append((await job.queue.add("t", {"fail": True}, priority=1, attempts=2)).id)
    if data.get("fail") and job.id not in _raised:
        _raised.add(job.id)
        raise RuntimeError("first attempt fails")


async def _completed(q: Queue, n: int) -> bool:
    return (await q.get_stats())["completed"] >= n


async def _warm(q: Queue, w: Worker) -> asyncio.Task[None]:
    task = asyncio.create_task(w.run(handle_signals=False))
    await q.add_bulk([("t", {}) for _ in range(60)])
    await wait_until(lambda: _completed(q, 60), timeout=20, message="warm-up jobs done")
    order.clear()
    return task


async def _stop(q: Queue, w: Worker, task: asyncio.Task[None]) -> None:
    await asyncio.wait_for(w.close(timeout=2), 10)
    await asyncio.wait_for(task, 10)
    await q.obliterate(force=True)
    await q.close()


def _between(job_id: str) -> list[str]:
    first = order.index(job_id)
    second = order.index(job_id, first + 1)
    return order[first + 1:second]


async def test_delayed_0_of_the_worker_itself_goes_ahead_of_its_held_jobs(
        redis_url: str, qname: str) -> None:
    """Delayed(0) sends the job to the head of the line: a worker taking one job at a time
    (concurrency 1) runs it again next. This worker's own held jobs must give way to it as
    they do to its own RateLimited/GroupRateLimited (_put_back calls _on_control for those
    but not for Delayed): Redis tells the workers only once the 'd' result reaches it, a
    round trip later, and the runner starts held jobs meanwhile."""
    q = Queue(qname, url=redis_url)
    w = Worker(qname, proc, url=redis_url, concurrency=1)
    task = await _warm(q, w)
    try:
        jobs = await q.add_bulk([("t", {"again": i == 20}) for i in range(400)])
        again = jobs[20].id
        await wait_until(lambda: _completed(q, 60 + 400), timeout=20, message="all done")
        between = _between(again)
        assert between == [], (f"{len(between)} held jobs started between the Delayed(0) "
                               f"and the job's next run (one at a time: none)")
    finally:
        await _stop(q, w, task)


async def test_a_prioritized_retry_goes_ahead_of_the_workers_own_held_jobs(
        redis_url: str, qname: str) -> None:
    """A prioritized job retried at once (no backoff) goes ahead of the unprioritized jobs:
    enqueue_ready -> give_way_to_ahead. One at a time (concurrency 1) it runs again next;
    the worker's own held jobs start before it (_on_error pushes 'r' with no _on_control),
    until the reply to the call that carried the retry."""
    q = Queue(qname, url=redis_url)
    w = Worker(qname, proc, url=redis_url, concurrency=1)
    task = await _warm(q, w)
    try:
        # A job adds it (a Queue of the worker's own process: local_controls tells the
        # worker at once), so it is the job that runs next; its first attempt fails.
        await q.add_bulk([("t", {"add_urgent": i == 20}) for i in range(400)])
        await wait_until(lambda: _completed(q, 60 + 401), timeout=20, message="all done")
        between = _between(urgent[0])
        assert between == [], (f"{len(between)} held jobs started between the failed attempt "
                               f"and the retry (one at a time: none)")
    finally:
        await _stop(q, w, task)


@pytest.mark.parametrize("after_phase", ["mark", ""], ids=["after-marking", "after-waiting"])
async def test_a_held_job_handed_back_while_drain_runs_is_drained(
        redis_url: str, qname: str, after_phase: str) -> None:
    """drain() deletes the waiting jobs (phase ''), then marks the held ones (phase 'held').
    A held job its worker hands back in between (its hold ran out: slots busy with a long
    job) lands in the priority set after the waiting phase has passed, and is not held any
    more when the held phase looks: it survives drain() and starts after drain() returned.
    It was waiting (held) when drain() was called; one fetched at a time it would have been
    waiting, and deleted. (Raw script calls play the holding worker; drain() is the
    library's, with the hand-back injected after its waiting phase.)"""
    q = Queue(qname, url=redis_url)
    try:
        jobs = await q.add_bulk([("t", {}) for _ in range(3)])
        tokens = await driver.hold(q, 3, 50)
        assert set(tokens) == {j.id for j in jobs}
        first = jobs[0].id
        run = q._run

        async def racing_run(name: str, args: Any, *rest: Any) -> Any:
            reply = await run(name, args, *rest)
            if name == "drain" and args[2] == after_phase:
                # The holder's hold ran out: it hands its first job back (2: marked
                # removed already, the hand-back completes the removal).
                assert await driver.hand_back(q, {first: tokens[first]}) in ([1], [2])
            return reply

        q._run = racing_run  # type: ignore[method-assign]
        n = await q.drain()
        q._run = run  # type: ignore[method-assign]
        st = await q.redis.hget(q.keys.job(first), "st")
        assert st is None, (f"job {first}, held when drain() was called and never started, "
                            f"is {st!r} after drain() returned {n}: it will run")
    finally:
        await q.obliterate(force=True)
        await q.close()


async def test_cancel_of_a_held_job_that_had_started_and_completed_answers_true(
        redis_url: str, qname: str) -> None:
    """cancel() of a job its worker held and had started (its start note on the way, with
    its result: a held job that starts and ends between two calls) must answer as for a
    job fetched one at a time, which was active when the cancel came: True ("asked"; the
    job completed before its worker heard of it). The docs: "If the worker had started the
    job, it is cancelled (True)". Queue.cancel() sees 'completed' and answers False."""
    q = Queue(qname, url=redis_url)
    try:
        job = await q.add("t", {})
        tokens = await driver.hold(q, 1, 30000)
        task = asyncio.create_task(q.cancel(job.id))

        async def asked() -> bool:
            return await q.redis.hget(q.keys.job(job.id), "cx") is not None
        await wait_until(asked, message="cancel asked")
        # The holder had started it before the cancel came; its result carries the start.
        sec, usec = await q.redis.time()
        started = int(sec) * 1000 + int(usec) // 1000 - 5
        statuses, _, _ = await driver.finish(
            q, [(job.id, tokens[job.id], "c", b"\xc0", "", 0, -1, -1, started)], worker="holder")
        assert statuses == [1]
        assert await asyncio.wait_for(task, 10) is True
    finally:
        await q.obliterate(force=True)
        await q.close()


async def _redis_ms(q: Queue) -> int:
    sec, usec = await q.redis.time()
    return int(sec) * 1000 + int(usec) // 1000


@pytest.mark.xfail(strict=True, reason=(
    "a known difference (docs/guide/workers.md): remove() of a held job whose holder "
    "started it and froze before its start note reached Redis answers True after the hold "
    "and HELD_REMOVE_WAIT, and the job runs on; Redis cannot tell such a job from one "
    "that never started"))
async def test_remove_of_a_held_job_whose_start_note_is_late_does_not_answer_removed(
        redis_url: str, qname: str) -> None:
    """The holder started the job before remove() was called, and froze (or its link
    stalled) before its start note reached Redis. remove() waits the hold and a second,
    then completes the removal (free_removed deletes the job's keys) and answers True; the
    job runs on at its worker (its note and result come back "gone"). One fetched at a time
    the job was active: remove() raises InvalidJobState, and "a removed job never runs".
    (cancel() has the same wait and answers True, but makes the cancel hold: cx '2'.)"""
    q = Queue(qname, url=redis_url)
    try:
        job = await q.add("t", {})
        tokens = await driver.hold(q, 1, 50)
        started = await _redis_ms(q)  # the holder starts it now; then it freezes
        await asyncio.sleep(0.01)
        try:
            answer: Any = await asyncio.wait_for(q.remove_job(job.id), 10)
        except InvalidJobState as exc:
            answer = exc
        # The holder wakes up: its start note, then its result.
        statuses, _, _ = await driver.finish(
            q, [(job.id, tokens[job.id], "s", "", "", 0, 0, -1, started)], worker="holder")
        ran = statuses == [1]
        assert isinstance(answer, InvalidJobState), (
            f"remove() answered {answer!r} for a job that had started before it was called "
            f"(its start note then got status {statuses}: it ran{'' if ran else ' on, unseen'})")
    finally:
        await q.obliterate(force=True)
        await q.close()


async def test_a_prioritized_child_added_by_a_job_goes_ahead_of_the_workers_held_jobs(
        redis_url: str, qname: str) -> None:
    """Queue.add(..., priority=1) from a job tells the worker of its process at once
    (local_controls), so the urgent job runs next. The same add with ``parent=`` (a child
    of an existing parent, Queue._add_child) tells nobody locally: the worker learns it
    from the pub/sub message only, and starts held jobs first."""
    q = Queue(qname, url=redis_url)
    parents = Queue(qname + "-parents", url=redis_url)
    w = Worker(qname, proc, url=redis_url, concurrency=1)
    task = await _warm(q, w)
    urgent.clear()
    try:
        parent = await parents.add("p", {}, delay=3600)
        await q.add_bulk([("t", {"add_child_of": [parents.name, parent.id] if i == 20 else None})
                          for i in range(400)])
        await wait_until(lambda: _completed(q, 60 + 401), timeout=20, message="all done")
        adder, child = urgent
        between = order[order.index(adder) + 1:order.index(child)]
        assert between == [], (f"{len(between)} held jobs started between the add of a "
                               f"prioritized child and its start (one at a time: none)")
    finally:
        await _stop(q, w, task)
        await parents.obliterate(force=True)
        await parents.close()


@pytest.mark.parametrize("how", ["tree", "child of a Job", "child of an id"])
async def test_a_prioritized_parent_its_last_child_makes_waiting_goes_ahead_of_held_jobs(
        redis_url: str, qname: str, how: str) -> None:
    """A flow parent with a priority becomes waiting when the worker's own result for its
    last child reaches Redis (finish.lua -> flow_finished -> enqueue_ready ->
    give_way_to_ahead). One at a time (concurrency 1), the call that carries the child's
    result takes the parent next. The worker did not know its result makes a job go ahead:
    it started its held jobs (200 of them) until the reply came. A child whose parent is in
    its queue (with a priority, or given by id, so maybe) is marked now (parent_ahead), and
    its worker hands back what it holds once the child is done."""
    q = Queue(qname, url=redis_url)
    w = Worker(qname, proc, url=redis_url, concurrency=1)
    flow = FlowProducer(url=redis_url)
    task = await _warm(q, w)
    try:
        # The child is taken, then the plain jobs are held behind it.
        await q.pause()
        if how == "tree":
            node = await flow.add({"name": "t", "queue": qname, "data": {},
                                   "opts": {"priority": 1},
                                   "children": [{"name": "t", "queue": qname, "data": {}}]})
            child, parent = node.children[0].job.id, node.job.id
        else:
            top = await q.add("t", {}, priority=1)
            above: Any = top if how == "child of a Job" else {"id": top.id, "queue": qname}
            child, parent = (await q.add("t", {}, parent=above)).id, top.id
        await q.add_bulk([("t", {}) for _ in range(400)])
        await q.resume()
        await wait_until(lambda: _completed(q, 60 + 402), timeout=20, message="all done")
        between = order[order.index(child) + 1:order.index(parent)]
        assert between == [], (f"{len(between)} held jobs started between the last child's "
                               f"end and its prioritized parent's start (one at a time: none)")
    finally:
        await _stop(q, w, task)
        await flow.close()


async def test_drain_frees_every_held_job_whose_holder_does_not_answer(
        redis_url: str, qname: str) -> None:
    """drain() marks held jobs removed, waits the holds out, then completes the removals
    of those whose holder has not handed them back: "once drain() has returned, the job is
    gone and its id free". The 'gone' phase is one call of BATCH (1000) jobs: past 1000
    held jobs (five workers holding 200 each, frozen or gone), the rest stay, still
    "removed", their ids taken."""
    q = Queue(qname, url=redis_url)
    try:
        jobs = await q.add_bulk([("t", {}, {"job_id": f"c{i}"}) for i in range(1100)])
        tokens = await driver.hold(q, 1100, 50)
        assert len(tokens) == 1100
        n = await q.drain()
        assert n == 1100
        left = [j.id for j in jobs if await q.redis.exists(q.keys.job(j.id))]
        assert left == [], f"{len(left)} drained jobs still there after drain() returned"
    finally:
        await q.obliterate(force=True)
        await q.close()
