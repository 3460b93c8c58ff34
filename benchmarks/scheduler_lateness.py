"""How late scheduler firings run: 100 schedulers at every=1s for about 10 s.

    python -m benchmarks.scheduler_lateness [--schedulers 100] [--every 1.0] [--seconds 10]
                                            [--workers 1] [--concurrency 50] [--aligned]
                                            [--url redis://...]

Starts its own Redis unless --url is given. Lateness of a firing = the moment a worker took
it (``processed_on``, Redis clock) minus its scheduled fire time; "handler" lateness adds the
hop into the processor (local clock). Also checks that each fire time ran exactly once.
By default the schedulers are spread over one period; --aligned makes all of them fire at
the same instants (a burst of 100 jobs each period).
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import time
from collections import Counter
from typing import Any

from minique import Queue, Worker
from minique.server import RedisServer

try:
    import uvloop
except ImportError:  # pragma: no cover - optional speed-up
    uvloop = None


def pct(values: list[float], p: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(p / 100 * (len(ordered) - 1)))]


async def run(url: str, schedulers: int, every: float, seconds: float, workers: int,
              concurrency: int, aligned: bool) -> None:
    name = "sched-lateness"
    q = Queue(name, url=url)
    await q.obliterate(force=True)
    for sched in await q.get_job_schedulers():
        await q.remove_job_scheduler(sched.id)
    taken: list[float] = []
    handler: list[float] = []
    runs: Counter[str] = Counter()

    async def proc(job: Any) -> None:
        fire = int(job.id.rsplit(":", 1)[1]) / 1000.0  # sched:<sid>:<gen>:<fire_ms>
        handler.append(time.time() - fire)
        taken.append((job.processed_on or 0.0) - fire)
        runs[job.id] += 1

    pool = [Worker(name, proc, url=url, concurrency=concurrency, block_timeout=1.0)
            for _ in range(workers)]
    tasks = [asyncio.create_task(w.run()) for w in pool]
    # Spread the schedulers over one period, as independent upserts would be (or not).
    t0 = time.time() + 0.5
    for i in range(schedulers):
        await q.upsert_job_scheduler(f"s{i}", every=every, job_name="tick",
                                     start_date=t0 + (0 if aligned else every * i / schedulers),
                                     job_options={"remove_on_complete": True})
    started = time.perf_counter()
    await asyncio.sleep(seconds)  # the measured window: firings run in the workers meanwhile
    for i in range(schedulers):
        await q.remove_job_scheduler(f"s{i}")
    for w in pool:
        await w.close()
    await asyncio.gather(*tasks)
    elapsed = time.perf_counter() - started
    await q.obliterate(force=True)
    await q.close()
    dup = sum(1 for n in runs.values() if n > 1)
    expected = schedulers * (seconds - 0.5) / every
    print(f"{schedulers} schedulers, every={every}s, {elapsed:.1f}s, {workers} worker(s) x "
          f"concurrency {concurrency}: {len(taken)} firings (about {expected:.0f} expected), "
          f"{dup} fire times run more than once{' (aligned)' if aligned else ''}")
    for label, values in (("taken (processed_on - fire time)", taken),
                          ("handler start - fire time", handler)):
        ms = [v * 1000 for v in values]
        print(f"  {label:<34} median {statistics.median(ms):6.1f} ms   p99 {pct(ms, 99):6.1f} ms"
              f"   max {max(ms):6.1f} ms")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--schedulers", type=int, default=100)
    parser.add_argument("--every", type=float, default=1.0)
    parser.add_argument("--seconds", type=float, default=10.0)
    parser.add_argument("--workers", type=int, default=1)
    parser.add_argument("--concurrency", type=int, default=50)
    parser.add_argument("--aligned", action="store_true")
    parser.add_argument("--url")
    args = parser.parse_args()
    runner = uvloop.run if uvloop else asyncio.run

    def go(url: str) -> None:
        runner(run(url, args.schedulers, args.every, args.seconds, args.workers,
                   args.concurrency, args.aligned))

    if args.url:
        go(args.url)
    else:
        with RedisServer() as server:
            go(server.url)


if __name__ == "__main__":
    main()
