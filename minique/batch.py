"""Batch processors: one call for up to ``size`` jobs of a queue (bulk writes, bulk HTTP).

    @registry.processor("deliveries", batch={"size": 50, "timeout": 1.0, "group": "same"})
    async def deliver(batch: Batch) -> None:
        for job in batch:
            ...
        batch.complete(some_job, {"status": 200})            # its return value
        batch.fail(other_job, "receiver refused it")          # retried while attempts remain
        batch.fail(third_job, UnrecoverableError("bad URL"))  # failed at once

The worker gathers up to ``size`` jobs and calls the processor once with them, or with
fewer once ``timeout`` seconds have passed since the first job of the batch arrived. Each
job keeps its own state, attempts, backoff, retention and events: the ones the processor
``fail``\\ s fail (or retry, while attempts remain) and the others complete; an exception
raised by the processor fails (or retries) every job of the batch. See
docs/guide/batches.md.
"""

from __future__ import annotations

import math
import time
from collections.abc import Iterator, Mapping
from typing import Any, Literal

import msgspec

from .errors import MiniqueError
from .job import Job

MAX_BATCH_SIZE = 1000
GROUP_MODES = ("any", "same")
BatchGroupMode = Literal["any", "same"]


class BatchOptions(msgspec.Struct, frozen=True):
    """``size`` jobs at most per call; ``timeout`` seconds to wait for a full batch;
    ``group``: "any" (the default: jobs of any groups, and jobs without one, may share a
    batch) or "same" (every batch holds jobs of one group only, or only jobs without a
    group; see docs/guide/groups.md)."""

    size: int
    timeout: float
    group: BatchGroupMode = "any"


def parse_batch(value: Any) -> BatchOptions | None:
    """``{"size": n, "timeout": seconds, "group": "any" | "same"}`` -> BatchOptions.

    ``size`` (required): an integer from 1 to 1000; ``timeout``: seconds in (0, 3600],
    default 1.0; ``group``: "any" (default) or "same". TypeError for a value that is not
    such a mapping or has other keys, ValueError for a bad size, timeout or group."""
    if value is None:
        return None
    if isinstance(value, BatchOptions):
        return value
    if not isinstance(value, Mapping):
        raise TypeError(f"batch must be {{'size': n, 'timeout': seconds}}, got {value!r}")
    extra = set(value) - {"size", "timeout", "group"}
    if extra:
        raise TypeError(f"batch takes the keys 'size' (required), 'timeout' and 'group', got "
                        f"{sorted(value)}")
    if "size" not in value:
        # e.g. batch={"group": "same"}: a group option makes sense only for a batch processor.
        raise TypeError(f"batch options need a 'size' (the processor is a batch processor only "
                        f"with one), got {dict(value)!r}")
    size, timeout = value["size"], value.get("timeout", 1.0)
    group = value.get("group", "any")
    if isinstance(size, bool) or not isinstance(size, int) or not 1 <= size <= MAX_BATCH_SIZE:
        raise ValueError(f"batch size must be an integer from 1 to {MAX_BATCH_SIZE}, got {size!r}")
    if (isinstance(timeout, bool) or not isinstance(timeout, int | float)
            or not math.isfinite(timeout) or not 0 < timeout <= 3600):
        raise ValueError(f"batch timeout must be seconds in (0, 3600], got {timeout!r}")
    if group not in GROUP_MODES:
        raise ValueError(f"batch group must be 'any' (jobs of any groups share a batch) or "
                         f"'same' (one group per batch), got {group!r}")
    return BatchOptions(size, float(timeout), group)


class JobFailedInBatch(MiniqueError):
    """The reason a batch processor gave to ``Batch.fail`` for one job, as a string."""


class Batch:
    """The jobs of one call of a batch processor, in the order they were taken.

    Every job the processor does not ``fail`` completes, with the value given to
    ``complete`` (None otherwise), once the processor returns."""

    __slots__ = ("_at", "_gone", "_ids", "failed", "jobs", "values")

    def __init__(self, jobs: list[Job]) -> None:
        # A list of the batch's own: a processor that consumes it (``batch.jobs.pop()``)
        # must not take jobs out of the worker's hands (they would get no outcome at all).
        self.jobs = list(jobs)
        self._ids = frozenset(j.id for j in jobs)
        # job id -> the error fail() was given (a str becomes a JobFailedInBatch)
        self.failed: dict[str, BaseException] = {}
        self.values: dict[str, Any] = {}  # job id -> the return value complete() was given
        # Ids of the jobs cancelled (or whose lease was lost) during the call: the worker
        # adds them as it learns of it (see cancelled()).
        self._gone: set[str] = set()
        # job id -> when (time.monotonic()) complete() or fail() last spoke of it: a job
        # given its outcome within its own timeout keeps it, as it would have alone.
        self._at: dict[str, float] = {}

    def _check(self, job: Job) -> None:
        if not isinstance(job, Job) or job.id not in self._ids:
            raise ValueError(f"{job!r} is not a job of this batch")

    def complete(self, job: Job, value: Any = None) -> None:
        """Completes this job with ``value`` as its return value (msgpack-encodable, like a
        processor's return value; one that is not fails the job). Undoes a ``fail``."""
        self._check(job)
        self.failed.pop(job.id, None)
        self.values[job.id] = value
        self._at[job.id] = time.monotonic()

    def fail(self, job: Job, error: str | BaseException) -> None:
        """Fails this one job; the others complete. It retries (with its backoff) while
        attempts remain, unless ``error`` is an ``UnrecoverableError``: then it fails at
        once, as when a processor raises one. ``Delayed``, ``RateLimited`` or
        ``GroupRateLimited`` put this one job back as if it had raised it alone, with no
        attempt used. Undoes a ``complete``. TypeError if ``error`` is neither a string nor
        an exception."""
        if not isinstance(error, str | BaseException):
            # Checked here, at the call: later it would break the worker's report of the job.
            raise TypeError(f"batch.fail needs a str or an exception, got {error!r}")
        self._check(job)
        self.values.pop(job.id, None)
        self.failed[job.id] = JobFailedInBatch(error) if isinstance(error, str) else error
        self._at[job.id] = time.monotonic()

    def cancelled(self, job: Job) -> bool:
        """True once ``job`` was cancelled (``Queue.cancel``), or its lease was lost (another
        worker may be running it now), during this call. The call is not interrupted for one
        job, but such a job fails as cancelled when the call returns whatever the processor
        says of it: check before doing its work (a webhook not to send, a row not to write)."""
        self._check(job)
        return job.id in self._gone

    def __iter__(self) -> Iterator[Job]:
        return iter(self.jobs)

    def __len__(self) -> int:
        return len(self.jobs)

    def __repr__(self) -> str:
        return f"<Batch of {len(self.jobs)} jobs, {len(self.failed)} failed>"
