"""Shared by the held-job tests: worker processes that hold jobs ahead, and the starts they
stamp with the Redis clock (tests/held_procs.py)."""

from __future__ import annotations

import contextlib
import itertools
import os
import signal
from collections.abc import Iterator
from typing import Any

from helpers import start_worker, wait_until

from minique import Queue

_prefixes = itertools.count()


def fresh_prefix(label: str) -> str:
    return f"{label}{next(_prefixes)}"


async def starts(q: Queue) -> list[tuple[str, int, int]]:
    """(job id, start in Redis ms, worker pid) of every start, in order."""
    raw = await q.redis.lrange(f"{q.keys.base}:starts", 0, -1)
    out = []
    for item in raw:
        job_id, ms, pid = item.decode().rsplit("|", 2)
        out.append((job_id, int(ms), int(pid)))
    return out


async def started(q: Queue, job_id: str) -> bool:
    return any(s[0] == job_id for s in await starts(q))


async def started_at_least(q: Queue, n: int) -> bool:
    return int(await q.redis.llen(f"{q.keys.base}:starts")) >= n


async def redis_ms(q: Queue) -> int:
    sec, usec = await q.redis.time()
    return int(sec) * 1000 + int(usec) // 1000


async def completed(q: Queue, n: int) -> bool:
    return (await q.get_stats())["completed"] >= n


async def warm_worker(redis_url: str, procs: list[Any], q: Queue, prefix: str,
                      concurrency: int, *args: str) -> Any:
    """A worker process that has measured its jobs as short, so it holds jobs ahead."""
    worker = start_worker(redis_url, "held", "--prefix", prefix, "--concurrency",
                          str(concurrency), *args, target="tests.held_procs:registry")
    procs.append(worker)
    await q.add_bulk([("tick", {}) for _ in range(60)])
    await wait_until(lambda: completed(q, 60), timeout=20, message="warm-up jobs done")
    await q.redis.delete(f"{q.keys.base}:starts")
    return worker


async def last_held(q: Queue, ids: list[str], timeout: float = 30) -> str:
    """The last of ``ids`` a worker holds, once one is held: its holder has the most jobs
    to start before it. AssertionError if none is held within ``timeout`` s."""
    found: list[str] = []

    async def one_held() -> bool:
        pipe = q.redis.pipeline(transaction=False)
        for job_id in ids:
            pipe.hget(q.keys.job(job_id), "st")
        states = await pipe.execute()
        found[:] = [i for i, st in zip(ids, states, strict=True) if st == b"held"][-1:]
        return bool(found)
    await wait_until(one_held, timeout=timeout, message="a job held")
    return found[0]


@contextlib.contextmanager
def frozen(pid: int) -> Iterator[None]:
    """The process stopped (SIGSTOP: a GC pause, a frozen VM) until the block ends."""
    os.kill(pid, signal.SIGSTOP)
    try:
        yield
    finally:
        os.kill(pid, signal.SIGCONT)
