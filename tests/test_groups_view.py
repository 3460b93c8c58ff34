"""What an operator sees of groups (docs/guide/groups.md, "Watching groups"): per-group
stats and the orderings that find the busiest, paused and throttled groups; waiting-job
listings, clean, drain and obliterate reaching grouped jobs; one group's jobs; SyncQueue."""

from __future__ import annotations

import time

import pytest
from driver import complete, fetch, finish
from helpers import wait_until

from minique import GroupCounts, GroupDefaults, Queue, scripts
from minique.sync import SyncQueue


def throttle(job_id: str, token: str, delay_ms: int) -> tuple[str, ...]:
    return (job_id, token, "g", "429", "", str(delay_ms), "-1", "-1")


async def test_orderings_find_busiest_paused_and_throttled_groups(queue: Queue) -> None:
    await queue.add_bulk([("j", None, {"group": "big"}) for _ in range(6)])
    await queue.add_bulk([("j", None, {"group": "mid"}) for _ in range(4)])
    await queue.add_bulk([("j", None, {"group": "small"}) for _ in range(2)])
    await queue.set_group_options("mid", concurrency=3)
    await queue.set_group_options("small", limiter={"max": 1, "duration": 60})
    # Round-robin turns: big, mid, small, big, mid; then small is at its rate limit.
    taken = await fetch(queue, 5)
    assert len(taken) == 5
    assert [(g.id, g.waiting) for g in await queue.get_groups(by="waiting")] == [
        ("big", 4), ("mid", 2), ("small", 1)]
    small = await queue.get_group("small")
    # At its rate limit, not throttled: asleep until its window frees.
    assert small is not None and small.window_starts == 1 and small.rate_limited_until is None
    assert small.sleeping_until is not None and small.sleeping_until > time.time() + 30
    taken += await fetch(queue, 1)  # this turn puts small to sleep and takes a job of big
    assert [g.id for g in await queue.get_groups(by="throttled")] == ["small"]
    assert [(g.id, g.active) for g in await queue.get_groups(by="active")] == [
        ("big", 3), ("mid", 2), ("small", 1)]
    # A processor throttles big for 10 minutes (GroupRateLimited): it sleeps from its next
    # turn, longer than small, so it comes first.
    groups = {t: (await queue.get_job(t[0])).group for t in taken}  # type: ignore[union-attr]
    big_job = next(t for t in taken if groups[t] == "big")
    await finish(queue, [throttle(*big_job, 600_000)], 0)
    assert len(await fetch(queue, 10)) == 1  # mid's last slot; big and small sleep
    throttled = await queue.get_groups(by="throttled")
    assert [g.id for g in throttled] == ["big", "small"]
    assert throttled[0].rate_limited_until is not None
    assert throttled[0].sleeping_until == throttled[0].rate_limited_until
    assert [(g.id, g.active) for g in await queue.get_groups(by="active")] == [
        ("mid", 3), ("big", 2), ("small", 1)]
    await queue.pause_group("mid")
    await queue.pause_group("small")
    assert [g.id for g in await queue.get_groups(by="paused")] == ["small", "mid"]
    assert await queue.get_group_counts() == GroupCounts(groups=3, active=3, paused=2,
                                                         throttled=2, ready=0)
    await queue.resume_group("small")
    assert [g.id for g in await queue.get_groups(by="paused")] == ["mid"]
    assert await queue.get_group("nobody") is None
    # Pages are bounded and checked.
    assert [g.id for g in await queue.get_groups(0, 0)] == ["big"]
    with pytest.raises(ValueError, match="by must be"):
        await queue.get_groups(by="busiest")
    with pytest.raises(ValueError, match="at most 10000"):
        await queue.get_groups(0, 10_000)


async def test_active_index_follows_every_release(queue: Queue) -> None:
    await queue.add_bulk([("j", None, {"group": "g"}) for _ in range(3)])
    taken = await fetch(queue, 3)
    assert [(g.id, g.active) for g in await queue.get_groups(by="active")] == [("g", 3)]
    await finish(queue, [complete(*taken[0])], 0)
    assert [(g.id, g.active) for g in await queue.get_groups(by="active")] == [("g", 2)]
    await finish(queue, [complete(*t) for t in taken[1:]], 0)
    assert await queue.get_groups(by="active") == []
    # Idle and without settings: forgotten by every index.
    assert await queue.get_groups() == [] and (await queue.get_group_counts()).groups == 0


