"""RQ (sync; one job at a time per worker process).

Variants: ``simple`` runs ``SimpleWorker`` (jobs in the worker process), ``fork`` runs the
default ``Worker``, which forks a work horse per job. Bulk add is ``Queue.enqueue_many``;
"50 concurrent tasks" are 50 threads sharing the connection pool.
"""

from __future__ import annotations

import asyncio
from concurrent.futures import ThreadPoolExecutor
from importlib.metadata import version
from typing import Any

from redis import Redis
from rq import Queue, SimpleWorker, Worker

from benchmarks.systems import _runner
from benchmarks.systems._runner import QUEUE, Adapter, Recorder, main, payload

JOB = "benchmarks.systems.rq_system.noop"


def noop(data: dict[str, Any]) -> None:
    """The job function; RQ imports it by name in the worker."""
    assert _runner.CURRENT is not None
    _runner.CURRENT.handle_sync(data)


class Rq(Adapter):
    name = "rq"
    has_concurrency = False

    def versions(self) -> dict[str, str]:
        return {"rq": version("rq"), "redis-py": version("redis")}

    async def connect(self, url: str) -> None:
        self.redis = Redis.from_url(url)
        self.queue = Queue(QUEUE, connection=self.redis)

    async def disconnect(self) -> None:
        self.redis.close()

    async def add(self, data: dict[str, Any]) -> None:
        self.queue.enqueue(JOB, data)

    async def add_bulk(self, items: list[dict[str, Any]]) -> None:
        self.queue.enqueue_many([Queue.prepare_data(JOB, (d,)) for d in items])

    async def add_concurrent(self, n: int, tasks: int) -> None:
        def one(start: int) -> None:
            for i in range(start, n, tasks):
                self.queue.enqueue(JOB, payload(i))

        with ThreadPoolExecutor(tasks) as pool:
            await asyncio.gather(*(asyncio.wrap_future(pool.submit(one, k)) for k in range(tasks)))

    async def queued(self) -> int:
        return self.queue.count

    async def check_done(self, n: int) -> str | None:
        done = self.queue.finished_job_registry.count
        failed = self.queue.failed_job_registry.count
        left = self.queue.count
        return None if done == n and not failed and not left else f"{done=} {failed=} {left=}"

    def run_worker(self, url: str, concurrency: int, rec: Recorder) -> None:
        redis = Redis.from_url(url)
        cls = Worker if self.variant == "fork" else SimpleWorker
        cls([Queue(QUEUE, connection=redis)], connection=redis).work()


if __name__ == "__main__":
    main(Rq)
