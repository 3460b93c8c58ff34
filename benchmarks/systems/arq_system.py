"""arq (asyncio, a sorted set polled by the worker).

arq's default ``poll_delay`` of 0.5 s starts at most one batch per poll, which at
``max_jobs=1`` means about 2 jobs/s, and puts ~250 ms into pickup latency. The default
variant therefore runs with ``poll_delay=0.01`` (as the issue's earlier measurement did);
``--variant default`` keeps arq's own default.

arq pins redis<6, which clashes with the other peers, so it lives in its own venv
(``benchmarks/.venv-peers-arq``). No bulk-add API.
"""

from __future__ import annotations

from importlib.metadata import version
from typing import Any

from arq import Worker, create_pool
from arq.connections import ArqRedis, RedisSettings
from arq.constants import default_queue_name
from arq.worker import func

from benchmarks.systems._runner import Adapter, Recorder, main


class Arq(Adapter):
    name = "arq"
    has_bulk = False

    def versions(self) -> dict[str, str]:
        return {"arq": version("arq"), "redis-py (arq venv)": version("redis")}

    async def connect(self, url: str) -> None:
        self.redis: ArqRedis = await create_pool(RedisSettings.from_dsn(url))

    async def disconnect(self) -> None:
        await self.redis.aclose()

    async def add(self, data: dict[str, Any]) -> None:
        await self.redis.enqueue_job("noop", data)

    async def queued(self) -> int:
        return int(await self.redis.zcard(default_queue_name))

    async def check_done(self, n: int) -> str | None:
        left = await self.queued()
        if left:
            return f"{left} queued"
        results = await self.redis.all_job_results()
        ok = sum(1 for r in results if r.success)
        return None if ok == n else f"{ok} successful results"

    def run_worker(self, url: str, concurrency: int, rec: Recorder) -> None:
        async def noop(ctx: dict[str, Any], data: dict[str, Any]) -> None:
            await rec.handle(data)

        worker = Worker(
            functions=[func(noop, name="noop")],
            redis_settings=RedisSettings.from_dsn(url),
            max_jobs=concurrency,
            poll_delay=0.5 if self.variant == "default" else 0.01,
        )
        worker.run()


if __name__ == "__main__":
    main(Arq)
