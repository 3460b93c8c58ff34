"""chasquimq: a Rust engine on Redis streams with asyncio Python bindings (PyPI wheel)."""

from __future__ import annotations

import asyncio
from importlib.metadata import version
from typing import Any

import chasquimq  # type: ignore[import-untyped]
from chasquimq import Job, Queue, Worker

from benchmarks.redis_server import RespClient
from benchmarks.systems._runner import QUEUE, Adapter, Recorder, main


class Chasquimq(Adapter):
    name = "chasquimq"

    def versions(self) -> dict[str, str]:
        return {"chasquimq": version("chasquimq"), "chasquimq engine": str(chasquimq.version())}

    async def connect(self, url: str) -> None:
        self.url = url
        self.queue = Queue(QUEUE, redis_url=url)

    async def disconnect(self) -> None:
        await self.queue.close()

    async def add(self, data: dict[str, Any]) -> None:
        await self.queue.add("noop", data)

    async def add_bulk(self, items: list[dict[str, Any]]) -> None:
        await self.queue.add_bulk([{"name": "noop", "data": d} for d in items])

    def _stream_keys(self, client: RespClient) -> list[bytes]:
        keys = client.call("KEYS", f"*{QUEUE}*")
        assert isinstance(keys, list)
        return [k for k in keys if isinstance(k, bytes) and client.call("TYPE", k) in (b"stream", "stream")]

    async def queued(self) -> int:
        # No queue-size call in the Python API: read the job stream's length and
        # pending entries directly (entries are XACKDEL'd when done).
        client = RespClient.from_url(self.url)
        try:
            total = 0
            for key in self._stream_keys(client):
                if b"dlq" in key or b"events" in key:
                    continue
                length = client.call("XLEN", key)
                assert isinstance(length, int)
                total += length
            return total
        finally:
            client.close()

    async def check_done(self, n: int) -> str | None:
        left = await self.queued()
        dlq = await self.queue.peek_dlq(5)
        return None if left == 0 and not dlq else f"{left} in stream, dlq={len(dlq)}"

    def run_worker(self, url: str, concurrency: int, rec: Recorder) -> None:
        async def noop(job: Job) -> None:
            await rec.handle(job.data)

        asyncio.run(Worker(QUEUE, noop, redis_url=url, concurrency=concurrency).run())


if __name__ == "__main__":
    main(Chasquimq)
