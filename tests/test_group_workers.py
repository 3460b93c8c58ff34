"""Groups with real worker processes: fair share, per-group concurrency and rate limits
across two processes, kill -9 at concurrency 1, group pause and throttle."""

from __future__ import annotations

import itertools
import signal
from typing import Any

from helpers import start_worker, wait_until

from minique import Queue

_prefixes = itertools.count()


class Stamp:
    def __init__(self, raw: bytes) -> None:
        what, job_id, group, ms, pid = raw.decode().split("|")
        self.what, self.id, self.group, self.ms, self.pid = what, job_id, group, int(ms), int(pid)


async def stamps(q: Queue, what: str) -> list[Stamp]:
    return [s for s in map(Stamp, await q.redis.lrange(f"{q.keys.base}:stamps", 0, -1))
            if s.what == what]


def workers(redis_url: str, procs: list[Any], prefix: str, n: int = 2,
            *args: str) -> list[Any]:
    started = [start_worker(redis_url, "groups", "--prefix", prefix, *args,
                            target="tests.group_procs:registry") for _ in range(n)]
    procs.extend(started)
    return started


async def done(q: Queue, n: int) -> bool:
    # Counted from the processors' own stamps: retention keeps at most 1,000 completed jobs.
    return len(await stamps(q, "end")) >= n


def max_overlap(starts: list[Stamp], ends: list[Stamp]) -> int:
    events = sorted([(s.ms, 1) for s in starts] + [(e.ms, -1) for e in ends],
                    key=lambda e: (e[0], e[1]))
    running = peak = 0
    for _, d in events:
        running += d
        peak = max(peak, running)
    return peak


async def test_small_groups_are_not_stuck_behind_a_big_one(redis_url: str,
                                                           procs: list[Any]) -> None:
    q = Queue("groups", url=redis_url, prefix=f"gw{next(_prefixes)}")
    await q.add_bulk([("work", {"g": "big"}, {"group": "big"}) for _ in range(1000)])
    await q.add_bulk([("work", {"g": g}, {"group": g}) for g in ("s1", "s2") for _ in range(10)])
    workers(redis_url, procs, q.prefix, 2, "--concurrency", "5")
    await wait_until(lambda: done(q, 1020), timeout=120, message="all jobs done")
    starts = sorted(await stamps(q, "start"), key=lambda s: s.ms)
    assert len({s.pid for s in starts}) == 2
    # Round-robin: the 20 small jobs are taken within ~3 x 10 takes, not after the 1,000
    # of the big group (FIFO would put them at 1,000+). Counted in each worker's own start
    # order, which is its take order: across the two, a worker slowed down by the machine
    # would shift the global order without any unfairness in the queue.
    for pid in {s.pid for s in starts}:
        order = [s.group for s in starts if s.pid == pid]
        smalls = [i for i, g in enumerate(order) if g != "big"]
        assert not smalls or max(smalls) < 100, (pid, smalls)
    await q.close()


async def test_group_concurrency_and_rate_limit_hold_across_two_processes(
        redis_url: str, procs: list[Any]) -> None:
    q = Queue("groups", url=redis_url, prefix=f"gw{next(_prefixes)}")
    await q.set_group_options("conc", concurrency=2)
    await q.set_group_options("rate", limiter={"max": 3, "duration": 0.5})
    workers(redis_url, procs, q.prefix, 2, "--concurrency", "6")

    async def both_up() -> bool:
        return len(await q.get_workers()) == 2

    await wait_until(both_up, timeout=20, message="two workers up")
    await q.add_bulk([("work", {"g": g, "sleep": 0.05}, {"group": g})
                      for _ in range(20) for g in ("conc", "free")])
    await q.add_bulk([("work", {"g": "rate"}, {"group": "rate"}) for _ in range(15)])
    await wait_until(lambda: done(q, 55), timeout=60, message="all jobs done")
    starts, ends = await stamps(q, "start"), await stamps(q, "end")

    def of(group: str, items: list[Stamp]) -> list[Stamp]:
        return [s for s in items if s.group == group]

    assert max_overlap(of("conc", starts), of("conc", ends)) <= 2
    assert len({s.pid for s in starts}) == 2  # both processes took the groups' jobs
    # The unlimited group did overlap more, so the limit above is the group's, not the pool's.
    assert max_overlap(of("free", starts), of("free", ends)) > 2
    # Start times as the scripts recorded them (the clock the limiter counts with).
    rate = []
    for s in of("rate", starts):
        job = await q.get_job(s.id)
        assert job is not None and job.processed_on is not None
        rate.append(round(job.processed_on * 1000))
    rate.sort()
    for i, t in enumerate(rate):
        # No window of 500 ms sees more than 3 starts.
        assert sum(1 for u in rate[i:] if u < t + 500) <= 3, rate
    assert rate[-1] - rate[0] >= 4 * 500 - 50  # 15 starts at 3 per 0.5 s span >= 2 s
    await q.close()


