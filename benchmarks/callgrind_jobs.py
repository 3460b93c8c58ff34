"""Redis instructions (callgrind Ir) per processed job, for the worker's script calls.

    python -m benchmarks.callgrind_jobs [--n 5000] [--concurrency 50] [--no-prefetch] [--keep]

Starts a private redis-server under ``valgrind --tool=callgrind`` (instrumentation off until
the jobs are queued), queues N no-op jobs with the default options (as benchmarks.compare
does), zeroes the counters, processes them with one Worker and dumps. Instruction counts
repeat from run to run, where the wall clock of this machine does not: the figure to
compare between two versions of the scripts. ``--keep`` leaves the dump (its path is
printed) for ``callgrind_annotate``.
"""

from __future__ import annotations

import argparse
import asyncio
import glob
import os
import re
import subprocess
import tempfile
import time
from typing import Any

import redis
import redis.asyncio

import minique.worker
from minique import Queue, Worker
from minique.server import find_server_binary, free_port


def _wait_ping(port: int, timeout: float) -> None:
    client = redis.Redis(host="127.0.0.1", port=port, socket_connect_timeout=1.0)
    deadline = time.monotonic() + timeout
    try:
        while True:
            try:
                if client.ping():
                    return
            except redis.RedisError:
                pass
            if time.monotonic() > deadline:
                raise TimeoutError("redis-server under valgrind did not answer PING")
            time.sleep(0.2)
    finally:
        client.close()


def _total_ir(path: str) -> int:
    with open(path) as f:
        for line in f:
            if line.startswith("summary:") or line.startswith("totals:"):
                return int(line.split()[1])
    raise ValueError(f"no totals in {path}")


def _callgrind_control(option: str, pid: int) -> None:
    subprocess.run(["callgrind_control", option, str(pid)], check=True, capture_output=True)


async def _process(url: str, n: int, concurrency: int, pid: int, prefetch: bool) -> None:
    q = Queue("cg", url=url)
    await q.obliterate(force=True)
    for start in range(0, n, 5000):
        await q.add_bulk([("noop", {"i": i}, {}) for i in range(start, min(n, start + 5000))])

    async def noop(job: Any) -> None:
        return None

    client = redis.asyncio.Redis.from_url(url)
    await client.config_resetstat()
    await asyncio.to_thread(_callgrind_control, "-z", pid)
    # valgrind slows the server ~50x: a hold as long as a real one would run out between
    # two calls, and the held jobs would go back and be taken again, over and over.
    minique.worker.HOLD_TIME = 50 * minique.worker.HOLD_TIME
    if not prefetch:
        minique.worker.PREFETCH_WORK = 0.0  # no job is short enough: one job per slot a call
    worker = Worker("cg", noop, url=url, concurrency=concurrency)
    task = asyncio.create_task(worker.run())
    # One HGET a poll (the running total of completed jobs), not get_stats' dozen commands:
    # the polls' cost is counted too, and their number follows the wall clock.
    totals = f"{q.keys.base}:metrics:totals"
    while int(await client.hget(totals, "completed") or 0) < n:
        await asyncio.sleep(0.25)
    await asyncio.to_thread(_callgrind_control, "-d", pid)
    stats = await client.info("commandstats")
    calls = sorted(((int(v["calls"]), k.removeprefix("cmdstat_")) for k, v in stats.items()),
                   reverse=True)
    print("commands per job: " + ", ".join(f"{k} {c / n:.2f}" for c, k in calls if c / n >= 0.005))
    await client.aclose()
    await worker.close()
    await task
    await q.close()


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--n", type=int, default=5000)
    ap.add_argument("--concurrency", type=int, default=50)
    ap.add_argument("--keep", action="store_true")
    ap.add_argument("--no-prefetch", action="store_true",
                    help="no held jobs: at concurrency 1, a script call per job")
    args = ap.parse_args()
    out_dir = tempfile.mkdtemp(prefix="minique-cg-")
    port = free_port()
    proc = subprocess.Popen(
        ["valgrind", "--tool=callgrind", f"--callgrind-out-file={out_dir}/cg.%p",
         find_server_binary(), "--port", str(port), "--bind", "127.0.0.1", "--save", "",
         "--appendonly", "no", "--dir", out_dir],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
    try:
        _wait_ping(port, 120.0)
        asyncio.run(_process(f"redis://127.0.0.1:{port}/0", args.n, args.concurrency, proc.pid,
                                not args.no_prefetch))
    finally:
        proc.terminate()
        proc.wait(60)
    dumps = [p for p in glob.glob(f"{out_dir}/cg.*") if re.search(r"\.\d+\.\d+$", p)]
    # The dump requested after the jobs ran ends in ".1" (the final one at exit has no suffix).
    dump = sorted(dumps)[0]
    ir = _total_ir(dump)
    label = f"concurrency {args.concurrency}" + (" no prefetch" if args.no_prefetch else "")
    print(f"{label}: {args.n} jobs, {ir:,} Ir, {ir / args.n:,.0f} Ir/job"
          + (f"  ({dump})" if args.keep else ""))
    if not args.keep:
        for p in glob.glob(f"{out_dir}/*"):
            os.remove(p)
        os.rmdir(out_dir)


if __name__ == "__main__":
    main()
