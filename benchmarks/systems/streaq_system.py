"""streaq (asyncio/anyio, Redis streams + Lua). Bulk add is ``Worker.enqueue_many``."""

from __future__ import annotations

from contextlib import AsyncExitStack
from importlib.metadata import version
from typing import Any

from streaq import Worker

from benchmarks.systems._runner import QUEUE, Adapter, Recorder, main


def make_worker(url: str, concurrency: int, rec: Recorder | None) -> Any:
    worker: Worker[None] = Worker(redis_url=url, queue_name=QUEUE, concurrency=concurrency)

    @worker.task
    async def noop(data: dict[str, Any]) -> None:
        if rec is not None:
            await rec.handle(data)

    return worker, noop


class Streaq(Adapter):
    name = "streaq"

    def versions(self) -> dict[str, str]:
        return {"streaq": version("streaq"), "coredis": version("coredis")}

    async def connect(self, url: str) -> None:
        self.worker, self.noop = make_worker(url, 1, None)
        self.stack = AsyncExitStack()
        await self.stack.enter_async_context(self.worker)

    async def disconnect(self) -> None:
        await self.stack.aclose()

    async def add(self, data: dict[str, Any]) -> None:
        await self.noop.enqueue(data)

    async def add_bulk(self, items: list[dict[str, Any]]) -> None:
        await self.worker.enqueue_many([self.noop.enqueue(d) for d in items])

    async def queued(self) -> int:
        return int(await self.worker.queue_size())

    def run_worker(self, url: str, concurrency: int, rec: Recorder) -> None:
        worker, _ = make_worker(url, concurrency, rec)
        worker.run_sync()


if __name__ == "__main__":
    main(Streaq)
