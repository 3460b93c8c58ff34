"""Changing a job's priority or delay after it was added (BullMQ's changePriority and
changeDelay): docs/guide/queue.md, "Changing a job's priority or delay"."""

from __future__ import annotations

import asyncio
from typing import Any

import driver
import pytest
from held_support import (
    fresh_prefix,
    last_held,
    redis_ms,
    started,
    started_at_least,
    starts,
    warm_worker,
)
from helpers import wait_until
from resend import held_around, proxied_queue

from minique import Queue, Worker
from minique.errors import InvalidJobState, JobNotFound
from minique.server import RedisServer


async def _order(q: Queue, n: int) -> list[str]:
    return [job_id for job_id, _ in await driver.fetch(q, n)]


async def test_a_waiting_job_moves_to_the_end_of_its_new_priority(queue: Queue) -> None:
    a, b, c, d = await queue.add_bulk([("t", 1, {}), ("t", 2, {}), ("t", 3, {"priority": 5}),
                                       ("t", 4, {"priority": 5})])
    await b.change_priority(1)  # ahead of everything
    await c.change_priority(0)  # to the end of the plain line, behind a
    await d.change_priority(5)  # the same: it keeps its place
    assert b.priority == 1
    assert await _order(queue, 4) == [b.id, d.id, a.id, c.id]


async def test_a_grouped_job_moves_within_its_group(queue: Queue) -> None:
    jobs = await queue.add_bulk([("t", i, {"group": "acct-1"}) for i in range(3)])
    await jobs[2].change_priority(1)
    info = await queue.get_group("acct-1")
    assert info is not None and info.waiting == 3  # moved, not counted twice
    assert (await queue.get_stats())["waiting"] == 3
    assert await _order(queue, 1) == [jobs[2].id]


async def test_other_states_keep_their_place_and_use_the_priority_when_waiting_again(
        queue: Queue) -> None:
    plain = await queue.add("t", 0)
    delayed = await queue.add("t", 1, delay=3600)
    await delayed.change_priority(2)
    assert await queue.get_state(delayed.id) == "delayed"
    await delayed.promote()
    assert await _order(queue, 2) == [delayed.id, plain.id]


async def test_change_delay_moves_a_delayed_job_and_refuses_the_rest(queue: Queue) -> None:
    soon = await queue.add("t", 1, delay=3600)
    late = await queue.add("t", 2, delay=0.2)
    mark = await queue.redis.xrevrange(queue.keys.events, "+", "-", count=1)
    await soon.change_delay(0.05)
    await late.change_delay(3600)
    h = await queue.redis.hget(queue.keys.job(soon.id), "due")
    assert h is not None and int(h) - await redis_ms(queue) <= 60
    await asyncio.sleep(0.1)  # soon is due now (a worker's call promotes it)
    assert await _order(queue, 2) == [soon.id]
    assert await queue.get_state(late.id) == "delayed"
    after = await queue.redis.xrange(queue.keys.events, mark[0][0] if mark else "-", "+")
    assert sum(1 for _, f in after if f.get(b"ev") == b"delayed") >= 2
    waiting = await queue.add("t", 3)
    with pytest.raises(InvalidJobState):
        await waiting.change_delay(5)
    with pytest.raises(JobNotFound):
        await queue.change_delay("no-such-job", 5)
    with pytest.raises(JobNotFound):
        await queue.change_priority("no-such-job", 5)
    with pytest.raises(ValueError):
        await queue.change_delay(late.id, -1)
    with pytest.raises(ValueError):
        await queue.change_priority(late.id, 2**21)
    assert not await queue.redis.exists(queue.keys.job("no-such-job"))


async def test_change_delay_refuses_a_schedulers_firing(queue: Queue) -> None:
    await queue.upsert_job_scheduler("hourly", cron="0 * * * *", job_name="t")
    firing = (await queue.get_job_ids("delayed"))[0]
    with pytest.raises(InvalidJobState, match="scheduler"):
        await queue.change_delay(firing, 1)


async def test_a_held_job_is_handed_back_then_moved(queue: Queue) -> None:
    jobs = await queue.add_bulk([("t", i) for i in range(4)])
    tokens = await driver.hold(queue, 2, 5000)  # a long hold: the holder must answer
    second = list(tokens)[1]
    change = asyncio.create_task(queue.change_priority(second, 1))
    await asyncio.sleep(0.2)
    assert not change.done(), "change_priority returned before the holder answered"
    await driver.hand_back(queue, tokens)
    await asyncio.wait_for(change, 10)
    assert await _order(queue, 4) == [second, jobs[0].id, jobs[2].id, jobs[3].id]


async def test_a_raised_priority_does_not_wait_behind_held_jobs(
        redis_url: str, procs: list[Any]) -> None:
    """A job whose priority is raised goes ahead of the jobs a worker holds, as when added
    with that priority (a worker taking one job at a time takes it next)."""
    prefix = fresh_prefix("held")
    q = Queue("held", url=redis_url, prefix=prefix)
    await warm_worker(redis_url, procs, q, prefix, concurrency=1)
    ids = [j.id for j in await q.add_bulk([("tick", {}) for _ in range(3000)])]
    await wait_until(lambda: started_at_least(q, 50), timeout=20, message="jobs running")
    await q.change_priority(ids[-1], 1)
    changed_at = await redis_ms(q)
    await wait_until(lambda: started(q, ids[-1]), timeout=20, message="the job ran")
    seen = await starts(q)
    started_at = next(ms for job_id, ms, _ in seen if job_id == ids[-1])
    between = [s for s in seen if changed_at < s[1] < started_at]
    assert len(between) <= 2, f"{len(between)} held jobs started before the raised one"
    await q.obliterate(force=True)
    await q.close()


