"""Cost of an add with a dedup id against a plain add: one producer, adds awaited one by one.

    python -m benchmarks.dedup_add [--jobs 5000] [--rounds 3] [--url redis://...]

Starts its own Redis unless --url is given. Each round adds ``--jobs`` plain jobs, then as
many with distinct dedup ids (every add claims a fresh id), then as many duplicates of one
id (every add is deduplicated); prints the best round's adds per second of each.
"""

from __future__ import annotations

import argparse
import time

from benchmarks.local_redis import run_on_redis
from minique import Queue


async def rate(q: Queue, jobs: int, dedup: str | None) -> float:
    await q.obliterate(force=True)
    start = time.perf_counter()
    for i in range(jobs):
        if dedup is None:
            await q.add("j", i)
        else:
            await q.add("j", i, dedup={"id": dedup if dedup == "same" else f"d{i}"})
    return jobs / (time.perf_counter() - start)


async def run(url: str, jobs: int, rounds: int) -> None:
    q = Queue("bench-dedup", url=url)
    best = {"plain": 0.0, "dedup (fresh id)": 0.0, "dedup (duplicate)": 0.0}
    for _ in range(rounds):
        best["plain"] = max(best["plain"], await rate(q, jobs, None))
        best["dedup (fresh id)"] = max(best["dedup (fresh id)"], await rate(q, jobs, "fresh"))
        best["dedup (duplicate)"] = max(best["dedup (duplicate)"], await rate(q, jobs, "same"))
    await q.obliterate(force=True)
    await q.close()
    for label, value in best.items():
        print(f"{label:20} {value:9.0f} adds/s  ({value / best['plain']:.2f}x plain)")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--jobs", type=int, default=5000)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--url")
    args = parser.parse_args()
    run_on_redis(args.url, lambda url: run(url, args.jobs, args.rounds))


if __name__ == "__main__":
    main()
