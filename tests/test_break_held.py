"""Adversarial tests for issue #12 (held jobs, re-sends, leases): each reproduces a broken
promise of docs/guide/workers.md or docs/design/leases.md."""

from __future__ import annotations

import asyncio
import itertools
from typing import Any

from helpers import wait_until

from minique import Queue, Worker

_prefixes = itertools.count()


def _prefix() -> str:
    return f"brk{next(_prefixes)}"


async def _completed(q: Queue, n: int) -> bool:
    return (await q.get_stats())["completed"] >= n


async def test_two_workers_given_the_same_name_never_run_a_job_twice(
        redis_url: str) -> None:
    """A worker name is a label people reuse (one per service, or `--name` with
    `--processes N`, which gives every child the same name)."""
    prefix = _prefix()
    q = Queue("same-name", url=redis_url, prefix=prefix,
              default_job_options={"remove_on_complete": False})
    runs: dict[str, int] = {}

    async def work(job: Any) -> None:
        runs[job.id] = runs.get(job.id, 0) + 1
        await asyncio.sleep(0)

    jobs = await q.add_bulk([("x", i) for i in range(2000)])
    workers = [Worker("same-name", work, url=redis_url, prefix=prefix,
                      concurrency=5, name="emailer") for _ in range(2)]
    tasks = [asyncio.create_task(w.run(handle_signals=False)) for w in workers]
    try:
        await wait_until(lambda: _completed(q, 2000), timeout=30, message="2000 completed")
    finally:
        for w in workers:
            await w.close(timeout=2)
        crashed = await asyncio.gather(*tasks, return_exceptions=True)
    assert not [e for e in crashed if e is not None], crashed
    assert {j.id for j in jobs} == set(runs)
    twice = {k: v for k, v in runs.items() if v > 1}
    assert not twice, f"{len(twice)} jobs ran more than once"
    await q.obliterate(force=True)
    await q.close()
