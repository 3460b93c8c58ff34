"""Entry points for the multi-process scheduler tests (run in spawned processes)."""

from __future__ import annotations

import asyncio
from typing import Any

import redis.asyncio as aioredis

from minique import Queue, Worker


def upsert_main(url: str, qname: str, go: Any, every: float) -> None:
    """Waits for the common start signal, then upserts the shared scheduler."""

    async def main() -> None:
        q = Queue(qname, url=url)
        await q.redis.ping()  # connect first, so the upserts really race
        go.wait(10)
        await q.upsert_job_scheduler("tick", every=every, job_name="tick", data={"k": 1})
        await q.close()

    asyncio.run(main())


def worker_main(url: str, qname: str, ready: Any) -> None:
    """Runs a Worker that records every firing it processes, until an item is pushed to the
    list `<qname>:stop` (one per worker). Per fire time, `<qname>:fired` counts the runs and
    `<qname>:late` holds the lateness (processed_on - fire time, ms)."""

    async def main() -> None:
        r = aioredis.Redis.from_url(url)

        async def record(job: Any) -> None:
            fire_ms = int(job.id.rsplit(":", 1)[1])  # sched:<sid>:<gen>:<fire_ms>
            async with r.pipeline(transaction=False) as pipe:
                pipe.hincrby(f"{qname}:fired", str(fire_ms), 1)
                pipe.hset(f"{qname}:late", str(fire_ms), round((job.processed_on or 0) * 1000) - fire_ms)
                await pipe.execute()

        worker = Worker(qname, record, url=url, concurrency=2, block_timeout=1.0)
        task = asyncio.create_task(worker.run())
        ready.set()
        await r.blpop([f"{qname}:stop"], timeout=60)  # the parent's stop signal (or give up)
        await worker.close(timeout=5)
        await task
        await r.aclose()

    asyncio.run(main())
