"""A batch processor at size 50 against the same no-op jobs one at a time.

    python -m benchmarks.batches [--n 20000] [--url redis://...]

One worker at concurrency 50 either way (a batch of 50 takes the 50 slots). Prints jobs/s
(best of --repeat alternated runs). Starts its own Redis unless --url is given.
"""

from __future__ import annotations

import argparse
import asyncio
from typing import Any

from minique import Batch, Queue, Registry, Worker

from .support import redis_url, seconds_to_complete


async def run(url: str, n: int, batch: bool) -> float:
    q = Queue("bench-batches", url=url, default_job_options={"remove_on_complete": False})
    await q.obliterate(force=True)
    await q.add_bulk([("noop", None) for _ in range(n)])
    registry = Registry()
    if batch:
        @registry.processor("bench-batches", batch={"size": 50, "timeout": 0.05})
        async def many(jobs: Batch) -> None:
            return None
    else:
        @registry.processor("bench-batches")
        async def one(job: Any) -> None:
            return None
    worker = Worker("bench-batches", registry, url=url, concurrency=50)
    took = await seconds_to_complete(q, worker, n)
    await q.obliterate(force=True)
    await q.close()
    return n / took


async def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--n", type=int, default=20_000)
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--url")
    args = parser.parse_args()
    with redis_url(args.url) as url:
        single = batched = 0.0
        for _ in range(args.repeat):
            single = max(single, await run(url, args.n, False))
            batched = max(batched, await run(url, args.n, True))
        print(f"{args.n} no-op jobs, one worker, concurrency 50")
        print(f"  one job per call        {single:>10,.0f} jobs/s")
        print(f"  batches of 50           {batched:>10,.0f} jobs/s   ({batched / single:.2f}x)")


if __name__ == "__main__":
    asyncio.run(main())
