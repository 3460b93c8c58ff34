"""Flow trees of one parent and 10 children per second, added and processed.

    python -m benchmarks.flows [--trees 300] [--concurrency 50] [--url redis://...]

Starts its own Redis unless --url is given. Adds ``--trees`` trees (parent in "fb-parents",
children in "fb-children") from one producer, then runs one in-process worker per queue
until every parent has completed; prints trees added per second and trees processed per
second (from the first add to the last parent's completion, workers running meanwhile).
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


async def run(url: str, trees: int, concurrency: int) -> None:
    parents, children = Queue("fb-parents", url=url), Queue("fb-children", url=url)
    for q in (parents, children):
        await q.obliterate(force=True)
    flow = FlowProducer(url=url)
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
    for w, t in zip(workers, tasks, strict=True):
        await w.close()
        await t
    for q in (parents, children):
        await q.obliterate(force=True)
        await q.close()
    await flow.close()
    print(f"added:     {trees / added:8.0f} trees/s ({trees * 11 / added:.0f} jobs/s)")
    print(f"processed: {trees / processed:8.0f} trees/s ({trees * 11 / processed:.0f} jobs/s)")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--trees", type=int, default=300)
    parser.add_argument("--concurrency", type=int, default=50)
    parser.add_argument("--url")
    args = parser.parse_args()
    run_on_redis(args.url, lambda url: run(url, args.trees, args.concurrency))


if __name__ == "__main__":
    main()
