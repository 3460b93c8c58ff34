"""A blocking facade over Queue for code that is not async (Django, Flask, scripts).

Each SyncQueue runs its own event loop in a daemon thread and hands calls to it, so it is
safe to use from any thread of a sync program.
"""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Coroutine, Iterable, Mapping
from typing import Any, TypeVar

from .job import Job
from .queue import BulkItem, Queue

T = TypeVar("T")


class SyncQueue:
    """``SyncQueue("reports", url=...)`` offers the Queue methods without ``await``."""

    def __init__(self, name: str, *, url: str | None = None, timeout: float = 30.0,
                 **queue_kwargs: Any) -> None:
        self._timeout = timeout
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._loop.run_forever, name=f"minique-sync-{name}",
                                        daemon=True)
        self._thread.start()
        self._queue: Queue = self._call(self._make(name, url, queue_kwargs))

    @staticmethod
    async def _make(name: str, url: str | None, kwargs: Mapping[str, Any]) -> Queue:
        return Queue(name, url=url, **kwargs)

    def _call(self, coro: Coroutine[Any, Any, T]) -> T:
        return asyncio.run_coroutine_threadsafe(coro, self._loop).result(self._timeout)

    @property
    def name(self) -> str:
        return self._queue.name

    def add(self, name: str, data: Any = None, **options: Any) -> Job:
        return self._call(self._queue.add(name, data, **options))

    def add_bulk(self, jobs: Iterable[BulkItem]) -> list[Job]:
        return self._call(self._queue.add_bulk(list(jobs)))

    def get_job(self, job_id: str) -> Job | None:
        return self._call(self._queue.get_job(job_id))

    def get_state(self, job_id: str) -> str:
        return self._call(self._queue.get_state(job_id))

    def get_stats(self) -> dict[str, int]:
        return self._call(self._queue.get_stats())

    def get_jobs(self, state: str, start: int = 0, end: int = 49) -> list[Job]:
        return self._call(self._queue.get_jobs(state, start, end))

    def pause(self) -> None:
        self._call(self._queue.pause())

    def resume(self) -> None:
        self._call(self._queue.resume())

    def is_paused(self) -> bool:
        return self._call(self._queue.is_paused())

    def retry_jobs(self, state: str = "failed") -> int:
        return self._call(self._queue.retry_jobs(state))

    def remove_job(self, job_id: str) -> bool:
        return self._call(self._queue.remove_job(job_id))

    def close(self) -> None:
        if self._loop.is_closed():
            return
        self._call(self._queue.close())
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(5)
        self._loop.close()

    def __enter__(self) -> SyncQueue:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
