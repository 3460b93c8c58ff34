"""Time from kill -9 of the worker running a job to another worker starting it again.

    python -m benchmarks.recovery [--rounds 5] [--lock-duration 1] [--stalled-interval 1]

Two worker processes run; each round adds a job that holds for 3 s, kills -9 whichever
worker took it, and measures until the survivor starts it; then a fresh worker replaces
the dead one. Uses its own Redis.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import signal
import statistics
import subprocess
import sys
import time
from pathlib import Path

from minique import Queue
from minique.server import RedisServer

ROOT = Path(__file__).resolve().parent.parent


def spawn(url: str, lock: float, stalled: float) -> subprocess.Popen[bytes]:
    return subprocess.Popen(
        [sys.executable, "-m", "minique", "--log-level", "ERROR", "worker",
         "benchmarks.recovery_procs:registry", "--queue", "recovery", "--url", url,
         "--lock-duration", str(lock), "--stalled-interval", str(stalled)],
        cwd=ROOT, env={**os.environ, "PYTHONPATH": str(ROOT)})


async def starts(q: Queue) -> list[tuple[int, float]]:
    raw = await q.redis.lrange(f"{q.keys.base}:starts", 0, -1)
    return [(int(p), float(t)) for p, t in (x.decode().split() for x in raw)]


async def measure(url: str, rounds: int, lock: float, stalled: float) -> list[float]:
    q = Queue("recovery", url=url)
    workers = {p.pid: p for p in (spawn(url, lock, stalled), spawn(url, lock, stalled))}
    results: list[float] = []
    try:
        while len(await q.get_workers()) < 2:
            await asyncio.sleep(0.05)
        for _ in range(rounds):
            before = len(await starts(q))
            job = await q.add("hold", {"hold": 3.0}, attempts=1)
            while len(await starts(q)) == before:
                await asyncio.sleep(0.005)
            victim_pid = (await starts(q))[-1][0]
            workers.pop(victim_pid).send_signal(signal.SIGKILL)
            killed = time.time()
            while len(await starts(q)) == before + 1:
                await asyncio.sleep(0.005)
            pid, restarted = (await starts(q))[-1]
            assert pid != victim_pid
            results.append(restarted - killed)
            await job.wait_until_finished(timeout=30)
            fresh = spawn(url, lock, stalled)
            workers[fresh.pid] = fresh
            while len({w.pid for w in await q.get_workers()} & set(workers)) < 2:
                await asyncio.sleep(0.05)
    finally:
        for p in workers.values():
            p.kill()
        await q.close()
    return results


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--lock-duration", type=float, default=1.0)
    parser.add_argument("--stalled-interval", type=float, default=1.0)
    args = parser.parse_args()
    with RedisServer() as server:
        results = asyncio.run(measure(server.url, args.rounds, args.lock_duration,
                                      args.stalled_interval))
    print(f"kill -9 -> job started again by another worker (lock {args.lock_duration}s, "
          f"stalled interval {args.stalled_interval}s, {len(results)} rounds): "
          f"median {statistics.median(results):.2f}s, min {min(results):.2f}s, "
          f"max {max(results):.2f}s")


if __name__ == "__main__":
    main()
