"""What a worker's heartbeat says about it: written by the worker, read by the queue side
(``Queue.get_workers()``, the dashboard). A module of its own, so that the producer side
never imports the worker."""

from __future__ import annotations

import re

import msgspec

# A worker given a name (which several processes may share) carries it in Redis with a
# suffix of its own, "name#1a2b3c4d", so its jobs and records are its alone.
_IDENT_SUFFIX = re.compile(r"#[0-9a-f]{8}$")


def worker_label(ident: str) -> str:
    """The name a worker was given, from the identity its jobs carry in Redis."""
    return _IDENT_SUFFIX.sub("", ident)


class WorkerInfo(msgspec.Struct):
    """A live worker, as its heartbeat describes it. Times are Unix seconds.

    ``kind``: "worker" (a ``Worker``: ``concurrency`` slots) or "manual" (a
    ``ManualWorker``: ``concurrency`` 0, as it takes a job whenever its code asks; ``running``
    lists the jobs it took and has not finished)."""

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
    kind: str = "worker"  # absent from older heartbeats
