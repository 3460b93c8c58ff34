"""Job schedulers: cron and every-N recurring jobs (being built; see issue 4)."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from .queue import Queue


async def upsert_job_scheduler(queue: Queue, scheduler_id: str, **options: Any) -> Any:
    raise NotImplementedError("job schedulers are not built yet")


async def get_job_schedulers(queue: Queue) -> list[Any]:
    raise NotImplementedError("job schedulers are not built yet")


async def remove_job_scheduler(queue: Queue, scheduler_id: str) -> bool:
    raise NotImplementedError("job schedulers are not built yet")
