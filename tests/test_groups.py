"""Groups (docs/guide/groups.md), driven through the scripts as a worker would: the
round-robin, per-group concurrency and rate limits, pause, throttle, and the slot every way
out of active gives back. Real worker processes: tests/test_group_workers.py."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest
from driver import HEADER, JOB_FIELDS, complete, fail, fetch, finish, retry
from helpers import wait_until

from minique import Queue, Worker, scripts


def throttle(job_id: str, token: str, delay_ms: int) -> tuple[Any, ...]:
    return (job_id, token, "g", "429", "", delay_ms, -1, -1)


async def groups_of(q: Queue, taken: list[tuple[str, str]]) -> list[str | None]:
    out = []
    for job_id, _ in taken:
        job = await q.get_job(job_id)
        assert job is not None
        out.append(job.group)
    return out


async def group_active(q: Queue, group: str) -> int:
    return int(await q.redis.zscore(f"{q.keys.base}:gactive", group) or 0)


async def test_round_robin_across_groups(queue: Queue) -> None:
    await queue.add_bulk([("j", {"g": "big", "i": i}, {"group": "big"}) for i in range(20)])
    await queue.add_bulk([("j", {"g": g}, {"group": g}) for g in ("s1", "s2") for _ in range(2)])
    taken = await fetch(queue, 6)
    groups = await groups_of(queue, taken)
    # Each group with ready jobs gets one job per turn.
    assert sorted(groups[:3]) == ["big", "s1", "s2"]
    assert sorted(groups[3:]) == ["big", "s1", "s2"]


async def test_fifo_and_priority_inside_a_group(queue: Queue) -> None:
    a = await queue.add("j", 1, group="g")
    b = await queue.add("j", 2, group="g")
    c = await queue.add("j", 3, group="g", priority=1)
    ids = [i for i, _ in await fetch(queue, 1)] + [i for i, _ in await fetch(queue, 1)]
    ids += [i for i, _ in await fetch(queue, 1)]
    assert ids == [c.id, a.id, b.id]


async def test_ungrouped_jobs_take_turns_with_groups(queue: Queue) -> None:
    await queue.add_bulk([("j", None, {"group": "g"}) for _ in range(10)])
    await queue.add_bulk([("j", None) for _ in range(10)])
    taken = await fetch(queue, 4)
    groups = await groups_of(queue, taken)
    assert groups.count(None) == 2 and groups.count("g") == 2


async def test_group_concurrency_and_slot_back(queue: Queue) -> None:
    await queue.set_group_options("g", concurrency=2)
    await queue.add_bulk([("j", None, {"group": "g"}) for _ in range(5)])
    other = await queue.add("j", None, group="h")
    taken = await fetch(queue, 10)
    assert len(taken) == 3 and other.id in [i for i, _ in taken]
    assert await group_active(queue, "g") == 2
    mine = [t for t in taken if t[0] != other.id]
    assert await fetch(queue, 10) == []
    # Complete one: the slot comes back and the next job of g is taken.
    _, more, _ = await finish(queue, [complete(*mine[0])], 10)
    assert len(more) == 1 and await group_active(queue, "g") == 2
    # Fail, retry: every way out of active gives the slot back.
    _, more2, _ = await finish(queue, [fail(*mine[1]), retry(*more[0])], 10)
    assert len(more2) == 2 and await group_active(queue, "g") == 2
    stats = await queue.get_stats()
    assert stats["waiting"] == 1 and stats["active"] == 3


async def test_groups_without_settings_take_the_short_path_until_one_gets_settings(
        queue: Queue) -> None:
    # Until a group gets settings (or a pause, a throttle, defaults), takes read no group's
    # hash (meta 'gx'). The active counts are kept all along, so a concurrency set while
    # jobs run counts them at once.
    await queue.add_bulk([("j", None, {"group": "g"}) for _ in range(6)])
    taken = await fetch(queue, 3)
    assert len(taken) == 3 and await group_active(queue, "g") == 3
    assert await queue.redis.hget(queue.keys.meta, "gx") is None
    _, more, _ = await finish(queue, [complete(*taken[0])], 0)
    assert more == [] and await group_active(queue, "g") == 2
    await queue.set_group_options("g", concurrency=2)
    assert await queue.redis.hget(queue.keys.meta, "gx") == b"1"
    assert await fetch(queue, 10) == []  # two running already: at its concurrency
    _, more, _ = await finish(queue, [complete(*taken[1])], 10)
    assert len(more) == 1 and await group_active(queue, "g") == 2
    # Settings cleared: the group is unlimited again, and the queue keeps the long path.
    await queue.set_group_options("g")
    assert len(await fetch(queue, 10)) == 2 and await group_active(queue, "g") == 4
    info = await queue.get_group("g")
    assert info is not None and info.active == 4 and info.waiting == 0


async def test_group_rate_limit_sleeps_only_that_group(queue: Queue) -> None:
    await queue.set_group_options("g", limiter={"max": 2, "duration": 60})
    await queue.add_bulk([("j", None, {"group": "g"}) for _ in range(5)])
    await queue.add_bulk([("j", None, {"group": "h"}) for _ in range(5)])
    taken = await fetch(queue, 10)
    groups = await groups_of(queue, taken)
    assert groups.count("g") == 2 and groups.count("h") == 5
    info = {gi.id: gi for gi in await queue.get_groups()}
    assert info["g"].waiting == 3 and info["g"].rate_limited_until is None
    assert info["g"].limiter is not None and info["g"].limiter.max == 2
    # The wait info tells a blocked worker when the group may start again.
    _, _, header = await finish(queue, [], 1)
    assert int(header[2]) > int(header[4])


async def test_pause_and_resume_group(queue: Queue) -> None:
    await queue.add_bulk([("j", None, {"group": "g"}) for _ in range(3)])
    await queue.pause_group("g")
    await queue.add("j", None, group="h")
    taken = await fetch(queue, 10)
    assert len(taken) == 1
    assert [gi.paused for gi in await queue.get_groups() if gi.id == "g"] == [True]
    await queue.resume_group("g")
    assert len(await fetch(queue, 10)) == 3


async def test_group_throttle_uses_no_attempt_and_leaves_other_groups(queue: Queue) -> None:
    a = await queue.add("j", None, group="g")
    await queue.add("j", None, group="g")
    await queue.add_bulk([("j", None, {"group": "h"}) for _ in range(2)])
    taken = dict(await fetch(queue, 1))
    assert list(taken) == [a.id]
    statuses, more, _ = await finish(queue, [throttle(a.id, taken[a.id], 60_000)], 10)
    assert statuses == [1]
    # g sleeps; h goes on.
    assert await groups_of(queue, more) == ["h", "h"]
    job = await queue.get_job(a.id)
    assert job is not None and job.attempts_made == 0 and job.state == "waiting"
    info = {gi.id: gi for gi in await queue.get_groups()}
    assert info["g"].rate_limited_until is not None and info["g"].active == 0


async def test_throttle_of_a_job_without_group_delays_it_alone(queue: Queue) -> None:
    a = await queue.add("j", None)
    (jid, tok), = await fetch(queue, 1)
    await finish(queue, [throttle(jid, tok, 60_000)])
    assert await queue.get_state(a.id) == "delayed"


async def test_stalled_grouped_job_gives_its_slot_back(queue: Queue) -> None:
    from minique import scripts

    await queue.set_group_options("g", concurrency=1)
    await queue.add_bulk([("j", None, {"group": "g"}) for _ in range(2)])
    taken = await fetch(queue, 5, lease_ms=1)
    assert len(taken) == 1
    import asyncio
    await asyncio.sleep(0.01)
    await scripts.run(queue.redis, "stalled", queue.keys.vector,
                      [queue.keys.job_prefix, 5, 100, -1, -1, "other"])
    assert await group_active(queue, "g") == 0
    assert len(await fetch(queue, 5)) == 1


async def test_remove_drain_and_obliterate_grouped_jobs(queue: Queue) -> None:
    a = await queue.add("j", None, group="g")
    await queue.add_bulk([("j", None, {"group": "g"}) for _ in range(3)])
    assert await queue.remove_job(a.id)
    assert (await queue.get_stats())["waiting"] == 3
    assert await queue.drain() == 3
    assert (await queue.get_stats())["waiting"] == 0
    assert await fetch(queue, 5) == []
    await queue.add("j", None, group="g", delay=0.001)
    await queue.set_group_options("x", concurrency=3)
    await queue.obliterate(force=True)
    assert await queue.redis.keys(f"{queue.keys.base}*") == []


async def test_delayed_grouped_job_joins_its_group(queue: Queue) -> None:
    await queue.set_group_options("g", concurrency=1)
    await queue.add("j", None, group="g")
    d = await queue.add("j", None, group="g", delay=0.001)
    import asyncio
    await asyncio.sleep(0.01)
    taken = await fetch(queue, 5)
    assert len(taken) == 1 and taken[0][0] != d.id
    assert await queue.get_state(d.id) == "waiting"


@pytest.mark.parametrize("bad", ["", 5, None, "x" * 513])
async def test_bad_group_ids(queue: Queue, bad: Any) -> None:
    with pytest.raises(ValueError, match="group"):
        if bad is None:
            await queue.set_group_options(bad, concurrency=1)
        else:
            await queue.add("j", None, group=bad)
    assert (await queue.get_stats())["total"] == 0


@pytest.mark.parametrize(("kw", "exc"), [
    ({"concurrency": 0}, ValueError), ({"concurrency": True}, ValueError),
    ({"limiter": {"max": 0, "duration": 1}}, ValueError),
    ({"limiter": {"max": 1}}, TypeError), ({"limiter": {"max": 1, "duration": -1}}, ValueError),
    ({"limiter": 5}, TypeError)])
async def test_bad_group_options(queue: Queue, kw: dict[str, Any], exc: type[Exception]) -> None:
    with pytest.raises(exc):
        await queue.set_group_options("g", **kw)
    with pytest.raises(exc):
        await queue.set_group_defaults(**kw)


async def test_group_defaults_apply_to_groups_without_settings(queue: Queue) -> None:
    await queue.set_group_defaults(concurrency=1)
    await queue.set_group_options("wide", concurrency=3)
    await queue.add_bulk([("j", None, {"group": g}) for g in ("a", "wide") for _ in range(3)])
    taken = await fetch(queue, 10)
    assert len(taken) == 4


async def test_scheduler_firings_join_the_group_of_their_job_options(queue: Queue) -> None:
    await queue.set_group_options("acct", concurrency=1)
    await queue.upsert_job_scheduler("s", every=60.0, job_name="j",
                                     job_options={"group": "acct"})
    await queue.add("j", None, group="acct")
    taken = await fetch(queue, 5)
    assert len(taken) == 1  # the firing and the job share the group's one slot
    info = {gi.id: gi for gi in await queue.get_groups()}
    assert info["acct"].active == 1 and info["acct"].waiting == 1


async def test_only_jobs_of_groups_without_limits_are_held(queue: Queue) -> None:
    await queue.set_group_options("lim", concurrency=3)
    await queue.add_bulk([("j", None, {"group": "lim"}) for _ in range(5)])
    _, taken, header = await finish(queue, [], 1, hold=4, hold_ms=50)
    assert len(taken) == 1 and int(header[7]) > 0  # held nothing of the limited group
    await queue.add_bulk([("j", None, {"group": "free"}) for _ in range(5)])
    _, taken, header = await finish(queue, [], 0, hold=4, hold_ms=50)
    assert await groups_of(queue, taken) == ["free"] * 4
    assert (await queue.get_stats())["waiting"] == 4 + 4 + 1  # held ones count as waiting
    # Started, a held job takes its group's slot; its result gives it back.
    (jid, tok) = taken[0]
    await finish(queue, [(jid, tok, "s", "", "", 0, -1, -1, "1")])
    assert await group_active(queue, "free") == 1
    await finish(queue, [complete(jid, tok)])
    assert await group_active(queue, "free") == 0
    # A change of a group's settings makes workers hand held jobs back (control version).
    cv = header[6]
    await queue.set_group_options("free", concurrency=1)
    _, _, header = await finish(queue, [], 0)
    assert header[6] != cv


def test_group_throttles_cross_a_process_boundary() -> None:
    import pickle

    from minique import GroupRateLimited, RateLimited

    for exc in (GroupRateLimited(1.5), RateLimited(2.0, "slow", group=True)):
        back = pickle.loads(pickle.dumps(exc))
        assert isinstance(back, RateLimited) and back.group and back.delay == exc.delay
    assert not pickle.loads(pickle.dumps(RateLimited(1.0))).group


async def test_the_take_reply_carries_each_jobs_group_also_for_a_resent_call(queue: Queue) -> None:
    await queue.add("j", 1, group="acct-1")
    await queue.add("j", 2)
    args = [queue.keys.job_prefix, 2, 30000, "w-resend", 0, 0, 1000, 0, 0, "call-1", 0, ""]
    first = await scripts.run(queue.redis, "finish", queue.keys.vector, args)
    again = await scripts.run(queue.redis, "finish", queue.keys.vector, args)  # a re-send
    for reply in (first, again):
        body = reply[HEADER:]
        assert len(body) == 2 * JOB_FIELDS
        groups = {body[i + 10] for i in range(0, len(body), JOB_FIELDS)}  # 10: the group
        assert groups == {b"acct-1", b""}


async def test_a_resent_call_is_answered_with_the_limit_and_control_version_of_now(
        queue: Queue) -> None:
    # A re-sent call gets the first answer's jobs back; its header must still carry the
    # queue's limit and control version (a worker holds nothing under a limit, and hands
    # back what it holds under an older version), not "no limit, version 0".
    await queue.add_bulk([("j", i) for i in range(3)])
    args = [queue.keys.job_prefix, 1, 30000, "w-resend-cv", 0, 0, 1000, 0, 0, "call-cv", 0, ""]
    first = await scripts.run(queue.redis, "finish", queue.keys.vector, args)
    await queue.set_global_concurrency(4)
    again = await scripts.run(queue.redis, "finish", queue.keys.vector, args)  # a re-send
    assert again[HEADER:HEADER + 2] == first[HEADER:HEADER + 2]  # the same job and token
    assert int(again[5]) == 4  # 5: the queue's limit
    cv = await queue.redis.hget(queue.keys.meta, "cv")
    assert cv is not None and again[6] == cv and again[6] != first[6]


async def test_a_workers_job_carries_its_group(queue: Queue) -> None:
    seen: dict[Any, str | None] = {}

    async def record(job: Any) -> None:
        seen[job.data] = job.group

    await queue.add_bulk([("j", 1, {"group": "acct-1"}), ("j", 2)])
    worker = Worker(queue.name, record, connection=queue.redis)
    task = asyncio.create_task(worker.run())
    await wait_until(lambda: len(seen) == 2, timeout=10, message="both jobs ran")
    await worker.close()
    await task
    assert seen == {1: "acct-1", 2: None}