async def test_defaults_and_effective_window(queue: Queue) -> None:
    await queue.set_group_defaults(concurrency=2, limiter={"max": 5, "duration": 30})
    assert await queue.get_group_defaults() == GroupDefaults(
        concurrency=2, limiter=msgspec_limiter(5, 30.0))
    await queue.add_bulk([("j", None, {"group": "g"}) for _ in range(4)])
    await fetch(queue, 4)
    g = await queue.get_group("g")
    # Its own settings are None (the defaults apply), and the default window counts.
    assert g is not None and g.concurrency is None and g.limiter is None
    assert g.active == 2 and g.window_starts == 2 and g.waiting == 2


def msgspec_limiter(n: int, duration: float) -> object:
    from minique import GroupLimiter

    return GroupLimiter(n, duration)


async def test_waiting_listings_reach_grouped_jobs_in_pages(queue: Queue) -> None:
    plain = [j.id for j in await queue.add_bulk([("p", i) for i in range(3)])]
    urgent = (await queue.add("u", None, priority=1)).id
    a = [j.id for j in await queue.add_bulk([("a", i, {"group": "ga"}) for i in range(4)])]
    b = [j.id for j in await queue.add_bulk([("b", i, {"group": "gb"}) for i in range(2)])]
    every = await queue.get_job_ids("waiting", 0, 1000)
    # Priority set, stream, then groups busiest first, each in its run order.
    assert every == [urgent, *plain, *a, *b]
    assert (await queue.get_stats())["waiting"] == len(every) == 10
    for size in (1, 3, 4):
        pages = []
        for start in range(0, 12, size):
            pages += await queue.get_job_ids("waiting", start, start + size - 1)
        assert pages == every, size
    jobs = await queue.get_jobs("waiting", 4, 6)
    assert [j.id for j in jobs] == a[:3] and {j.group for j in jobs} == {"ga"}
    assert await queue.get_job_ids("waiting", 10, 20) == []


async def test_one_groups_jobs_in_run_order(queue: Queue) -> None:
    first = await queue.add("j", 1, group="acct/42")
    second = await queue.add("j", 2, group="acct/42")
    urgent = await queue.add("j", 3, group="acct/42", priority=1)
    await queue.add("j", 4, group="other")
    assert await queue.get_group_job_ids("acct/42") == [urgent.id, first.id, second.id]
    jobs = await queue.get_group_jobs("acct/42", 1, 1)
    assert [(j.id, j.data) for j in jobs] == [(first.id, 1)]
    assert await queue.get_group_jobs("nobody") == []
    with pytest.raises(ValueError):
        await queue.get_group_jobs("")
    with pytest.raises(ValueError):
        await queue.get_group_jobs("g", 5, 1)


async def test_clean_waiting_reaches_grouped_jobs(queue: Queue) -> None:
    old_plain = await queue.add("p", None, priority=1)  # the stream ages by entry id
    old = [j.id for j in await queue.add_bulk([("o", i, {"group": f"g{i % 3}"}) for i in range(9)])]
    # Age the jobs: clean looks at the creation time.
    for job_id in [old_plain.id, *old]:
        await queue.redis.hset(queue.keys.job(job_id), "ts", int(time.time() * 1000) - 3_600_000)
    young = [j.id for j in await queue.add_bulk([("y", i, {"group": f"g{i % 3}"}) for i in range(6)])]
    limited = await queue.clean(60, "waiting", limit=4)
    assert len(limited) == 4 and set(limited) <= {old_plain.id, *old}
    rest = await queue.clean(60, "waiting", limit=100)
    assert sorted(limited + rest) == sorted([old_plain.id, *old])
    assert sorted(await queue.get_job_ids("waiting", 0, 100)) == sorted(young)
    assert sorted((g.id, g.waiting) for g in await queue.get_groups()) == [
        ("g0", 2), ("g1", 2), ("g2", 2)]
    assert (await queue.get_stats())["waiting"] == 6
    assert sorted(await queue.clean(0, "waiting")) == sorted(young)
    assert await queue.get_groups() == [] and (await queue.get_stats())["waiting"] == 0


async def test_each_clean_call_looks_at_a_bounded_number_of_jobs(queue: Queue) -> None:
    await queue.add_bulk([("y", i, {"group": "big"}) for i in range(600)])
    cutoff = int(time.time() * 1000) - 3_600_000  # every job is younger
    at = "0:0"
    calls = 0
    while True:
        reply = await scripts.run(queue.redis, "clean", queue.keys.vector,
                                  [queue.keys.job_prefix, "grouped", cutoff, 1, at, "big"])
        calls += 1
        assert reply[2:] == []
        if int(reply[0]) == 1:
            break
        assert int(reply[1]) <= 102 * calls  # 2 * limit + 100 jobs looked at per call
        at = f"{int(reply[0])}:{int(reply[1])}"
    assert calls >= 6 and (await queue.get_stats())["waiting"] == 600


