"""Fetch latency with 100,000 idle groups and one busy one.

    python -m benchmarks.groups_fetch [--idle 100000] [--url redis://...]

Every idle group has a job running and one waiting, at the default concurrency of 1, so it
cannot start another (the groups a fetch must not walk); one busy group has 10,000 jobs.
Prints the fetch script's latency (one job per call) before and after the idle groups exist.
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import time

from minique import Queue, scripts

from .support import redis_url


async def fetch_latency(q: Queue, calls: int) -> float:
    """Median ms of one fetch.lua call taking one job of the busy group."""
    args = [q.keys.job_prefix, 1, 60000, "bench", 0, 0, 1000, 0, 0]
    times = []
    for _ in range(calls):
        start = time.perf_counter()
        await scripts.run(q.redis, "fetch", q.keys.vector, args)
        times.append((time.perf_counter() - start) * 1000)
    return statistics.median(times)


async def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--idle", type=int, default=100_000)
    parser.add_argument("--url")
    args = parser.parse_args()
    with redis_url(args.url) as url:
        alone = await measure(url, 0)
        with_idle = await measure(url, args.idle)
        print("fetch of one job of the busy group, median of 1000 calls:")
        print(f"  busy group alone                       {alone:.3f} ms")
        print(f"  beside {args.idle} groups at their limit {with_idle:.3f} ms")


async def measure(url: str, idle: int) -> float:
    q = Queue("bench-gfetch", url=url)
    try:
        await q.obliterate(force=True)
        await q.set_group_defaults(concurrency=1)
        for start in range(0, idle, 5000):
            await q.add_bulk([("noop", None, {"group": f"idle{g}"})
                              for g in range(start, min(start + 5000, idle)) for _ in range(2)])
        # One job of each idle group goes active: each is then at its limit, out of the
        # round-robin, with a job waiting.
        while len(await scripts.run(q.redis, "fetch", q.keys.vector,
                                    [q.keys.job_prefix, 1000, 600000, "bench", 0, 0, 1000, 0,
                                     0])) > 8:
            pass
        await q.set_group_options("busy", concurrency=1_000_000)
        await q.add_bulk([("noop", None, {"group": "busy"}) for _ in range(3000)])
        await fetch_latency(q, 100)  # warm-up (script load)
        return await fetch_latency(q, 1000)
    finally:
        await q.obliterate(force=True)
        await q.close()


if __name__ == "__main__":
    asyncio.run(main())
