"""Step jobs with children (BullMQ's moveToWaitingChildren and WaitingChildrenError): a
running job adds children to itself and raises WaitingChildren; it waits in
waiting-children without using an attempt, and runs again once they are done. Real
workers against a real Redis."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from typing import Any

import pytest
from driver import complete, fetch, finish
from helpers import wait_until

from minique import InvalidJobState, JobFailed, Queue, WaitingChildren, Worker
from minique.events import read_events_back


@asynccontextmanager
async def running(queue: Queue, redis_url: str,
                  proc: Callable[[Any], Awaitable[Any]]) -> AsyncIterator[Worker]:
    worker = Worker(queue.name, proc, url=redis_url, concurrency=5)
    task = asyncio.create_task(worker.run(handle_signals=False))
    try:
        yield worker
    finally:
        await worker.close()
        await task


async def test_a_job_waits_for_the_children_it_added_then_runs_its_next_step(
        queue: Queue, redis_url: str) -> None:
    runs: list[Any] = []

    async def proc(job: Any) -> Any:
        if job.name == "child":
            await asyncio.sleep(0.05)
            return job.data * 10
        step = job.data["step"]
        runs.append(step)
        if step == 1:
            for i in range(3):
                await job.queue.add("child", i, parent=job)
            await job.update_data({"step": 2})
            raise WaitingChildren()
        values = await job.get_children_values()
        return sorted(values.values())

    async with running(queue, redis_url, proc):
        parent = await queue.add("parent", {"step": 1})

        assert await parent.wait_until_finished(timeout=10) == [0, 10, 20]
    assert runs == [1, 2]
    events = [(e.name, e.job_id) for e in await read_events_back(queue.redis, queue.keys, "+",
                                                                  1000)]
    assert ("waiting-children", parent.id) in events
    done = await queue.get_job(parent.id)
    assert done is not None and done.attempts_made == 1  # the wait used no attempt
    assert (await queue.get_stats())["completed"] == 4


async def test_children_done_before_the_wait_let_it_run_again_at_once(queue: Queue) -> None:
    parent = await queue.add("parent", {})
    [(pid, ptok)] = await fetch(queue, 1)
    running_parent = await queue.get_job(pid)
    assert running_parent is not None and running_parent.token == ptok
    child = await queue.add("child", 1, parent=running_parent)
    [(cid, ctok)] = await fetch(queue, 1)
    assert cid == child.id
    await finish(queue, [complete(cid, ctok)])
    assert await parent.get_state() == "active"  # it runs on: its children do not move it
    statuses, _, _ = await finish(queue, [(pid, ptok, "k", "waiting for its children", "",
                                           0, -1, -1)])
    assert statuses == [1]
    assert await parent.get_state() == "waiting"
    [(again, _)] = await fetch(queue, 1)  # at the head of the line
    assert again == pid


async def test_a_child_that_fails_it_while_it_runs_fails_it_when_it_waits(
        queue: Queue, redis_url: str) -> None:
    async def proc(job: Any) -> Any:
        if job.name == "child":
            raise RuntimeError("child broke")
        if job.data["step"] == 1:
            child = await job.queue.add("child", 0, parent=job)

            async def child_failed() -> bool:
                return await child.get_state() == "failed"
            await wait_until(child_failed, timeout=10, message="the child failed")
            await job.update_data({"step": 2})
            raise WaitingChildren()
        return "ran again"

    async with running(queue, redis_url, proc):
        parent = await queue.add("parent", {"step": 1})
        with pytest.raises(JobFailed, match=r"child .* failed: RuntimeError: child broke"):
            await parent.wait_until_finished(timeout=10)
    assert await parent.get_state() == "failed"


async def test_only_the_running_job_itself_may_add_children_to_it(queue: Queue) -> None:
    parent = await queue.add("parent", {})
    [(pid, ptok)] = await fetch(queue, 1)
    with pytest.raises(InvalidJobState, match="by its own processor while it runs"):
        await queue.add("child", 1, parent={"id": pid, "queue": queue.name})
    stale = await queue.get_job(pid)
    assert stale is not None
    stale.token = "not-its-token"
    with pytest.raises(InvalidJobState):
        await queue.add("child", 1, parent=stale)
    assert (await queue.get_stats())["total"] == 1
    await finish(queue, [complete(pid, ptok)])
    assert await parent.get_state() == "completed"


def _sync_step(job: Any) -> Any:
    """A thread processor: adds its children with a SyncQueue of its own."""
    from minique import SyncQueue

    if job.name == "child":
        return job.data
    if job.data["step"] == 1:
        url = job.data["url"]
        with SyncQueue(job.queue.name, url=url) as q:
            for i in range(2):
                q.add("child", i, parent=job)
            q.update_job_data(job.id, {**job.data, "step": 2})
        raise WaitingChildren()
    return "second run"


async def test_a_thread_processor_adds_children_and_waits(queue: Queue, redis_url: str) -> None:
    worker = Worker(queue.name, _sync_step, url=redis_url, concurrency=2)
    task = asyncio.create_task(worker.run(handle_signals=False))
    try:
        parent = await queue.add("parent", {"step": 1, "url": redis_url})
        assert await parent.wait_until_finished(timeout=15) == "second run"
    finally:
        await worker.close()
        await task
    assert (await queue.get_stats())["completed"] == 3
