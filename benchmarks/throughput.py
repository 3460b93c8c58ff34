"""minique alone: add one by one, add in bulk, and process at concurrency 1 and 50.

    python -m benchmarks.throughput [--n 20000] [--url redis://...]

Starts its own Redis unless --url is given. Prints jobs/s and Redis commands per job
(from INFO commandstats; a Lua script's inner commands are counted too, listed apart).
``--calls`` also times the worker's finish calls: how many, the share of the run during
which one was out (Redis at work or the call on its way), the median round trip, the
median gap between a reply and the next call (Redis idle, as far as this worker goes) and
the median jobs per call.
"""

from __future__ import annotations

import argparse
import asyncio
import resource
import statistics
import time
from typing import Any

import redis.asyncio as aioredis

from minique import Queue, Worker, scripts
from minique.server import RedisServer
from minique.worker import HEADER, JOB_FIELDS

try:
    import uvloop
except ImportError:  # pragma: no cover - optional speed-up
    uvloop = None


async def commandstats(client: Any) -> dict[str, int]:
    """Calls per command, plus "~redis_cpu_us" (the server's CPU time, user + system) and
    "~client_cpu_us" (this process's), so that a delta gives both costs per job."""
    info = await client.info("commandstats")
    calls = {k.removeprefix("cmdstat_"): int(v["calls"]) for k, v in info.items()}
    cpu = await client.info("cpu")
    calls["~redis_cpu_us"] = int((float(cpu["used_cpu_user"]) + float(cpu["used_cpu_sys"])) * 1e6)
    own = resource.getrusage(resource.RUSAGE_SELF)
    calls["~client_cpu_us"] = int((own.ru_utime + own.ru_stime) * 1e6)
    return calls


def delta(before: dict[str, int], after: dict[str, int]) -> dict[str, int]:
    changed = {k: after[k] - before.get(k, 0) for k in after}
    return {k: v for k, v in changed.items() if v}


CLIENT_CALLS = {"evalsha", "eval", "xread", "ping", "script|load", "info", "hgetall"}
DETAIL = False


def report(label: str, n: int, seconds: float, cmds: dict[str, int]) -> None:
    redis_us = cmds.pop("~redis_cpu_us", 0) / n
    client_us = cmds.pop("~client_cpu_us", 0) / n
    outer = sum(v for k, v in cmds.items() if k in CLIENT_CALLS)
    inner = sum(v for k, v in cmds.items() if k not in CLIENT_CALLS)
    print(f"{label:<34} {n / seconds:>10,.0f} jobs/s   round-trip commands/job {outer / n:5.2f}"
          f"   (commands inside scripts/job {inner / n:5.1f})"
          f"   CPU/job: Redis {redis_us:5.1f} us, this process {client_us:5.1f} us")
    if DETAIL:
        for k, v in sorted(cmds.items(), key=lambda kv: -kv[1]):
            if k not in CLIENT_CALLS and v / n >= 0.01:
                print(f"{'':<36}{k:<16} {v / n:6.2f}/job")


CALLS: list[tuple[float, float, int]] | None = None  # --calls: (sent, answered, jobs taken)


def timed_calls() -> None:
    """Wraps scripts.run so that every finish call is timed into CALLS (--calls)."""
    global CALLS
    CALLS = []
    run_script = scripts.run

    async def timed(redis: Any, name: str, keys: Any, args: list[Any], *rest: Any,
                    **kw: Any) -> Any:
        if name != "finish" or CALLS is None:
            return await run_script(redis, name, keys, args, *rest, **kw)
        sent = time.perf_counter()
        reply = await run_script(redis, name, keys, args, *rest, **kw)
        # the header, the jobs, the statuses
        jobs = (len(reply) - int(args[10]) - HEADER) // JOB_FIELDS
        CALLS.append((sent, time.perf_counter(), jobs))
        return reply

    scripts.run = timed  # type: ignore[assignment]


def report_calls(label: str) -> None:
    if not CALLS or len(CALLS) < 20:
        return
    calls = CALLS[5:-5]  # the start and the end of a run are not its steady state
    wall = calls[-1][1] - calls[0][0]
    out = sum(answered - sent for sent, answered, _ in calls)
    rtt = statistics.median(answered - sent for sent, answered, _ in calls)
    gap = statistics.median(calls[i + 1][0] - calls[i][1] for i in range(len(calls) - 1))
    jobs = statistics.median(j for _, _, j in calls)
    print(f"{'':<36}finish calls {len(CALLS)}: one out {out / wall:.0%} of the time, "
          f"round trip {rtt * 1e3:.2f} ms, gap {gap * 1e3:.2f} ms, {jobs:.0f} jobs/call")
    CALLS.clear()


