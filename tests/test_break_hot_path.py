"""Hostile tests of the hot path (shared event entries, read-only-where-needed marks,
early sends): each one a failure found, kept as a regression test."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from typing import Any

import pytest
from helpers import wait_until

from minique import Queue, QueueEvents, Worker
from minique.events import Event, parse_entry


@pytest.fixture
async def other(redis_url: str, qname: str) -> AsyncIterator[Queue]:
    q = Queue(qname + "-b", url=redis_url)
    yield q
    await q.obliterate(force=True)
    await q.close()


async def _run_until(worker: Worker, condition: Any, timeout: float, message: str) -> None:
    task = asyncio.create_task(worker.run())
    try:
        await wait_until(condition, timeout=timeout, message=message)
    finally:
        await worker.close()
        await task


async def test_a_grouped_parent_released_by_a_child_in_another_queue_runs(
        queue: Queue, other: Queue, redis_url: str) -> None:
    """The child finishes in `queue` (a script of `queue`); its parent waits in a group of
    `other`. Releasing it must schedule the group in `other`'s round-robin and count it in
    `other`'s group index, not `queue`'s: a worker of `other` that is running meanwhile
    (so the group left `other`'s round-robin while the parent waited for its child) must
    run the parent."""
    parent = await other.add("p", 1, group="acct")
    child = await queue.add("c", 2, parent={"id": parent.id, "queue": other.name})
    marker = await other.add("m", 3, group="acct")
    other_worker = Worker(other.name, lambda job: job.name, url=redis_url)
    task = asyncio.create_task(other_worker.run())
    try:
        # The group's round-robin turn was used up by the marker: the group is idle now.
        await wait_until(lambda: _state_is(marker, "completed"), 10, message="marker")
        await _run_until(Worker(queue.name, lambda job: "child", url=redis_url),
                         lambda: _state_is(child, "completed"), 10, "child completed")
        await wait_until(lambda: _state_is(parent, "completed"), 10, message="parent ran")
    finally:
        await other_worker.close()
        await task
    assert not await queue.redis.exists(f"{queue.keys.base}:groups")
    assert not await queue.redis.exists(f"{queue.keys.base}:gready")
    # Each job's events are in its own queue's stream, in lifecycle order.
    assert await _names_of(other, parent.id) == [
        "added", "waiting", "waiting-children", "waiting", "active", "completed"]
    assert await _names_of(queue, child.id) == ["added", "waiting", "active", "completed"]


async def _events(queue: Queue) -> list[Event]:
    return [e for eid, raw in await queue.redis.xrange(queue.keys.events)
            for e in parse_entry(eid, raw)]


async def _names_of(queue: Queue, job_id: str) -> list[str]:
    return [e.name for e in await _events(queue) if e.job_id == job_id]


async def _state_is(job: Any, state: str) -> bool:
    return bool(await job.get_state() == state)


async def test_hundreds_of_concurrent_waiters_on_one_queue(queue: Queue, redis_url: str) -> None:
    """Like BullMQ's waitUntilFinished on every job of a batch: 300 waiters at once on one
    Queue (whose connection pool holds 100) while a busy worker completes the jobs. Each
    waiter must get its own job's value, not MaxConnectionsError."""
    n = 300
    jobs = await queue.add_bulk([("x", i, {"job_id": f"w:{i}|{i}:x"}) for i in range(n)])
    waiters = [asyncio.create_task(job.wait_until_finished(timeout=60)) for job in jobs]
    await asyncio.sleep(0)  # every waiter is waiting before the worker starts

    async def echo(job: Any) -> Any:
        return {"id": job.id, "twice": job.data * 2}

    worker = Worker(queue.name, echo, url=redis_url, concurrency=50)
    task = asyncio.create_task(worker.run())
    try:
        results = await asyncio.gather(*waiters, return_exceptions=True)
    finally:
        await worker.close()
        await task
    assert results == [{"id": job.id, "twice": job.data * 2} for job in jobs]


async def test_resuming_from_a_persisted_event_id_loses_nothing(
        queue: Queue, redis_url: str) -> None:
    n = 200
    await queue.add_bulk([("x", i) for i in range(n)])
    start = (await queue.redis.xrevrange(queue.keys.events, count=1))[0][0].decode()
    await _run_until(Worker(queue.name, lambda job: job.data, url=redis_url, concurrency=50),
                     lambda: _all_completed(queue, n), 30, "all completed")
    saved, completed = start, set()
    # A consumer that stores the id of each event it handled, and restarts (a new
    # QueueEvents from the stored id) after every 7th event, as after a crash.
    while len(completed) < n:
        handled = 0
        async with QueueEvents(queue.name, url=redis_url, last_id=saved) as events:
            event = await events.next(timeout=2)
            while event is not None and handled < 7:
                if event.name == "completed":
                    completed.add(event.job_id)
                saved, handled = event.event_id, handled + 1
                if handled < 7:
                    event = await events.next(timeout=2)
        if event is None:
            break
    assert len(completed) == n


async def _all_completed(queue: Queue, n: int) -> bool:
    return (await queue.get_stats())["completed"] >= n
