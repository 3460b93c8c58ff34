"""SAQ (asyncio, Redis lists + sorted sets). No bulk-add API."""

from __future__ import annotations

import asyncio
from importlib.metadata import version
from typing import Any

from saq import Queue, Worker

from benchmarks.systems._runner import QUEUE, Adapter, Recorder, main


class Saq(Adapter):
    name = "saq"
    has_bulk = False

    def versions(self) -> dict[str, str]:
        return {"saq": version("saq"), "redis-py": version("redis")}

    async def connect(self, url: str) -> None:
        self.queue = Queue.from_url(url, name=QUEUE)
        await self.queue.connect()

    async def disconnect(self) -> None:
        await self.queue.disconnect()

    async def add(self, data: dict[str, Any]) -> None:
        await self.queue.enqueue("noop", data=data)

    async def queued(self) -> int:
        return await self.queue.count("queued")

    async def check_done(self, n: int) -> str | None:
        left = await self.queue.count("incomplete")
        return None if left == 0 else f"{left} incomplete"

    def run_worker(self, url: str, concurrency: int, rec: Recorder) -> None:
        async def noop(ctx: Any, *, data: dict[str, Any]) -> None:
            await rec.handle(data)

        async def serve() -> None:
            queue = Queue.from_url(url, name=QUEUE)
            worker = Worker(queue, functions=[("noop", noop)], concurrency=concurrency)
            await worker.start()

        asyncio.run(serve())


if __name__ == "__main__":
    main(Saq)
