"""queue.get_counts_per_priority (BullMQ's getCountsPerPriority), against a real Redis:
every place a waiting job of a priority can be (stream, priority bands, LIFO, the head of
the line, held by a worker, groups) counts at its priority."""

from __future__ import annotations

from typing import Any

import pytest
from driver import back_to_wait, fetch, finish, forget_holds, hand_back, hold

from minique import Queue, SyncQueue


async def test_counts_every_waiting_job_at_its_priority(queue: Queue) -> None:
    await queue.add_bulk([("x", i, {"priority": p}) for i, p in enumerate([0, 0, 1, 2, 2, 2])])
    await queue.add("lifo", 0, lifo=True)
    await queue.add("later", 0, priority=1, delay=3600)  # delayed: not waiting
    await queue.add_bulk([("g", i, {"group": f"g{i % 2}", "priority": i % 3}) for i in range(6)])
    counts = await queue.get_counts_per_priority([0, 1, 2, 3])
    assert counts == {0: 3 + 2, 1: 1 + 2, 2: 3 + 2, 3: 0}
    # The sum over every priority present is the waiting count of get_stats.
    assert sum(counts.values()) == (await queue.get_stats())["waiting"]
    assert await queue.get_counts_per_priority([2, 2, 0]) == {2: 5, 0: 5}
    assert await queue.get_counts_per_priority([]) == {}


async def test_held_jobs_and_jobs_back_at_the_head_count_at_their_priority(queue: Queue) -> None:
    await queue.add_bulk([("x", i, {"priority": 3}) for i in range(4)])
    await queue.add_bulk([("x", i) for i in range(2)])
    await queue.add("l", 0, lifo=True)
    expected = {0: 3, 3: 4}
    tokens = await hold(queue, 3, 30000)  # three of priority 3, held: still waiting
    assert await queue.get_counts_per_priority([0, 3]) == expected
    await hand_back(queue, tokens)
    assert await queue.get_counts_per_priority([0, 3]) == expected
    # Taken and sent back rate limited: the head of the line (the front band), priority kept.
    taken = await fetch(queue, 2)
    assert await queue.get_counts_per_priority([0, 3]) == {0: 3, 3: 2}
    await finish(queue, [back_to_wait(*t) for t in taken])
    assert await queue.redis.zcount(queue.keys.pri, "-inf", f"({2**32}") == 2
    assert await queue.get_counts_per_priority([0, 3]) == expected
    # Held LIFO and plain jobs count as priority 0.
    await forget_holds(queue)  # (the driver's holders never answer: no 30 s wait)
    await queue.drain()
    await queue.add_bulk([("x", 0), ("x", 1)])
    await queue.add("l", 0, lifo=True)
    await hold(queue, 2, 30000)
    assert await queue.get_counts_per_priority([0]) == {0: 3}


@pytest.mark.parametrize("priorities, error", [
    ([-1], ValueError), ([2**21], ValueError), ([True], ValueError), (["1"], ValueError),
    ("12", TypeError), (3, TypeError), (list(range(1001)), ValueError),
])
async def test_bad_priorities_are_refused(queue: Queue, priorities: Any,
                                          error: type[Exception]) -> None:
    with pytest.raises(error):
        await queue.get_counts_per_priority(priorities)


def test_the_sync_form(redis_url: str, qname: str) -> None:
    with SyncQueue(qname, url=redis_url) as q:
        q.add("x", 1, priority=4)
        q.add("y", 1, lifo=True)
        assert q.get_counts_per_priority([0, 4]) == {0: 1, 4: 1}
        q.obliterate(force=True)


async def test_get_job_counts_gives_the_states_asked(queue: Queue) -> None:
    """BullMQ's getJobCounts: the states asked, from one snapshot; all without arguments."""
    await queue.add("a", 1)
    await queue.add("b", 2, delay=60)
    assert await queue.get_job_counts("waiting", "delayed") == {"waiting": 1, "delayed": 1}
    every = await queue.get_job_counts()
    assert every["waiting"] == 1 and every["delayed"] == 1 and "total" not in every
    assert set(every) == set(await queue.get_stats()) - {"total"}
    with pytest.raises(ValueError, match="prioritised"):
        await queue.get_job_counts("prioritised")
