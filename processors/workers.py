"""Workers for the app's queues inside one process (the demo, the tests).

In production run ``minique worker processors.jobs:registry`` instead.
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterable
from typing import Any

from minique import Worker
from processors import queues
from processors.jobs import registry
from processors.queues import DEFAULT_JOB_OPTIONS, WORKER_OPTIONS, QueueName


class WorkerGroup:
    """One Worker per queue, with the app's options (``overrides`` win, e.g. in tests)."""

    def __init__(self, names: Iterable[QueueName] = tuple(QueueName), **overrides: Any) -> None:
        options: dict[str, Any] = {**WORKER_OPTIONS, "default_job_options": DEFAULT_JOB_OPTIONS,
                                   **overrides}
        options.setdefault("url", queues.redis_url())
        options.setdefault("prefix", queues.queue_prefix())
        self.workers = {QueueName(n): Worker(QueueName(n).value, registry, **options) for n in names}
        self._tasks: list[asyncio.Task[None]] = []

    def start(self) -> WorkerGroup:
        self._tasks = [asyncio.create_task(w.run(), name=f"worker-{n.value}")
                       for n, w in self.workers.items()]
        return self

    async def close(self, timeout: float = 10.0) -> None:
        await asyncio.gather(*(w.close(timeout) for w in self.workers.values()))
        await asyncio.gather(*self._tasks, return_exceptions=True)

    async def __aenter__(self) -> WorkerGroup:
        return self.start()

    async def __aexit__(self, *exc: object) -> None:
        await self.close()
