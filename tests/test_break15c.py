"""Break round 15c: step jobs, max_tasks_per_child, retry delays from the failure."""

from __future__ import annotations

import asyncio
from typing import Any

from driver import complete, fetch, finish
from helpers import wait_until

from minique import Queue, WaitingChildren, Worker


def _k(job_id: str, token: str) -> tuple[Any, ...]:
    return (job_id, token, "k", "waiting for its children", "", 0, -1, -1)


async def test_cancel_of_a_running_step_job_is_lost_when_it_raises_waiting_children(
        queue: Queue) -> None:
    """docs/guide/workers.md / cancel.lua: a cancel asked while the job is a worker's
    reaches it however its attempt goes out (a retry, Delayed, a hand-back... fail as
    'cancelled' instead of running again). A step job cancelled while it runs, whose
    processor raised WaitingChildren before hearing of the cancel, goes back to the line
    and runs again: the cancel is lost."""
    parent = await queue.add("parent", {})
    [(pid, ptok)] = await fetch(queue, 1)
    assert await queue.cancel(pid)
    statuses, _, _ = await finish(queue, [_k(pid, ptok)])
    assert statuses == [1]
    assert await parent.get_state() == "failed"


async def test_cancel_of_a_running_step_job_with_children_is_lost(queue: Queue) -> None:
    """As above, with a child pending: the cancelled parent goes to waiting-children and
    runs again when its child is done, instead of failing as cancelled."""
    parent = await queue.add("parent", {})
    [(pid, ptok)] = await fetch(queue, 1)
    running = await queue.get_job(pid)
    assert running is not None
    await queue.add("child", 1, parent=running)
    assert await queue.cancel(pid)
    await finish(queue, [_k(pid, ptok)])
    assert await parent.get_state() == "failed"


def _leaky(job: Any) -> Any:
    """A sync processor (run in a --cpu-processes child) that leaks what
    max_tasks_per_child is for: a non-daemon thread its library started, which keeps the
    process from exiting for a while. It records each run."""
    import threading
    import time

    with open(job.data["log"], "a") as f:
        f.write(f"{job.id}\n")
    threading.Thread(target=time.sleep, args=(8,)).start()
    return "done"


async def test_close_while_a_child_retires_runs_the_finished_job_again(
        queue: Queue, redis_url: str, tmp_path: Any) -> None:
    """docs/guide/workers.md: max_tasks_per_child loses and duplicates nothing across
    retirements; close() puts back only jobs still running. A job whose processor has
    returned, while its child process retires (here slow to exit: a leaked non-daemon
    thread), is cancelled by close() as if it still ran: it goes back to waiting and runs a
    second time, its completion lost."""
    log = tmp_path / "runs.txt"
    log.write_text("")
    worker = Worker(queue.name, _leaky, url=redis_url, processes=1, max_tasks_per_child=1)
    task = asyncio.create_task(worker.run(handle_signals=False))
    try:
        job = await queue.add("leaky", {"log": str(log)})
        await wait_until(lambda: log.read_text() != "", timeout=20, message="the job ran")
        await asyncio.sleep(0.5)  # it has returned; its child is retiring
        await worker.close(timeout=0.5)
    finally:
        await task
    assert await job.get_state() == "completed"


async def test_cancel_while_a_child_retires_fails_a_completed_job(
        queue: Queue, redis_url: str, tmp_path: Any) -> None:
    """A cancel that comes after the processor returned changes nothing (finish.lua: only
    an attempt going back is turned into 'cancelled'). With max_tasks_per_child, a job
    whose processor returned while its child retires fails as 'cancelled' instead: its
    return value is lost."""
    log = tmp_path / "runs.txt"
    log.write_text("")
    worker = Worker(queue.name, _leaky, url=redis_url, processes=1, max_tasks_per_child=1)
    task = asyncio.create_task(worker.run(handle_signals=False))
    try:
        job = await queue.add("leaky", {"log": str(log)})
        await wait_until(lambda: log.read_text() != "", timeout=20, message="the job ran")
        await asyncio.sleep(0.5)
        await queue.cancel(job.id)
        assert await job.wait_until_finished(timeout=15) == "done"
    finally:
        await worker.close()
        await task


