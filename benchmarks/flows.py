"""Flow trees of one parent and 10 children per second, added and processed, and what a
tree costs Redis against one plain job.

    python -m benchmarks.flows [--trees 300] [--concurrency 50] [--url redis://...]

Starts its own Redis unless --url is given. Adds ``--trees`` trees (parent in "fb-parents",
children in "fb-children") from one producer, then runs one in-process worker per queue
until every parent has completed; prints trees added per second and trees processed per
second (from the first add to the last parent's completion, workers running meanwhile).
Then the same number of plain jobs, added one by one and processed the same way, and the
ratio of the server's CPU time (``INFO cpu``) per tree to that per plain job (issue 17's
aim: at most 12).
"""

from __future__ import annotations

import argparse
import asyncio
import time
from typing import Any

from benchmarks.local_redis import run_on_redis
from minique import FlowProducer, Queue, Worker


def tree(i: int) -> dict[str, Any]:
    return {"name": "parent", "queue": "fb-parents", "data": i,
            "children": [{"name": "child", "queue": "fb-children", "data": j} for j in range(10)]}


async def redis_cpu(q: Queue) -> float:
    info = await q.redis.info("cpu")
    return float(info["used_cpu_user"]) + float(info["used_cpu_sys"])


async def plain_jobs(url: str, n: int, concurrency: int) -> float:
    """Redis CPU seconds for ``n`` plain jobs, added one by one and processed."""
    q = Queue("fb-plain", url=url)
    await q.obliterate(force=True)
    before = await redis_cpu(q)
    for i in range(n):
        await q.add("plain", i)

    async def plain(job: Any) -> Any:
        return job.data

    worker = Worker("fb-plain", plain, url=url, concurrency=concurrency)
    task = asyncio.create_task(worker.run())
    while (await q.get_stats())["completed"] < n:
        await asyncio.sleep(0.05)
    await worker.close()
    await task
    used = await redis_cpu(q) - before
    await q.obliterate(force=True)
    await q.close()
    return used


async def run(url: str, trees: int, concurrency: int) -> None:
    parents, children = Queue("fb-parents", url=url), Queue("fb-children", url=url)
    for q in (parents, children):
        await q.obliterate(force=True)
    flow = FlowProducer(url=url)
    cpu_before = await redis_cpu(parents)
    start = time.perf_counter()
    for i in range(trees):
        await flow.add(tree(i))
    added = time.perf_counter() - start

    async def parent(job: Any) -> int:
        return len(await job.get_children_values())

    async def child(job: Any) -> Any:
        return job.data

    workers = [Worker("fb-children", child, url=url, concurrency=concurrency),
               Worker("fb-parents", parent, url=url, concurrency=concurrency)]
    tasks = [asyncio.create_task(w.run()) for w in workers]
    processing = time.perf_counter()
    while (await parents.get_stats())["completed"] < trees:
        await asyncio.sleep(0.05)
    processed = time.perf_counter() - processing
    tree_cpu = await redis_cpu(parents) - cpu_before
    for w, t in zip(workers, tasks, strict=True):
        await w.close()
        await t
    for q in (parents, children):
        await q.obliterate(force=True)
        await q.close()
    await flow.close()
    print(f"added:     {trees / added:8.0f} trees/s ({trees * 11 / added:.0f} jobs/s)")
    print(f"processed: {trees / processed:8.0f} trees/s ({trees * 11 / processed:.0f} jobs/s)")
    plain_cpu = await plain_jobs(url, trees, concurrency)
    print(f"Redis CPU: {tree_cpu * 1e6 / trees:8.0f} us per tree, {plain_cpu * 1e6 / trees:.0f} us "
          f"per plain job: a tree costs {tree_cpu / plain_cpu:.1f}x a plain job (aim <= 12)")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--trees", type=int, default=300)
    parser.add_argument("--concurrency", type=int, default=50)
    parser.add_argument("--url")
    args = parser.parse_args()
    run_on_redis(args.url, lambda url: run(url, args.trees, args.concurrency))


if __name__ == "__main__":
    main()
