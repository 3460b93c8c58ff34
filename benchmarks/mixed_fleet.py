"""Throughput of one queue served by a mixed fleet: prefetching worker processes beside
ones that take one job at a time (``--no-prefetch``) or a ManualWorker loop, with the
'peer' messages (idle takers asking holders for their held jobs, docs/guide/workers.md)
and the script calls per job they cost. Break round 18 found a prefetch-off worker
halving the throughput of prefetching ones; this is the measurement behind its fix.

    python -m benchmarks.mixed_fleet [--n 20000] [--reps 1] [--only "no-prefetch"]
                                     [--job noop|rec] [--url redis://...]

Prints one line per fleet: jobs/s, script calls per job, peer messages and, with --job rec
(each start recorded in Redis, a round trip per job), duplicate starts (none may happen).
Workers run at concurrency 10 on a private Redis unless --url is given."""

from __future__ import annotations

import argparse
import asyncio
import os
import subprocess
import sys
import time
from pathlib import Path

import redis.asyncio as aredis

from minique import ManualWorker, Queue

from .support import redis_url

KEEP = {"remove_on_complete": False}
ROOT = Path(__file__).resolve().parent.parent
FLEETS = {  # label: (prefetching processes, prefetch-off processes, ManualWorker loops)
    "2 prefetch": (2, 0, 0),
    "2 prefetch + 1 no-prefetch": (2, 1, 0),
    "3 no-prefetch": (0, 3, 0),
    "3 prefetch": (3, 0, 0),
    "2 prefetch + manual loop": (2, 0, 1),
    "2 no-prefetch + manual loop": (0, 2, 1),
}


def _worker(url: str, prefix: str, prefetch: bool) -> subprocess.Popen[bytes]:
    cmd = [sys.executable, "-m", "minique", "--log-level", "WARNING", "worker",
           "benchmarks.mixed_fleet_procs:registry", "--queue", "b18", "--url", url,
           "--prefix", prefix, "--concurrency", "10"] + ([] if prefetch else ["--no-prefetch"])
    return subprocess.Popen(cmd, cwd=ROOT, env={**os.environ, "PYTHONPATH": str(ROOT)})


async def _script_calls(r: aredis.Redis) -> int:
    st = await r.info("commandstats")
    return sum(v["calls"] for k, v in st.items() if k in ("cmdstat_fcall", "cmdstat_evalsha"))


async def _run(url: str, label: str, n: int, fleet: tuple[int, int, int], job: str) -> None:
    prefetching, plain, manual = fleet
    prefix = f"fleet{time.monotonic_ns()}"
    q = Queue("b18", url=url, prefix=prefix)
    r = aredis.from_url(url)
    ps = r.pubsub()
    await ps.subscribe(q.keys.control)
    peers = 0
    procs = [_worker(url, prefix, True) for _ in range(prefetching)]
    procs += [_worker(url, prefix, False) for _ in range(plain)]
    await q.add_bulk([(job, {}, KEEP) for _ in range(2000)])  # warm-up: jobs measured
    while (await q.get_stats())["completed"] < 2000:
        await asyncio.sleep(0.05)
    stop = asyncio.Event()
    manual_took = 0

    async def manual_loop() -> None:
        nonlocal manual_took
        async with ManualWorker("b18", url=url, prefix=prefix, stalled_interval=0) as m:
            job = None
            while not stop.is_set():
                if job is None:
                    job = await m.get_next_job(block=0.2)
                    continue
                manual_took += 1
                job = await m.complete(job, None, fetch_next=True)
            if job is not None:
                await m.complete(job)

    async def count_peers() -> None:
        nonlocal peers
        while not stop.is_set():
            msg = await ps.get_message(ignore_subscribe_messages=True, timeout=0.1)
            if msg and msg["data"].startswith(b"peer"):
                peers += 1

    tasks = [asyncio.create_task(manual_loop()) for _ in range(manual)]
    counter = asyncio.create_task(count_peers())
    calls_before = await _script_calls(r)
    t0 = time.monotonic()
    for i in range(0, n, 1000):
        await q.add_bulk([(job, {}, KEEP) for _ in range(min(1000, n - i))])
    while (await q.get_stats())["completed"] < 2000 + n:
        await asyncio.sleep(0.02)
    seconds = time.monotonic() - t0
    calls = await _script_calls(r) - calls_before
    stop.set()
    await asyncio.gather(*tasks, counter)
    starts = await r.lrange(f"{q.keys.base}:starts", 0, -1)
    ids = [s.split(b"|")[0] for s in starts]
    print(f"{label:30s} {n / seconds:8.0f} jobs/s  {calls / n:.3f} script calls/job  "
          f"{peers:4d} peer messages  manual took {manual_took:5d}  "
          + (f"duplicate starts {len(ids) - len(set(ids))}" if job == "rec" else ""),
          flush=True)
    for p in procs:
        p.kill()
        p.wait()
    await ps.aclose()
    await q.obliterate(force=True)
    await q.close()
    await r.aclose()


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--n", type=int, default=20000, help="jobs per measurement")
    parser.add_argument("--reps", type=int, default=1)
    parser.add_argument("--only", default="", help="fleets whose label contains this")
    parser.add_argument("--url", default=None, help="a Redis to use (default: a private one)")
    parser.add_argument("--job", choices=("noop", "rec"), default="noop",
                        help="noop, or rec: each start recorded, to count duplicate starts")
    args = parser.parse_args()
    with redis_url(args.url) as url:
        for _ in range(args.reps):
            for label, fleet in FLEETS.items():
                if args.only in label:
                    await _run(url, label, args.n, fleet, args.job)


if __name__ == "__main__":
    asyncio.run(main())
