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
        # Only a timeout needs to know when the call began: one wake-up less per job without.
        began: asyncio.Future[float] | None = None if timeout is None else loop.create_future()

        def call() -> Any:
            if began is not None:
                loop.call_soon_threadsafe(_settle, began, time.monotonic())
            return fn(job)

        if self._pool is None:
            self._pool = ThreadPoolExecutor(self._threads, "minique-job")
        work: Future[Any] = self._pool.submit(call)
        self.busy.add(job.id)
        try:
            deadline: asyncio.Timeout | None = None
            try:
                if began is None or timeout is None:
                    return await asyncio.wrap_future(work)
                await began  # the wait for a free thread is not the job's time
                async with asyncio.timeout(began.result() + timeout - time.monotonic()) as deadline:
                    return await asyncio.wrap_future(work)
            except asyncio.CancelledError:
                # Cancelling the awaited future withdrew the call if it had not started.
                if work.cancelled() or work.cancel():
                    raise
                outcome: BaseException = asyncio.CancelledError()
            except TimeoutError:
                if deadline is None or not deadline.expired():
                    raise  # the processor's own
                log.warning("queue %s job %s: timed out after %ss, but a thread cannot be "
                            "stopped: the job keeps its slot and lease until its processor "
                            "returns", job.queue.name, job.id, timeout)
                outcome = TimeoutError(f"job timed out after {timeout}s")
            # The code still runs: wait it out, whatever else is cancelled meanwhile.
            rest = asyncio.wrap_future(work)
            while not rest.done():
                try:
                    await asyncio.wait([rest])
                except asyncio.CancelledError:
                    outcome = asyncio.CancelledError()  # a cancel outranks the timeout
            if not rest.cancelled():
                rest.exception()  # its own outcome no longer counts: mark it seen
            raise outcome
        finally:
            self.busy.discard(job.id)

    def shutdown(self) -> None:
        """Drops calls not started yet; threads still running finish on their own."""
        if self._pool is not None:
            self._pool.shutdown(wait=False, cancel_futures=True)


def _settle(future: asyncio.Future[float], value: float) -> None:
    if not future.done():
        future.set_result(value)
