"""LIFO jobs (BullMQ's ``lifo: true``): the head of the plain line, behind every priority,
however they become waiting; against a real Redis, through the transition scripts."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest
from driver import complete, fetch, finish, forget_holds, hand_back, hold, retry, take
from helpers import wait_until

from minique import FlowProducer, Queue, Worker


async def names(q: Queue, ids: list[str]) -> list[str]:
    return [(await q.get_job(i)).name for i in ids]  # type: ignore[union-attr]


async def taken_names(q: Queue, want: int) -> list[str]:
    return await names(q, [i for i, _ in await fetch(q, want)])


async def test_lifo_jobs_go_to_the_head_of_the_plain_line_behind_every_priority(
        queue: Queue) -> None:
    await queue.add_bulk([("a", 0), ("b", 0)])
    await queue.add("x", 0, lifo=True)
    await queue.add("p2", 0, priority=2)
    await queue.add_bulk([("y", 0, {"lifo": True}), ("c", 0)])
    await queue.add("p1", 0, priority=1)
    expected = ["p1", "p2", "y", "x", "a", "b", "c"]
    # Listed in the order they run, then taken in that order.
    assert await names(queue, await queue.get_job_ids("waiting")) == expected
    assert await taken_names(queue, 10) == expected


async def test_a_lifo_job_reads_back_as_such(queue: Queue) -> None:
    job = await queue.add("x", 1, lifo=True)
    assert (job.priority, job.lifo) == (0, True)
    stored = await queue.get_job(job.id)
    assert stored is not None and (stored.priority, stored.lifo) == (0, True)
    plain = await queue.get_job((await queue.add("y", 1)).id)
    assert plain is not None and plain.lifo is False
    [(job_id, _)] = await fetch(queue, 1)
    assert job_id == job.id


@pytest.mark.parametrize("options, error, message", [
    ({"lifo": True, "priority": 3}, ValueError, "lifo applies to jobs without a priority"),
    ({"lifo": 1}, TypeError, "lifo must be a bool"),
    ({"lifo": "yes"}, TypeError, "lifo must be a bool"),
])
async def test_bad_lifo_options_are_refused(queue: Queue, options: dict[str, Any],
                                            error: type[Exception], message: str) -> None:
    with pytest.raises(error, match=message):
        await queue.add("x", 1, **options)
    assert (await queue.get_stats())["total"] == 0


async def test_a_queue_default_of_lifo_applies_to_every_add(redis_url: str, qname: str) -> None:
    q = Queue(qname, url=redis_url, default_job_options={"lifo": True})
    try:
        await q.add_bulk([("a", 0), ("b", 0)])
        await q.add("c", 0)
        assert await taken_names(q, 5) == ["c", "b", "a"]
        with pytest.raises(ValueError, match="without a priority"):
            await q.add("p", 0, priority=1)
        await q.add("p", 0, priority=1, lifo=False)
    finally:
        await q.obliterate(force=True)
        await q.close()


async def test_a_retried_or_fallen_due_lifo_job_goes_to_the_head_again(queue: Queue) -> None:
    job = await queue.add("x", 0, lifo=True)
    [(job_id, token)] = await fetch(queue, 1)
    await queue.add_bulk([("a", 0), ("b", 0)])
    statuses, _, _ = await finish(queue, [retry(job_id, token)])  # again at once
    assert statuses == [1]
    assert await taken_names(queue, 1) == ["x"]
    late = await queue.add("late", 0, lifo=True, delay=0.05)
    await queue.add("c", 0)

    async def due_first() -> bool:
        ids = await queue.get_job_ids("waiting")
        return bool(ids) and ids[0] == late.id
    await queue.promote_job(late.id)
    await wait_until(due_first, timeout=5, message="the promoted LIFO job first")
    assert await taken_names(queue, 5) == ["late", "a", "b", "c"]
    assert job.lifo


async def test_grouped_lifo_jobs_run_newest_first_within_their_group(queue: Queue) -> None:
    await queue.add_bulk([("g1", 0, {"group": "g"}), ("g2", 0, {"group": "g"})])
    await queue.add("g3", 0, group="g", lifo=True)
    await queue.add("g4", 0, group="g", lifo=True)
    order: list[str] = []
    for _ in range(4):
        taken = await fetch(queue, 1)
        order += await names(queue, [i for i, _ in taken])
        await finish(queue, [complete(*t) for t in taken])
    assert order == ["g4", "g3", "g1", "g2"]


async def test_a_held_plain_job_gives_way_to_a_lifo_job(queue: Queue) -> None:
    """A worker holds the head of the line; a LIFO job added meanwhile asks it to hand
    back (a control change), and the held job returns behind the LIFO job, where it would
    be had it never been taken."""
    await queue.add_bulk([("a", 0), ("b", 0)])
    cv = await queue.redis.hget(queue.keys.meta, "cv")
    tokens = await hold(queue, 1, 30000)
    await queue.add("x", 0, lifo=True)
    assert await queue.redis.hget(queue.keys.meta, "cv") != cv  # the holders were asked
    assert await hand_back(queue, tokens) == [1]
    assert await taken_names(queue, 5) == ["x", "a", "b"]


async def test_a_held_lifo_job_handed_back_returns_behind_a_newer_lifo_job(queue: Queue) -> None:
    await queue.add_bulk([("a", 0)])
    await queue.add("x", 0, lifo=True)
    tokens = await hold(queue, 1, 30000)  # x
    await queue.add("y", 0, lifo=True)  # newer: ahead of x had x never been taken
    assert await hand_back(queue, tokens) == [1]
    assert await taken_names(queue, 5) == ["y", "x", "a"]


async def test_change_priority_sets_and_clears_lifo(queue: Queue) -> None:
    jobs = await queue.add_bulk([("a", 0), ("b", 0), ("c", 0)])
    await jobs[2].change_priority(0, lifo=True)
    assert jobs[2].lifo
    stored = await queue.get_job(jobs[2].id)
    assert stored is not None and stored.lifo and stored.priority == 0
    assert await names(queue, await queue.get_job_ids("waiting")) == ["c", "a", "b"]
    await queue.change_priority(jobs[2].id, 0)  # plain again: the end of the line
    assert await names(queue, await queue.get_job_ids("waiting")) == ["a", "b", "c"]
    with pytest.raises(ValueError, match="priority 0 only"):
        await queue.change_priority(jobs[0].id, 2, lifo=True)
    with pytest.raises(TypeError, match="lifo must be a bool"):
        await queue.change_priority(jobs[0].id, 0, lifo=1)  # type: ignore[arg-type]


async def test_change_priority_to_lifo_of_a_held_job_returns_it_to_the_head(
        queue: Queue) -> None:
    await queue.add_bulk([("a", 0), ("b", 0), ("c", 0)])
    tokens = await hold(queue, 3, 30000)
    c_id = next(i for i in tokens if i == "3")
    task = asyncio.create_task(queue.change_priority(c_id, 0, lifo=True))

    async def asked() -> bool:
        return await queue.redis.hget(queue.keys.job(c_id), "ps") is not None
    await wait_until(asked, message="the held job's place changed")
    assert await hand_back(queue, tokens) == [1, 1, 1]
    await asyncio.wait_for(task, 5)
    assert await taken_names(queue, 5) == ["c", "a", "b"]


async def test_a_lifo_flow_parent_goes_to_the_head_when_its_children_are_done(
        queue: Queue, redis_url: str) -> None:
    flow = FlowProducer(url=redis_url)
    try:
        node = await flow.add({"name": "parent", "queue": queue.name, "opts": {"lifo": True},
                               "children": [{"name": "child", "queue": queue.name}]})
        await queue.add_bulk([("a", 0), ("b", 0)])
        child = [(i, t) for i, t in await fetch(queue, 1)]
        assert child[0][0] == node.children[0].job.id
        await finish(queue, [complete(*child[0])])
        assert await taken_names(queue, 5) == ["parent", "a", "b"]
    finally:
        await flow.close()


async def test_a_lifo_scheduler_fires_at_the_head_of_the_plain_line(
        queue: Queue, redis_url: str) -> None:
    await queue.add_bulk([("a", 0), ("b", 0)])
    await queue.upsert_job_scheduler("s", every=3600, job_name="tick",
                                     job_options={"lifo": True})
    ran: list[str] = []

    async def work(job: Any) -> None:
        ran.append(job.name)

    worker = Worker(queue.name, work, url=redis_url, concurrency=1)
    task = asyncio.create_task(worker.run(handle_signals=False))
    try:
        await wait_until(lambda: len(ran) >= 3, timeout=10, message="three jobs ran")
    finally:
        await worker.close()
        await task
    assert ran[:3] == ["tick", "a", "b"]


async def test_a_delayed_job_raised_to_lifo_caps_the_holds_until_it_is_due(queue: Queue) -> None:
    """A take grants no hold past the moment a prioritized or LIFO delayed job falls due
    (lua/includes/take.lua); a delayed job raised by change_priority counts too."""
    late = await queue.add("x", 0, delay=30)
    await queue.add_bulk([("a", 0), ("b", 0)])
    raw = await take(queue, "w", 0, 1, hold_ms=50000)
    assert int(raw[7]) == 50000  # nothing ahead: the hold asked for
    await queue.change_priority(late.id, 0, lifo=True)
    await forget_holds(queue)
    raw = await take(queue, "w", 0, 1, hold_ms=50000)
    assert 0 < int(raw[7]) <= 30000
