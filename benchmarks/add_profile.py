"""Where one add's time goes: client CPU, Redis CPU, and the commands inside add.lua.

    python -m benchmarks.add_profile [--n 5000] [--bulk 50000] [--profile] [--memory]

Starts a private Redis. For ``add`` one by one (awaited, one producer) and ``add_bulk``
(chunks of 500) it prints jobs/s, the client's CPU per job (os.times), Redis's CPU per job
(INFO cpu), each as user + system time, and the commands run per job (INFO commandstats).
``--profile`` adds a cProfile of the one-by-one adds; ``--memory`` the Redis memory per
waiting job (hash + ready-stream entry + its share of the events stream), measured as in
``benchmarks.throughput``, plus the encoding and MEMORY USAGE of one job hash.
``benchmarks.add_callgrind`` counts the server's instructions per add (repeatable).
"""

from __future__ import annotations

import argparse
import asyncio
import cProfile
import os
import pstats
import time
from typing import Any

import redis.asyncio as aioredis

from minique import Queue
from minique.server import RedisServer


async def _cpu(client: Any) -> tuple[float, float]:
    """Redis's CPU time so far: (user, system)."""
    info = await client.info("cpu")
    return float(info["used_cpu_user"]), float(info["used_cpu_sys"])


def _own_cpu() -> tuple[float, float]:
    """This process's CPU time so far: (user, system)."""
    t = os.times()
    return t.user, t.system


async def _cmds(client: Any) -> dict[str, int]:
    info = await client.info("commandstats")
    return {k.removeprefix("cmdstat_"): int(v["calls"]) for k, v in info.items()}


def _line(label: str, n: int, wall: float, client: tuple[float, float],
          redis: tuple[float, float], before: dict[str, int], after: dict[str, int]) -> None:
    """``client`` and ``redis``: CPU time spent (user, system)."""
    diff = {k: after[k] - before.get(k, 0) for k in after if after[k] - before.get(k, 0)}
    diff.pop("info", None)
    per = ", ".join(f"{k} {v / n:.2f}" for k, v in sorted(diff.items(), key=lambda kv: -kv[1]))

    def us(cpu: tuple[float, float]) -> str:
        return (f"{sum(cpu) / n * 1e6:6.1f} µs/job ({cpu[0] / n * 1e6:.0f} user + "
                f"{cpu[1] / n * 1e6:.0f} sys)")

    print(f"{label:<12} {n / wall:>9,.0f} jobs/s  client {us(client)}  redis {us(redis)}  "
          f"| {per}")


def _spent(after: tuple[float, float], before: tuple[float, float]) -> tuple[float, float]:
    return after[0] - before[0], after[1] - before[1]


async def one_by_one(url: str, client: Any, n: int, profile: bool) -> None:
    q = Queue("bench", url=url)
    await q.obliterate(force=True)
    for i in range(200):  # warm: scripts loaded, connection open
        await q.add("noop", {"i": i})
    await q.obliterate(force=True)
    c0, r0, b0 = _own_cpu(), await _cpu(client), await _cmds(client)
    prof = cProfile.Profile() if profile else None
    t0 = time.perf_counter()
    if prof:
        prof.enable()
    for i in range(n):
        await q.add("noop", {"i": i})
    if prof:
        prof.disable()
    wall = time.perf_counter() - t0
    c1, r1, b1 = _own_cpu(), await _cpu(client), await _cmds(client)
    _line("add one", n, wall, _spent(c1, c0), _spent(r1, r0), b0, b1)
    if prof:
        pstats.Stats(prof).sort_stats("tottime").print_stats(25)
    await q.obliterate(force=True)
    await q.close()


async def bulk(url: str, client: Any, n: int) -> None:
    q = Queue("bench", url=url)
    await q.obliterate(force=True)
    await q.add_bulk([("noop", {"i": i}, {}) for i in range(500)])
    await q.obliterate(force=True)
    items = [("noop", {"i": i}, {}) for i in range(n)]
    c0, r0, b0 = _own_cpu(), await _cpu(client), await _cmds(client)
    t0 = time.perf_counter()
    for s in range(0, n, 500):
        await q.add_bulk(items[s:s + 500])
    wall = time.perf_counter() - t0
    c1, r1, b1 = _own_cpu(), await _cpu(client), await _cmds(client)
    _line("add_bulk", n, wall, _spent(c1, c0), _spent(r1, r0), b0, b1)
    await q.obliterate(force=True)
    await q.close()


async def memory(url: str, client: Any, n: int = 100_000) -> None:
    q = Queue("bench-mem", url=url)
    await q.obliterate(force=True)
    await client.execute_command("MEMORY", "PURGE")
    before = int((await client.info("memory"))["used_memory"])
    for start in range(0, n, 10_000):
        await q.add_bulk([("noop", {"i": i}) for i in range(start, start + 10_000)])
    after = int((await client.info("memory"))["used_memory"])
    jk = q.keys.job("50000")
    h = await client.hgetall(jk)
    enc = await client.object("encoding", jk)
    usage = await client.memory_usage(jk, samples=0)
    ev = await client.memory_usage(q.keys.events, samples=0)
    ready = await client.memory_usage(q.keys.ready, samples=0)
    xlen = await client.xlen(q.keys.events)
    print(f"memory per waiting job {(after - before) / n:8,.0f} B ({n:,} jobs, payload {{'i': n}})")
    print(f"  job hash {usage} B ({enc.decode()}, {len(h)} fields: "
          f"{ {k.decode(): v for k, v in h.items()} })")
    print(f"  ready stream {ready / n:.1f} B/job; events stream {ev:,} B for {xlen:,} entries "
          f"= {ev / n:.1f} B/job at {n:,} jobs")
    await q.obliterate(force=True)
    await q.close()


async def run(url: str, args: argparse.Namespace) -> None:
    client = aioredis.Redis.from_url(url)
    for _ in range(args.reps):
        await one_by_one(url, client, args.n, args.profile)
        await bulk(url, client, args.bulk)
    if args.memory:
        await memory(url, client)
    await client.aclose()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--n", type=int, default=5000)
    parser.add_argument("--bulk", type=int, default=50000)
    parser.add_argument("--reps", type=int, default=1)
    parser.add_argument("--profile", action="store_true")
    parser.add_argument("--memory", action="store_true")
    parser.add_argument("--url", default=None)
    args = parser.parse_args()
    if args.url:
        asyncio.run(run(args.url, args))
        return
    with RedisServer() as server:
        asyncio.run(run(server.url, args))


if __name__ == "__main__":
    main()