async def test_delayed_that_runs_out_before_the_call_jumps_the_whole_line(
        queue: Queue, redis_url: str) -> None:
    """docs/guide/retries.md: Delayed(s) counts from the raise; batching must be
    unobservable. A job raising Delayed(0.002) is, one result at a time, delayed 2 ms and
    then promoted to the back of the line (take.lua promote_due: enqueue_ready), behind the
    40 jobs already waiting. When the worker's next call is built after those 2 ms (a busy
    loop), the delay left is 0 and finish.lua's 'd' puts it at the head of the line
    (enqueue_front, as Delayed(0)): it runs before all of them."""
    import time

    order: list[str] = []

    async def proc(job: Any) -> Any:
        order.append(job.name)
        if job.name == "x" and job.attempts_started == 1 and order.count("x") == 1:
            time.sleep(0.005)  # noqa: ASYNC251 (CPU-bound work)
            from minique import Delayed
            raise Delayed(0.002)
        time.sleep(0.003)  # noqa: ASYNC251 (CPU-bound work: the loop is busy)
        return None

    for _ in range(20):
        await queue.add("filler", {})
    x = await queue.add("x", {})
    for _ in range(40):
        await queue.add("filler", {})
    worker = Worker(queue.name, proc, url=redis_url, concurrency=4)  # the loop stays busy
    task = asyncio.create_task(worker.run(handle_signals=False))
    try:
        await x.wait_until_finished(timeout=20)
        await wait_until(lambda: len(order) == 62, timeout=20)
    finally:
        await worker.close()
        await task
    first = order.index("x")
    # One result at a time: behind the 40 jobs waiting (give or take the 4 slots).
    assert order.index("x", first + 1) >= 55, order.index("x", first + 1)


async def test_abort_of_a_running_step_job_that_raises_waiting_children(queue: Queue) -> None:
    """Queue.abort: "a running one is cancelled ... and one whose attempt ended meanwhile
    and that went back to the queue for another is removed". A step job whose processor
    raised WaitingChildren as the abort came in is neither: abort() waits on while the
    job goes to waiting-children, and the job runs again once its child is done."""
    await queue.add("parent", {})
    [(pid, ptok)] = await fetch(queue, 1)
    running = await queue.get_job(pid)
    assert running is not None
    child = await queue.add("child", 1, parent=running)
    aborting = asyncio.create_task(queue.abort(pid, timeout=5))

    async def asked() -> bool:
        return bool(await queue.redis.hexists(queue.keys.job(pid), "cx"))
    await wait_until(asked, message="the cancel was asked")
    await finish(queue, [_k(pid, ptok)])  # its processor had raised WaitingChildren
    [(cid, ctok)] = await fetch(queue, 1)
    assert cid == child.id
    await finish(queue, [complete(cid, ctok)])
    again = await fetch(queue, 1)
    assert again == [], "the aborted parent was handed out to run again"
    assert await aborting is True


async def test_a_step_job_that_completes_without_waiting_takes_its_children_with_it(
        queue: Queue, redis_url: str) -> None:
    """docs/guide/flows.md, step jobs: "a parent that completes without waiting leaves its
    children to run on". One that does so under its retention (remove_on_complete, or later
    trimming by keep_completed) is deleted, and its deletion deletes every child still
    waiting (flows.lua flow_on_delete): they never run."""
    other = Queue(queue.name + "-kids", url=redis_url)
    added: list[str] = []

    async def proc(job: Any) -> Any:
        child = await other.add("child", 1, parent=job)
        added.append(child.id)
        return "parent done, children run on"

    worker = Worker(queue.name, proc, url=redis_url, concurrency=1)
    task = asyncio.create_task(worker.run(handle_signals=False))
    try:
        parent = await queue.add("parent", {}, remove_on_complete=True)
        await parent.wait_until_finished(timeout=10)
        assert await other.get_state(added[0]) == "waiting"
    finally:
        await worker.close()
        await task
        await other.obliterate(force=True)
        await other.close()


def _cpu_step(job: Any) -> Any:
    """A --cpu-processes processor that is a step job, as the thread one of
    tests/test_step_jobs.py (_sync_step) is."""
    from minique import SyncQueue

    if job.name == "child":
        return job.data
    if job.data["step"] == 1:
        with SyncQueue(job.data["queue"], url=job.data["url"]) as q:
            q.add("child", 7, parent={"id": job.id, "queue": job.data["queue"],
                                      "token": job.token})
            q.update_job_data(job.id, {**job.data, "step": 2})
        raise WaitingChildren()
    return "second run"


