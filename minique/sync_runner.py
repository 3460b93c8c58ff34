"""Runs sync (plain ``def``) processors in threads, and never walks away from one.

A Python thread cannot be stopped from outside. So when a timeout, a cancel or a shutdown
meets a job whose code runs in a thread, the coroutine awaiting it keeps waiting until the
thread has really returned, and only then reports the attempt's outcome. Until then the job
keeps its slot (the runner task is still inside it, so it counts against ``concurrency``)
and its lease (it stays in the worker's running set, which lease renewal covers), so no
second attempt of it can start, here or on another worker, while the first one's code
runs. ``Worker(processes=N)`` (minique/pool.py) stops such code at once instead.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from typing import Any

from .job import Job

log = logging.getLogger("minique.worker")


class ThreadRunner:
    """A pool of ``threads`` threads for sync processors (created on first use).

    ``busy`` holds the ids of the jobs whose processor runs in a thread right now,
    including ones past their timeout or asked to cancel.
    """

    def __init__(self, threads: int) -> None:
        self._threads = threads
        self._pool: ThreadPoolExecutor | None = None
        self.busy: set[str] = set()

    async def run(self, fn: Callable[[Job], Any], job: Job, timeout: float | None) -> Any:
        """Returns ``fn(job)``'s value or raises its exception, run in a thread.

        ``timeout`` (seconds, or None for none) counts from the moment the thread starts
        the call, never the wait for a free thread. Past it, raises ``TimeoutError("job
        timed out after {timeout}s")``; when the awaiting task is cancelled, raises
        ``asyncio.CancelledError``; either only once the thread has returned (a call that
        has not started yet is withdrawn at once instead).
        """
        loop = asyncio.get_running_loop()
        began: asyncio.Future[float] = loop.create_future()

        def call() -> Any:
            loop.call_soon_threadsafe(_settle, began, time.monotonic())
            return fn(job)

        if self._pool is None:
            self._pool = ThreadPoolExecutor(self._threads, "minique-job")
        work: Future[Any] = self._pool.submit(call)
        done = asyncio.wrap_future(work, loop=loop)
        cancelled = timed_out = False
        self.busy.add(job.id)
        try:
            while not done.done():
                remaining: float | None = None
                if timeout is not None and began.done() and not timed_out:
                    remaining = began.result() + timeout - time.monotonic()
                    if remaining <= 0:
                        timed_out, remaining = True, None
                        log.warning("queue %s job %s: timed out after %ss, but a thread cannot "
                                    "be stopped: the job keeps its slot and lease until its "
                                    "processor returns", job.queue.name, job.id, timeout)
                waiting: set[asyncio.Future[Any]] = {done} if began.done() else {done, began}
                try:
                    await asyncio.wait(waiting, timeout=remaining,
                                       return_when=asyncio.FIRST_COMPLETED)
                except asyncio.CancelledError:
                    if work.cancel():  # not started yet: nothing runs, nothing to wait for
                        raise
                    cancelled = True
        finally:
            self.busy.discard(job.id)
        if (cancelled or timed_out) and not done.cancelled():
            done.exception()  # the call's own outcome no longer counts: mark it seen
        if cancelled:
            raise asyncio.CancelledError
        if timed_out:
            raise TimeoutError(f"job timed out after {timeout}s")
        return done.result()

    def shutdown(self) -> None:
        """Drops calls not started yet; threads still running finish on their own."""
        if self._pool is not None:
            self._pool.shutdown(wait=False, cancel_futures=True)


def _settle(future: asyncio.Future[float], value: float) -> None:
    if not future.done():
        future.set_result(value)
