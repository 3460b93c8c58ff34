"""The demo: produce jobs, then process them, on the local Redis or a private one.

    python -m processors.demo

(The Amazon demo with the fake Amazon server grows out of this; see README.)
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import logging
import os
from collections.abc import Iterator
from typing import Any

from minique import Queue, Registry, Worker
from minique.connection import resolve_url
from minique.server import RedisServer, reachable

registry = Registry()


@registry.processor("demo", name="square")
async def square(job: Any) -> int:
    await job.update_progress(50)
    value: int = job.data["n"] ** 2
    return value


@contextlib.contextmanager
def redis_for_demo() -> Iterator[str]:
    """The configured Redis if it answers; otherwise a private server for this run."""
    url = resolve_url(None)
    if reachable(url):
        yield url
        return
    print(f"no Redis at {url}; starting a private one")
    with RedisServer() as server:
        yield server.url


async def run(url: str, n: int) -> None:
    queue = Queue("demo", url=url)
    await queue.obliterate(force=True)
    jobs = await queue.add_bulk([("square", {"n": i}) for i in range(n)])
    print(f"added {len(jobs)} jobs: {await queue.get_stats()}")
    worker = Worker("demo", registry, url=url, concurrency=5)
    task = asyncio.create_task(worker.run())
    results = [await job.wait_until_finished(timeout=30) for job in jobs]
    await worker.close()
    await task
    print(f"results: {results}")
    print(f"stats: {await queue.get_stats()}")
    await queue.close()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--jobs", type=int, default=10)
    args = parser.parse_args()
    logging.basicConfig(level=os.environ.get("LOG_LEVEL", "WARNING"))
    with redis_for_demo() as url:
        asyncio.run(run(url, args.jobs))


if __name__ == "__main__":
    main()
