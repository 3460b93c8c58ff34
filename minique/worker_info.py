"""What a worker's heartbeat says about it: written by the worker, read by the queue side
(``Queue.get_workers()``, the dashboard). A module of its own, so that the producer side
never imports the worker."""

from __future__ import annotations

import msgspec


class WorkerInfo(msgspec.Struct):
    """A live worker, as its heartbeat describes it. Times are Unix seconds."""

    name: str
    host: str
    pid: int
    queues: list[str]
    started_at: float
    last_seen: float
    jobs_done: int
    jobs_failed: int
    concurrency: int
    running: list[str]