async def process(url: str, n: int, concurrency: int, client: Any, priority: bool = False) -> None:
    # Keep every finished job, so the count of completed jobs proves that all N ran.
    q = Queue("bench", url=url, default_job_options={"remove_on_complete": False})
    await q.obliterate(force=True)
    # With priority, every job goes through the prioritized sorted set instead of the stream.
    await q.add_bulk([("noop", {"i": i}, {"priority": 1 + i % 10} if priority else {})
                      for i in range(n)])

    async def noop(job: Any) -> None:
        return None

    worker = Worker("bench", noop, url=url, concurrency=concurrency)
    before = await commandstats(client)
    start = time.perf_counter()
    task = asyncio.create_task(worker.run())
    while (await q.get_stats())["completed"] < n:
        await asyncio.sleep(0.005)
    elapsed = time.perf_counter() - start
    await worker.close()
    await task
    stats = await q.get_stats()
    assert stats["completed"] == n and stats["failed"] == 0, stats
    label = f"process, concurrency {concurrency}" + (", prioritized" if priority else "")
    report(label, n, elapsed,
           delta(before, await commandstats(client)))
    report_calls(label)
    await q.obliterate(force=True)
    await q.close()


async def run(url: str, n: int, only: str = "") -> None:
    client = aioredis.Redis.from_url(url)
    if only:
        concurrency = {"c1": 1, "c50": 50}[only]
        await process(url, n, concurrency, client)
        await client.aclose()
        return
    q = Queue("bench", url=url, default_job_options={"remove_on_complete": {"count": 1000}})
    await q.obliterate(force=True)
    single = min(n, 5000)
    before = await commandstats(client)
    start = time.perf_counter()
    for i in range(single):
        await q.add("noop", {"i": i})
    report("add one by one", single, time.perf_counter() - start,
           delta(before, await commandstats(client)))
    await q.obliterate(force=True)
    before = await commandstats(client)
    start = time.perf_counter()
    await q.add_bulk([("noop", {"i": i}) for i in range(n)])
    report("add_bulk", n, time.perf_counter() - start, delta(before, await commandstats(client)))
    assert (await q.get_stats())["waiting"] == n
    await q.obliterate(force=True)
    await q.close()
    await process(url, min(n, 5000), 1, client)
    await process(url, n, 50, client)
    await process(url, n, 50, client, priority=True)
    await memory_per_waiting_job(url, client)
    await client.aclose()


async def memory_per_waiting_job(url: str, client: Any, n: int = 100_000) -> None:
    q = Queue("bench-mem", url=url)
    await q.obliterate(force=True)
    before = int((await client.info("memory"))["used_memory"])
    for start in range(0, n, 10_000):
        await q.add_bulk([("noop", {"i": i}) for i in range(start, start + 10_000)])
    after = int((await client.info("memory"))["used_memory"])
    print(f"{'memory per waiting job':<34} {(after - before) / n:>10,.0f} bytes "
          f"(payload {{'i': n}}, {n:,} jobs; includes the capped events stream)")
    await q.obliterate(force=True)
    await q.close()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--n", type=int, default=20000)
    parser.add_argument("--url", default=None)
    parser.add_argument("--no-uvloop", action="store_true")
    parser.add_argument("--only", choices=["c1", "c50"], default="",
                        help="one processing scenario alone")
    parser.add_argument("--detail", action="store_true",
                        help="also list the commands run inside scripts, per job")
    parser.add_argument("--calls", action="store_true",
                        help="also time the worker's finish calls (round trip, gap)")
    args = parser.parse_args()
    global DETAIL
    DETAIL = args.detail
    if args.calls:
        timed_calls()
    runner = asyncio.run if args.no_uvloop or uvloop is None else uvloop.run
    if args.url:
        runner(run(args.url, args.n, args.only))
        return
    with RedisServer() as server:
        runner(run(server.url, args.n, args.only))


if __name__ == "__main__":
    main()