async def test_stats_drain_and_obliterate_agree_on_grouped_jobs(queue: Queue) -> None:
    await queue.add_bulk([("j", None, {"group": f"g{i % 40}"}) for i in range(1500)])
    await queue.add_bulk([("j", None) for _ in range(20)])
    await queue.pause_group("g1")
    await queue.set_group_options("g2", concurrency=1)
    taken = await fetch(queue, 5)
    stats = await queue.get_stats()
    listed = await queue.get_job_ids("waiting", 0, 100_000)
    assert stats["waiting"] == len(listed) == len(set(listed)) == 1520 - 5
    assert await queue.drain() == stats["waiting"]
    assert (await queue.get_stats())["waiting"] == 0
    # The groups with settings, a pause or running jobs stay; the others are forgotten.
    left = {g.id for g in await queue.get_groups(0, 999)}
    running = {(await queue.get_job(t[0])).group for t in taken}  # type: ignore[union-attr]
    assert left == ({"g1", "g2"} | running) - {None}
    await queue.obliterate(force=True)
    assert await queue.redis.keys(f"{queue.keys.base}*") == []


def test_sync_queue_mirrors_the_group_views(redis_url: str, qname: str) -> None:
    with SyncQueue(qname, url=redis_url) as q:
        try:
            q.add_bulk([("j", i, {"group": "g"}) for i in range(3)])
            q.pause_group("g")
            assert [g.id for g in q.get_groups(by="paused")] == ["g"]
            info = q.get_group("g")
            assert info is not None and info.waiting == 3 and info.paused
            assert q.get_group_counts().paused == 1
            assert q.get_group_defaults().concurrency is None
            ids = q.get_group_job_ids("g")
            assert [j.id for j in q.get_group_jobs("g")] == ids and len(ids) == 3
            assert q.get_job_ids("waiting") == ids
            assert sorted(q.clean(0, "waiting")) == sorted(ids)
        finally:
            q.obliterate(force=True)


async def test_a_group_emptied_while_asleep_is_forgotten_when_it_wakes(queue: Queue) -> None:
    await queue.set_group_defaults(limiter={"max": 1, "duration": 0.05})
    jobs = await queue.add_bulk([("j", i, {"group": "g"}) for i in range(2)])
    taken = await fetch(queue, 2)  # one start, then g sleeps for its window
    assert len(taken) == 1 and (await queue.get_group_counts()).throttled == 1
    await queue.remove_job(jobs[1].id)
    await finish(queue, [complete(*taken[0])], 0)
    await queue.set_group_defaults()

    async def forgotten() -> bool:
        await fetch(queue, 1)  # a fetch wakes the groups whose sleep is over
        return await queue.redis.zcard(f"{queue.keys.base}:groups") == 0

    await wait_until(forgotten, timeout=5, message="the idle group forgotten")
    assert await queue.redis.exists(f"{queue.keys.base}:g:g") == 0


@pytest.mark.parametrize("settings", [False, True], ids=["plain-groups", "a-group-with-settings"])
async def test_a_group_emptied_by_held_jobs_is_forgotten(queue: Queue, settings: bool) -> None:
    """A held job that starts and ends between two of its worker's calls never takes a
    slot, so no release comes for it: a group whose last jobs were taken to hold stayed in
    the group index, with 0 waiting, for ever (every such group, after a prefetching worker
    drained them: get_group_counts() counted them all)."""
    if settings:
        await queue.set_group_options("kept", limiter={"max": 100, "duration": 60})
    await queue.add_bulk([("j", i, {"group": "busy"}) for i in range(2)])
    await queue.add_bulk([("j", i, {"group": f"g{i % 3}"}) for i in range(6)])
    running = await fetch(queue, 1)  # busy's first job runs (a slot); then the rest is held
    _, held, _ = await finish(queue, [], 0, hold=7, hold_ms=60_000)
    assert len(held) == 7 and (await queue.get_stats())["waiting"] == 7
    started = str(int(time.time() * 1000))
    await finish(queue, [(*complete(*h), started) for h in held], 0)
    # Empty, nothing running: forgotten, whichever way their last job went.
    left = {g.id for g in await queue.get_groups(0, 99)}
    counts = await queue.get_group_counts()
    expected = {"busy", "kept"} if settings else {"busy"}
    assert left == expected and counts.groups == len(expected), (left, counts)
    await finish(queue, [complete(*running[0])], 0)
    counts = await queue.get_group_counts()
    assert counts.groups == (1 if settings else 0) and counts.active == 0, counts
    assert await queue.redis.zcard(f"{queue.keys.base}:groups") == counts.groups
    kept = await queue.redis.keys(f"{queue.keys.base}:g:*")
    assert kept == ([f"{queue.keys.base}:g:kept".encode()] if settings else [])
