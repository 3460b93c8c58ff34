"""A blocking facade over Queue and Job for code that is not async (Django, Flask, scripts).

Each SyncQueue runs its own event loop in a daemon thread and hands calls to it, so it is
safe to use from any thread of a sync program. It offers every ``Queue`` method that does
not stream, without ``await``; jobs come back as ``SyncJob`` handles whose methods block too.
``QueueEvents`` (a stream) has no sync form.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import os
import threading
from collections.abc import Coroutine, Iterable, Mapping, Sequence
from typing import TYPE_CHECKING, Any, TypeVar

from .connection import COMMAND_TIMEOUT
from .errors import AddOutcomeUnknown, JobCorrupted
from .job import Job
from .queue import BulkItem, Queue

if TYPE_CHECKING:
    from .attempts import Attempt
    from .groups import GroupCounts, GroupDefaults, GroupInfo
    from .scheduler import JobScheduler

T = TypeVar("T")

# Held while a facade made before a fork starts again in the child (SyncQueue._queue); made
# anew in each child, since a lock held by another thread at the fork stays held there.
_fork_lock = threading.Lock()


def _new_fork_lock() -> None:
    global _fork_lock
    _fork_lock = threading.Lock()


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_new_fork_lock)


class SyncJob:
    """A job, as ``SyncQueue`` returns it: the fields of ``Job`` as they were read, and its
    actions as blocking calls (``get_state``, ``wait_until_finished``, ``retry``...).

    Fields (``id``, ``name``, ``data``, ``state``, ``progress``, ``attempts_made``,
    ``return_value``, ``failed_reason``, ``stacktrace``, ``timestamp``, ``processed_on``,
    ``finished_on``, ...) are those of the snapshot; ``refresh()`` reads them again.
    """

    def __init__(self, owner: SyncQueue, job: Job) -> None:
        self._owner = owner
        self.job = job  # the async snapshot underneath

    def __repr__(self) -> str:
        return f"<SyncJob {self.job.id} {self.job.name!r} state={self.job.state}>"

    def __getattr__(self, name: str) -> Any:
        # Only plain fields pass through: an async method of Job would hand out a coroutine.
        value = getattr(self.job, name)
        if asyncio.iscoroutinefunction(value):
            raise AttributeError(f"SyncJob has no {name!r}; use the blocking method of SyncJob")
        return value

    @property
    def id(self) -> str:
        return self.job.id

    @property
    def name(self) -> str:
        return self.job.name

    @property
    def data(self) -> Any:
        return self.job.data

    @property
    def progress(self) -> Any:
        return self.job.progress

    @property
    def return_value(self) -> Any:
        return self.job.return_value

    def get_state(self) -> str:
        """"waiting", "paused", "delayed", "active", "completed", "failed", or "unknown"."""
        return self._owner._call(self.job.get_state())

    def update_progress(self, value: int | float | dict[str, Any]) -> None:
        self._owner._call(self.job.update_progress(value))

    def update_data(self, data: Any) -> None:
        """Replaces the job's data (Queue.update_job_data)."""
        self._owner._call(self.job.update_data(data))

    def change_priority(self, priority: int, *, lifo: bool = False) -> None:
        self._owner._call(self.job.change_priority(priority, lifo=lifo))

    def change_delay(self, delay: float) -> None:
        self._owner._call(self.job.change_delay(delay))

    def log(self, line: str) -> int:
        """Appends a line to the job's log; returns the number of lines kept."""
        return self._owner._call(self.job.log(line))

    def get_children_values(self) -> dict[str, Any]:
        """``{child job key: return value}`` of a flow parent's completed children."""
        return self._owner._call(self.job.get_children_values())

    def get_dependencies(self) -> dict[str, Any]:
        return self._owner._call(self.job.get_dependencies())

    def get_dependencies_count(self) -> dict[str, int]:
        return self._owner._call(self.job.get_dependencies_count())

    def get_children_failures(self) -> dict[str, str]:
        """``{child job key: reason}`` of children that failed under "ignore"."""
        return self._owner._call(self.job.get_children_failures())

    def retry(self) -> None:
        """Sends a finished job back to waiting with fresh attempts (InvalidJobState if not)."""
        self._owner._call(self.job.retry())

    def promote(self) -> None:
        """Runs a delayed job now (InvalidJobState if it is not delayed)."""
        self._owner._call(self.job.promote())

    def remove(self) -> bool:
        """Removes the job and its keys; False if it was gone (InvalidJobState if active)."""
        return self._owner._call(self.job.remove())

    def cancel(self) -> bool:
        """Asks the worker running the job to cancel it; False if the job is not active."""
        return self._owner._call(self.job.queue.cancel(self.job.id))

    def abort(self, timeout: float | None = None) -> bool:
        """Queue.abort: removed if it has not started, cancelled if it runs."""
        return self._owner._wait(self.job.abort(timeout),
                                 None if timeout is None else timeout + self._owner._timeout)

    def get_attempts(self) -> list[Attempt]:
        return self._owner._call(self.job.queue.get_job_attempts(self.job.id))

    def get_logs(self, start: int = 0, end: int = -1) -> list[str]:
        return self._owner._call(self.job.queue.get_job_logs(self.job.id, start, end))

    def clear_logs(self, keep: int = 0) -> None:
        self._owner._call(self.job.clear_logs(keep))

    def refresh(self) -> SyncJob:
        """The job as stored now (JobNotFound if it was removed)."""
        return SyncJob(self._owner, self._owner._call(self.job.refresh()))

    def wait_until_finished(self, timeout: float | None = None) -> Any:
        """Blocks until the job finishes: its return value, or JobFailed with the reason;
        TimeoutError after ``timeout`` seconds (None: wait as long as it takes)."""
        return self._owner._wait(self.job.wait_until_finished(timeout),
                                 None if timeout is None else timeout + self._owner._timeout)


