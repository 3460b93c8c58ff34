"""Batch processors: one call for up to ``size`` jobs of a queue (bulk writes, bulk HTTP).

    @registry.processor("webhooks", batch={"size": 50, "timeout": 1.0})
    async def deliver(batch: Batch) -> None:
        for job in batch:
            ...
        batch.fail(some_job, "receiver refused it")

The worker gathers up to ``size`` jobs and calls the processor once with them, or with
fewer once ``timeout`` seconds have passed since the first job of the batch arrived. Each
job keeps its own state, attempts, backoff, retention and events: the ones the processor
``fail``\\ s fail (or retry, while attempts remain) and the others complete; an exception
raised by the processor fails (or retries) every job of the batch.
"""

from __future__ import annotations

import math
from collections.abc import Iterator, Mapping
from typing import Any

import msgspec

from .errors import MiniqueError
from .job import Job

MAX_BATCH_SIZE = 1000


class BatchOptions(msgspec.Struct, frozen=True):
    """``size`` jobs at most per call; ``timeout`` seconds to wait for a full batch."""

    size: int
    timeout: float


def parse_batch(value: Any) -> BatchOptions | None:
    """``{"size": n, "timeout": seconds}`` -> BatchOptions; TypeError/ValueError on bad input."""
    if value is None:
        return None
    if isinstance(value, BatchOptions):
        return value
    if not isinstance(value, Mapping):
        raise TypeError(f"batch must be {{'size': n, 'timeout': seconds}}, got {value!r}")
    extra = set(value) - {"size", "timeout"}
    if extra or "size" not in value:
        raise TypeError(f"batch takes the keys 'size' (required) and 'timeout', got {sorted(value)}")
    size, timeout = value["size"], value.get("timeout", 1.0)
    if isinstance(size, bool) or not isinstance(size, int) or not 1 <= size <= MAX_BATCH_SIZE:
        raise ValueError(f"batch size must be an integer from 1 to {MAX_BATCH_SIZE}, got {size!r}")
    if (isinstance(timeout, bool) or not isinstance(timeout, int | float)
            or not math.isfinite(timeout) or not 0 < timeout <= 3600):
        raise ValueError(f"batch timeout must be seconds in (0, 3600], got {timeout!r}")
    return BatchOptions(size, float(timeout))


class JobFailedInBatch(MiniqueError):
    """The reason a batch processor gave to ``Batch.fail`` for one job."""


class Batch:
    """The jobs of one call of a batch processor, in the order they were taken."""

    __slots__ = ("failed", "jobs")

    def __init__(self, jobs: list[Job]) -> None:
        self.jobs = jobs
        self.failed: dict[str, str] = {}  # job id -> reason, for the jobs fail() was told

    def fail(self, job: Job, error: str | BaseException) -> None:
        """Fails this one job (it retries while attempts remain); the others complete."""
        if not any(j is job or j.id == job.id for j in self.jobs):
            raise ValueError(f"job {job.id} is not in this batch")
        self.failed[job.id] = (error if isinstance(error, str)
                               else f"{type(error).__name__}: {error}")

    def __iter__(self) -> Iterator[Job]:
        return iter(self.jobs)

    def __len__(self) -> int:
        return len(self.jobs)

    def __repr__(self) -> str:
        return f"<Batch of {len(self.jobs)} jobs, {len(self.failed)} failed>"