async def test_kill_9_at_group_concurrency_1_gives_the_slot_back_after_the_lease(
        redis_url: str, procs: list[Any]) -> None:
    q = Queue("groups", url=redis_url, prefix=f"gw{next(_prefixes)}")
    await q.set_group_options("acct", concurrency=1)
    first = await q.add("work", {"g": "acct", "sleep_once": 60}, group="acct")
    second = await q.add("work", {"g": "acct"}, group="acct")
    victim, = workers(redis_url, procs, q.prefix, 1, "--lock-duration", "1",
                      "--stalled-interval", "0.3")

    async def started() -> bool:
        return len(await stamps(q, "start")) >= 1

    await wait_until(started, timeout=20, message="first job started")
    victim.send_signal(signal.SIGKILL)
    victim.wait()
    assert [s.id for s in await stamps(q, "start")] == [first.id]  # the second waited
    workers(redis_url, procs, q.prefix, 1, "--lock-duration", "1", "--stalled-interval", "0.3")
    await wait_until(lambda: done(q, 2), timeout=30, message="both jobs done")
    assert [s.id for s in await stamps(q, "start")] == [first.id, first.id, second.id]

    async def group_idle() -> bool:
        # The end stamp comes before the worker reports the job: wait for the report.
        infos = await q.get_groups()
        return all(i.active == 0 and i.waiting == 0 for i in infos)

    await wait_until(group_idle, timeout=10, message="the group's slot given back")
    await q.close()


async def test_group_pause_and_throttle_leave_other_groups_running(
        redis_url: str, procs: list[Any]) -> None:
    q = Queue("groups", url=redis_url, prefix=f"gw{next(_prefixes)}")
    await q.pause_group("paused")
    await q.set_group_options("slow", concurrency=1)  # nothing else of it runs beside the 429
    await q.add_bulk([("work", {"g": "paused"}, {"group": "paused"}) for _ in range(3)])
    slow = await q.add("work", {"g": "slow", "throttle": 1.0}, group="slow")
    await q.add("work", {"g": "slow"}, group="slow")
    workers(redis_url, procs, q.prefix, 2, "--concurrency", "2")
    await wait_until(lambda: stamps(q, "throttled"), timeout=20, message="throttled")
    throttled_at = (await stamps(q, "throttled"))[0].ms
    await q.add_bulk([("work", {"g": "other"}, {"group": "other"}) for _ in range(5)])
    await wait_until(lambda: done(q, 5), timeout=20, message="other group done")
    ends = await stamps(q, "end")
    assert {s.group for s in ends} == {"other"}  # slow sleeps, paused waits
    await wait_until(lambda: done(q, 7), timeout=20, message="slow group done")
    slow_starts = [s for s in await stamps(q, "start") if s.group == "slow"]
    assert all(s.ms >= throttled_at + 1000 for s in slow_starts[1:])
    assert slow_starts[1].id == slow.id  # back at the front of its group
    job = await q.get_job(slow.id)
    assert job is not None and job.attempts_made == 1  # the throttle used no attempt
    assert (await q.get_stats())["waiting"] == 3
    await q.resume_group("paused")
    await wait_until(lambda: done(q, 10), timeout=20, message="paused group done")
    await q.close()