async def test_a_real_workers_held_job_raised_starts_next(queue: Queue, redis_url: str) -> None:
    """A job the worker holds when its priority is raised: once change_priority() returns,
    the worker starts it before any other job it had not started yet."""
    order: list[str] = []
    returned_at: list[int] = []

    async def work(job: Any) -> None:
        order.append(job.id)
        await asyncio.sleep(0.001)

    ids = [j.id for j in await queue.add_bulk([("t", 0) for _ in range(400)])]
    worker = Worker(queue.name, work, url=redis_url, concurrency=1)
    worker._prefetch = lambda: 50  # type: ignore[method-assign]
    task = asyncio.create_task(worker.run(handle_signals=False))
    target: list[str] = []
    try:
        target.append(await last_held(queue, ids[100:300]))
        await queue.change_priority(target[0], 1)
        returned_at.append(len(order))
        await wait_until(lambda: len(order) >= 400, timeout=60, message="400 jobs started")
    finally:
        await worker.close()
        await task
    at = order.index(target[0])
    # At most the job running when the call returned may start after it and before the
    # raised one (its start may not have been seen yet).
    assert at <= returned_at[0] + 1, (
        f"{at - returned_at[0]} jobs started between the call's return and the raised job")
    assert ids.index(target[0]) - at >= 3, "the job was next anyway: the test proves nothing"


async def test_a_resent_priority_change_moves_the_job_once(redis_server: RedisServer) -> None:
    async with proxied_queue(redis_server, "cp-resend") as (q, direct, proxy):
        for i in range(3):
            await direct.add("x", i, job_id=f"j{i}", priority=3)
        # j0 to priority 2; meanwhile another client sets it back to 3 (the end of that
        # line): a re-send must not set 2 again.
        await held_around(proxy, direct.redis, q.change_priority("j0", 2),
                           lambda: direct.change_priority("j0", 3))
        assert await _order(direct, 3) == ["j1", "j2", "j0"]


@pytest.mark.parametrize("holder", ["hands it back", "dies"])
async def test_a_held_job_lowered_to_no_priority_goes_to_the_end_of_the_line(
        queue: Queue, holder: str) -> None:
    a, b, c, d = await queue.add_bulk([("t", 1, {"priority": 2}), ("t", 2, {"priority": 2}),
                                       ("t", 3, {"priority": 2}), ("t", 4, {})])
    async def asked() -> bool:  # the call reached Redis, and waits for the holder
        # (the place it goes back to, valid under its token: lua/includes/base.lua)
        return (await queue.redis.hget(queue.keys.job(b.id), "ps") or b"").endswith(b"@end")

    if holder == "hands it back":
        tokens = await driver.hold(queue, 2, 5000)
        assert list(tokens) == [a.id, b.id]
        change = asyncio.create_task(queue.change_priority(b.id, 0))
        await wait_until(asked, timeout=5, message="change_priority reached Redis")
        assert not change.done()
        await driver.hand_back(queue, tokens)
    else:
        await driver.take(queue, "dead", 0, 2, lease_ms=1)
        change = asyncio.create_task(queue.change_priority(b.id, 0))
        await wait_until(asked, timeout=5, message="change_priority reached Redis")

        async def swept() -> bool:  # another worker's stalled sweep takes them back
            await queue._run("stalled", [1, 100, 100, -1, "sweeper"])
            return all([await queue.get_state(j.id) == "waiting" for j in (a, b)])
        await wait_until(swept, timeout=5, message="the dead worker's holds taken back")
    await asyncio.wait_for(change, 10)
    assert await _order(queue, 4) == [a.id, c.id, d.id, b.id]


async def test_a_place_recorded_under_an_earlier_token_is_not_where_it_goes_back(
        queue: Queue) -> None:
    # The take writes a held job's place ('ps') only when it popped the job with a score,
    # tagged with its token: a job read from the stream leaves an earlier hold's place in
    # its hash, which must not send it back there (ahead of the jobs added before it).
    x = await queue.add("x", 0, priority=2)
    a, b = await queue.add_bulk([("a", 0), ("b", 0)])
    tokens = await driver.hold(queue, 1, 5000)
    assert list(tokens) == [x.id]  # taken with its priority score
    assert await driver.hand_back(queue, tokens) == [1]
    await queue.change_priority(x.id, 0)  # waiting: to the end of the plain line
    tokens = await driver.hold(queue, 3, 5000)
    assert list(tokens) == [a.id, b.id, x.id]
    assert await driver.hand_back(queue, {x.id: tokens[x.id]}) == [1]
    assert await driver.hand_back(queue, {i: tokens[i] for i in (a.id, b.id)}) == [1, 1]
    assert await _order(queue, 3) == [a.id, b.id, x.id]