class SyncQueue:
    """``SyncQueue("reports", url=...)`` offers the Queue methods without ``await``.

    ``timeout`` (seconds) bounds each call; keyword arguments go to ``Queue``.

    Made before a fork (gunicorn ``--preload``, uWSGI without lazy-apps, a fork pool), it
    starts again in the child at its first call there: a loop thread and connections of
    its own (the parent's are left alone). SyncJobs made before the fork belong to the
    parent. With ``connection=`` (a client of the caller's, which the facade cannot
    remake) a call in the child raises RuntimeError: make the SyncQueue after the fork.
    """

    def __init__(self, name: str, *, url: str | None = None, timeout: float = 30.0,
                 **queue_kwargs: Any) -> None:
        self._timeout = timeout
        self._args = (name, url, queue_kwargs)
        self._start()

    def _start(self) -> None:
        name, url, queue_kwargs = self._args
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._loop.run_forever, name=f"minique-sync-{name}",
                                        daemon=True)
        self._thread.start()
        # Calls handed to the loop and not answered yet; close() waits for them. Its lock
        # makes "not closed" and "handed over" one step, so no call slips past a close().
        self._in_flight: set[concurrent.futures.Future[Any]] = set()
        self._closed = False
        self._lock = threading.Lock()
        self._q: Queue = self._call(self._make(name, url, queue_kwargs))
        # Last: a thread of a forked child that sees its own pid here finds everything new
        # (the others wait on _fork_lock meanwhile, see _after_fork).
        self._pid = os.getpid()

    @property
    def _queue(self) -> Queue:
        if self._pid != os.getpid():
            self._after_fork()
        return self._q

    def _after_fork(self) -> None:
        with _fork_lock:
            if self._pid == os.getpid():
                return  # another thread of the child did it
            if self._closed or getattr(self, "_closed_in", None) == os.getpid():
                raise RuntimeError("this SyncQueue is closed")
            if "connection" in self._args[2]:
                raise RuntimeError(
                    "this SyncQueue was made before a fork with a connection= of the "
                    "caller's, which it cannot remake here: make the SyncQueue after the fork")
            # The parent's loop thread is not in this process; its objects are dropped, never
            # closed (closing would shut sockets the parent still uses).
            self._start()

    @staticmethod
    async def _make(name: str, url: str | None, kwargs: Mapping[str, Any]) -> Queue:
        return Queue(name, url=url, **kwargs)

    def _call(self, coro: Coroutine[Any, Any, T]) -> T:
        return self._wait(coro, self._timeout)

    def _wait(self, coro: Coroutine[Any, Any, T], timeout: float | None) -> T:
        with self._lock:
            if self._closed:
                coro.close()
                raise RuntimeError("this SyncQueue is closed")
            future = asyncio.run_coroutine_threadsafe(coro, self._loop)
            self._in_flight.add(future)
        try:
            return future.result(timeout)
        finally:
            self._in_flight.discard(future)

    def _job(self, job: Job) -> SyncJob:
        return SyncJob(self, job)

    @property
    def name(self) -> str:
        return self._queue.name

    @property
    def queue(self) -> Queue:
        """The async Queue underneath (its methods must run on this facade's loop)."""
        return self._queue

    # ----- adding and reading jobs -----------------------------------------------------------

    def add(self, name: str, data: Any = None, **options: Any) -> SyncJob:
        """As ``Queue.add``. Not cut short by the facade's ``timeout``: an add given up on
        may still add its job, and one tried again would add it twice. It waits for its
        outcome, which the connection's own timeout bounds (``AddOutcomeUnknown`` with the
        job ids when Redis does not answer)."""
        return self._job(self._wait(self._queue.add(name, data, **options), None))

    def add_bulk(self, jobs: Iterable[BulkItem]) -> list[SyncJob]:
        """As ``Queue.add_bulk``; waits for its outcome, as ``add`` does."""
        return [self._job(j) for j in self._wait(self._queue.add_bulk(list(jobs)), None)]

    def settle(self, error: AddOutcomeUnknown) -> dict[str, str | None]:
        """As ``Queue.settle``: per id of an ``AddOutcomeUnknown`` this facade raised, the
        job the add made or found, or None when it was not added and never will be."""
        return self._call(self._queue.settle(error))

    def get_job(self, job_id: str) -> SyncJob | None:
        job = self._call(self._queue.get_job(job_id))
        return None if job is None else self._job(job)

    def get_state(self, job_id: str) -> str:
        return self._call(self._queue.get_state(job_id))

    def get_stats(self) -> dict[str, int]:
        return self._call(self._queue.get_stats())

    def get_job_counts(self, *states: str) -> dict[str, int]:
        return self._call(self._queue.get_job_counts(*states))

    def get_counts_per_priority(self, priorities: Sequence[int]) -> dict[int, int]:
        return self._call(self._queue.get_counts_per_priority(priorities))

    def get_job_ids(self, state: str, start: int = 0, end: int = 49) -> list[str]:
        return self._call(self._queue.get_job_ids(state, start, end))

    def get_jobs(self, state: str, start: int = 0, end: int = 49) -> list[SyncJob]:
        return [self._job(j) for j in self._call(self._queue.get_jobs(state, start, end))]

    def get_jobs_or_errors(self, state: str, start: int = 0,
                           end: int = 49) -> list[tuple[str, SyncJob | JobCorrupted]]:
        """As ``Queue.get_jobs_or_errors``: ``(job id, SyncJob or JobCorrupted)`` each."""
        return [(job_id, job if isinstance(job, JobCorrupted) else self._job(job))
                for job_id, job in self._call(self._queue.get_jobs_or_errors(state, start, end))]

    def get_job_logs(self, job_id: str, start: int = 0, end: int = -1) -> list[str]:
        return self._call(self._queue.get_job_logs(job_id, start, end))

    def get_job_attempts(self, job_id: str) -> list[Attempt]:
        return self._call(self._queue.get_job_attempts(job_id))

    def get_metrics(self, minutes: int = 60) -> dict[str, Any]:
        return self._call(self._queue.get_metrics(minutes))

    def get_workers(self) -> list[Any]:
        return self._call(self._queue.get_workers())

    def is_paused(self) -> bool:
        return self._call(self._queue.is_paused())

    def get_rate_limit_ttl(self) -> float:
        return self._call(self._queue.get_rate_limit_ttl())

    # ----- acting on one job -----------------------------------------------------------------

    def update_progress(self, job_id: str, value: int | float | dict[str, Any]) -> None:
        self._call(self._queue.update_progress(job_id, value))

    def add_log(self, job_id: str, line: str, keep: int = 1000) -> int:
        return self._call(self._queue.add_log(job_id, line, keep))

    def update_job_data(self, job_id: str, data: Any) -> None:
        self._call(self._queue.update_job_data(job_id, data))

    def change_priority(self, job_id: str, priority: int, *, lifo: bool = False) -> None:
        self._call(self._queue.change_priority(job_id, priority, lifo=lifo))

    def change_delay(self, job_id: str, delay: float) -> float:
        return self._call(self._queue.change_delay(job_id, delay))

    def retry_job(self, job_id: str, state: str | None = None) -> None:
        self._call(self._queue.retry_job(job_id, state))

    def promote_job(self, job_id: str) -> None:
        self._call(self._queue.promote_job(job_id))

    def remove_job(self, job_id: str) -> bool:
        return self._call(self._queue.remove_job(job_id))

    def cancel(self, job_id: str) -> bool:
        return self._call(self._queue.cancel(job_id))

    def abort(self, job_id: str, timeout: float | None = None) -> bool:
        return self._wait(self._queue.abort(job_id, timeout),
                          None if timeout is None else timeout + self._timeout)

    def clear_job_logs(self, job_id: str, keep: int = 0) -> None:
        self._call(self._queue.clear_job_logs(job_id, keep))

    def trim_events(self, max_length: int) -> None:
        self._call(self._queue.trim_events(max_length))

    def get_deduplication_job_id(self, dedup_id: str) -> str | None:
        return self._call(self._queue.get_deduplication_job_id(dedup_id))

    def remove_deduplication_key(self, dedup_id: str) -> bool:
        return self._call(self._queue.remove_deduplication_key(dedup_id))

    # ----- acting on the queue ---------------------------------------------------------------

    def pause(self) -> None:
        self._call(self._queue.pause())

    def resume(self) -> None:
        self._call(self._queue.resume())

    def drain(self, delayed: bool = False) -> int:
        return self._call(self._queue.drain(delayed))

    def clean(self, grace: float, state: str = "completed", limit: int = 1000) -> list[str]:
        return self._call(self._queue.clean(grace, state, limit))

    def retry_jobs(self, state: str = "failed", count: int | None = None) -> int:
        return self._call(self._queue.retry_jobs(state, count))

    def promote_jobs(self, count: int | None = None) -> int:
        return self._call(self._queue.promote_jobs(count))

    def obliterate(self, force: bool = False) -> None:
        self._call(self._queue.obliterate(force))

    def sweep(self, budget: int = 1000) -> int:
        return self._call(self._queue.sweep(budget))

    def rate_limit(self, delay: float) -> None:
        self._call(self._queue.rate_limit(delay))

    def set_global_concurrency(self, limit: int | None) -> None:
        self._call(self._queue.set_global_concurrency(limit))

    def get_global_concurrency(self) -> int | None:
        return self._call(self._queue.get_global_concurrency())

    def remove_global_concurrency(self) -> None:
        self._call(self._queue.remove_global_concurrency())

    def set_global_rate_limit(self, max: int, duration: float) -> None:
        self._call(self._queue.set_global_rate_limit(max, duration))

    def get_global_rate_limit(self) -> dict[str, float] | None:
        return self._call(self._queue.get_global_rate_limit())

    def remove_global_rate_limit(self) -> None:
        self._call(self._queue.remove_global_rate_limit())

    # ----- groups (minique/groups.py) --------------------------------------------------------

    def set_group_options(self, group: str, *, concurrency: int | None = None,
                          limiter: Mapping[str, Any] | None = None) -> None:
        self._call(self._queue.set_group_options(group, concurrency=concurrency, limiter=limiter))

    def set_group_defaults(self, *, concurrency: int | None = None,
                           limiter: Mapping[str, Any] | None = None) -> None:
        self._call(self._queue.set_group_defaults(concurrency=concurrency, limiter=limiter))

    def pause_group(self, group: str) -> None:
        self._call(self._queue.pause_group(group))

    def resume_group(self, group: str) -> None:
        self._call(self._queue.resume_group(group))

    def get_groups(self, start: int = 0, end: int = 99, *, by: str = "waiting") -> list[GroupInfo]:
        return self._call(self._queue.get_groups(start, end, by=by))

    def get_group(self, group: str) -> GroupInfo | None:
        return self._call(self._queue.get_group(group))

    def get_group_counts(self) -> GroupCounts:
        return self._call(self._queue.get_group_counts())

    def get_group_defaults(self) -> GroupDefaults:
        return self._call(self._queue.get_group_defaults())

    def get_group_job_ids(self, group: str, start: int = 0, end: int = 49) -> list[str]:
        return self._call(self._queue.get_group_job_ids(group, start, end))

    def get_group_jobs(self, group: str, start: int = 0, end: int = 49) -> list[SyncJob]:
        return [self._job(j) for j in self._call(self._queue.get_group_jobs(group, start, end))]

    # ----- job schedulers --------------------------------------------------------------------

    def upsert_job_scheduler(self, scheduler_id: str, **options: Any) -> JobScheduler:
        return self._call(self._queue.upsert_job_scheduler(scheduler_id, **options))

    def get_job_schedulers(self) -> list[JobScheduler]:
        return self._call(self._queue.get_job_schedulers())

    def get_job_scheduler(self, scheduler_id: str) -> JobScheduler | None:
        return self._call(self._queue.get_job_scheduler(scheduler_id))

    def remove_job_scheduler(self, scheduler_id: str) -> bool:
        return self._call(self._queue.remove_job_scheduler(scheduler_id))

    # ----- closing ---------------------------------------------------------------------------

    def close(self) -> None:
        """Closes the facade. Calls of other threads still on their way get their outcome
        first (an add, within the connection's own timeout); one left after that is
        cancelled (CancelledError in its thread). Later calls raise RuntimeError."""
        if self._pid != os.getpid():
            # The parent's: nothing of it runs here (nothing made here yet either); closed
            # in this process from now on.
            self._closed_in = os.getpid()
            return
        with self._lock:
            if self._loop.is_closed() or self._closed:
                return
            self._closed = True
            pending = set(self._in_flight)
        if pending:
            _, left = concurrent.futures.wait(pending, timeout=COMMAND_TIMEOUT + 1.0)
            for future in left:
                future.cancel()
        asyncio.run_coroutine_threadsafe(self._q.close(), self._loop).result(self._timeout)
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(5)
        self._loop.close()

    def __enter__(self) -> SyncQueue:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
