"""Groups against no groups: no-op jobs at concurrency 50, one worker.

    python -m benchmarks.groups [--groups 1000] [--per-group 20] [--url redis://...]

The same N = groups x per_group jobs, once without a group and once spread over the
groups (added group by group, so the round-robin does the spreading). Prints jobs/s and
the ratio: best of --repeat alternated runs, and the median (with the range) of each
alternated pair's ratio, the steadier figure on a noisy machine (a run is under a second).
Starts its own Redis unless --url is given.
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
from typing import Any

from minique import Queue, Worker

from .support import redis_url, seconds_to_complete


async def run(url: str, groups: int, per_group: int, grouped: bool, concurrency: int,
              prefetch: bool) -> float:
    q = Queue("bench-groups", url=url, default_job_options={"remove_on_complete": False})
    await q.obliterate(force=True)
    n = groups * per_group
    await q.add_bulk([("noop", None, {"group": f"g{g}"} if grouped else {})
                      for g in range(groups) for _ in range(per_group)])

    async def noop(job: Any) -> None:
        return None

    worker = Worker("bench-groups", noop, url=url, concurrency=concurrency, prefetch=prefetch)
    took = await seconds_to_complete(q, worker, n)
    await q.obliterate(force=True)
    await q.close()
    return n / took


async def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--groups", type=int, default=1000)
    parser.add_argument("--per-group", type=int, default=20)
    parser.add_argument("--concurrency", type=int, default=50)
    parser.add_argument("--no-prefetch", action="store_true", help="workers hold nothing ahead")
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--url")
    args = parser.parse_args()
    with redis_url(args.url) as url:
        prefetch = not args.no_prefetch
        # Alternated and the best of each kept: other load on the machine only slows runs down.
        plain = grouped = 0.0
        pairs: list[float] = []
        for _ in range(args.repeat):
            one = await run(url, args.groups, args.per_group, False, args.concurrency, prefetch)
            other = await run(url, args.groups, args.per_group, True, args.concurrency, prefetch)
            plain, grouped = max(plain, one), max(grouped, other)
            pairs.append(other / one)
        print(f"{args.groups * args.per_group} no-op jobs, concurrency {args.concurrency}")
        print(f"  no groups                   {plain:>10,.0f} jobs/s")
        print(f"  {args.groups} groups of {args.per_group:<10} {grouped:>10,.0f} jobs/s"
              f"   ({grouped / plain:.2f}x)")
        print(f"  ratio of each alternated pair: median {statistics.median(pairs):.2f}x, "
              f"range {min(pairs):.2f}-{max(pairs):.2f}x ({len(pairs)} pairs)")


if __name__ == "__main__":
    asyncio.run(main())
