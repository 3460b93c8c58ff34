"""bullmq, the official Python port of BullMQ (same Lua scripts as BullMQ-Node)."""

from __future__ import annotations

import asyncio
from importlib.metadata import version
from typing import Any

from bullmq import Job, Queue, Worker  # type: ignore[import-untyped]

from benchmarks.systems._runner import QUEUE, Adapter, Recorder, main


class BullmqPy(Adapter):
    name = "bullmq-py"

    def versions(self) -> dict[str, str]:
        return {"bullmq (python)": version("bullmq"), "redis-py": version("redis")}

    async def connect(self, url: str) -> None:
        self.queue = Queue(QUEUE, {"connection": url})

    async def disconnect(self) -> None:
        await self.queue.close()

    async def add(self, data: dict[str, Any]) -> None:
        await self.queue.add("noop", data)

    async def add_bulk(self, items: list[dict[str, Any]]) -> None:
        await self.queue.addBulk([{"name": "noop", "data": d} for d in items])

    async def queued(self) -> int:
        counts = await self.queue.getJobCounts("waiting")
        return int(counts["waiting"])

    async def check_done(self, n: int) -> str | None:
        counts = await self.queue.getJobCounts("completed", "waiting", "active", "failed", "delayed")
        return None if counts["completed"] == n and counts["failed"] == 0 else str(counts)

    def run_worker(self, url: str, concurrency: int, rec: Recorder) -> None:
        async def process(job: Job, token: str) -> None:
            await rec.handle(job.data)

        async def serve() -> None:
            worker = Worker(QUEUE, process, {"connection": url, "concurrency": concurrency})
            try:
                await asyncio.Event().wait()
            finally:
                await worker.close()

        asyncio.run(serve())


if __name__ == "__main__":
    main(BullmqPy)