async def test_a_cpu_process_step_job_adds_children_to_itself_with_its_token(
        queue: Queue, redis_url: str) -> None:
    """docs/guide/flows.md: a --cpu-processes processor may raise WaitingChildren too. It gets
    a JobSnapshot, which parent= refused (and the {'id', 'queue'} form carried no token):
    it could not add the children to wait for. It now names its job with
    {'id', 'queue', 'token'}."""
    worker = Worker(queue.name, _cpu_step, url=redis_url, processes=1)
    task = asyncio.create_task(worker.run(handle_signals=False))
    try:
        parent = await queue.add("parent", {"step": 1, "url": redis_url, "queue": queue.name})
        assert await parent.wait_until_finished(timeout=20) == "second run"
    finally:
        await worker.close()
        await task


async def test_a_retried_step_job_fails_again_with_the_old_childs_reason(
        queue: Queue) -> None:
    """docs/guide/flows.md: "A child that fails it (fail_parent) while it runs fails it
    when it raises WaitingChildren". Once it has so failed and is retried by hand
    (Queue.retry_job), its new run adds a new child that is fine and waits for it; it fails
    at once instead, with the first run's child's reason: the mark ('cff') is never
    cleared."""
    parent = await queue.add("parent", {})
    [(pid, ptok)] = await fetch(queue, 1)
    running = await queue.get_job(pid)
    assert running is not None
    await queue.add("child", "bad", parent=running)
    [(cid, ctok)] = await fetch(queue, 1)
    await finish(queue, [(cid, ctok, "f", "child broke", "stack", 0, -1, -1)])
    await finish(queue, [_k(pid, ptok)])
    assert await parent.get_state() == "failed"  # as documented

    await queue.retry_job(pid)
    [(pid2, ptok2)] = await fetch(queue, 1)
    assert pid2 == pid
    running = await queue.get_job(pid)
    assert running is not None
    await queue.add("child", "good", parent=running)
    await finish(queue, [_k(pid, ptok2)])
    assert await parent.get_state() == "waiting-children", await queue.redis.hget(
        queue.keys.job(pid), "fr")


async def test_a_step_job_killed_after_raising_waiting_children_runs_before_its_children(
        queue: Queue) -> None:
    """Step jobs: the parent "runs again, from the start, once every child is done";
    nothing may be lost across kill -9. A worker killed after the processor added its
    child, moved to the next step (update_data) and raised WaitingChildren, but before
    its batched 'k' result reached Redis: the stalled sweep (stalled.lua) puts the parent
    back at the front of the line although its child is pending, and its next step runs
    without its child's value."""
    from minique import scripts

    await queue.add("parent", {"step": 1})
    [(pid, _tok)] = await fetch(queue, 1, lease_ms=1, worker="killed")
    running = await queue.get_job(pid)
    assert running is not None
    child = await queue.add("child", 1, parent=running)
    await running.update_data({"step": 2})
    # kill -9 here: the 'k' result was still in the worker's batch
    await asyncio.sleep(0.01)
    await scripts.run(queue.redis, "stalled", queue.keys.vector,
                      [queue.keys.job_prefix, 5, 100, -1, -1, "sweeper"])
    assert await child.get_state() == "waiting"
    got = await fetch(queue, 1)
    assert got[0][0] != pid, "the parent's next step was handed out before its child ran"


async def test_a_step_job_with_expires_fails_as_never_started_after_its_children(
        queue: Queue, redis_url: str) -> None:
    """docs/guide/queue.md: `expires` runs the job "only if an attempt starts within" that
    time; docs/guide/flows.md: WaitingChildren uses no attempt, and the job "runs again
    ... once every child is done". A step job that started at once, whose child takes
    longer than its `expires`, fails on its second step with "expired: not started
    within 1s of being added", its attempt 1 having started in time."""
    async def proc(job: Any) -> Any:
        if job.name == "child":
            await asyncio.sleep(1.5)
            return 1
        if job.data["step"] == 1:
            await job.queue.add("child", 1, parent=job)
            await job.update_data({"step": 2})
            raise WaitingChildren()
        return "step 2"

    worker = Worker(queue.name, proc, url=redis_url, concurrency=3)
    task = asyncio.create_task(worker.run(handle_signals=False))
    try:
        parent = await queue.add("parent", {"step": 1}, expires=1)
        assert await parent.wait_until_finished(timeout=10) == "step 2"
    finally:
        await worker.close()
        await task
