"""Fetching jobs by hand: BullMQ's ``worker.getNextJob()`` with ``job.moveToCompleted()``.

For code that runs its own loop (a job handed to another system, a batch assembled from
several queues, a test that steps through a job's life) rather than a processor that a
``Worker`` calls::

    async with ManualWorker("reports", url=...) as worker:
        job = await worker.get_next_job(block=5.0)
        if job is not None:
            try:
                value = await build(job.data)
            except Exception as exc:
                await worker.fail(job, exc)      # retried per its attempts and backoff
            else:
                await worker.complete(job, value)

A job it returns is active under a lease of ``lock_duration`` seconds, fenced by its
``job.token``, exactly as a ``Worker``'s: ``extend_lock`` renews the lease, and a job
whose lease runs out is taken back by the stall check and runs again elsewhere (so is one
whose ``ManualWorker`` dies). Every queue control applies to it as to a ``Worker``'s: a
paused queue, a rate limit (the queue's, or ``limiter``), a global or group concurrency,
priorities; the jobs come one at a time, and nothing is held ahead.

Each method is one script call; the calls of one ``ManualWorker`` go one at a time (a lock),
and each carries a call id, so a call that redis-py sends again after a timeout changes
nothing twice (lua/finish.lua): a re-sent ``get_next_job`` returns the same job rather
than taking a second one.
"""

from __future__ import annotations

import asyncio
import contextlib
import math
import os
import socket
import uuid
from collections.abc import Mapping
from typing import Any

from . import codec, scripts
from .backoff import BackoffStrategy
from .errors import JobNotFound, LockLost
from .job import Job
from .keys import DEFAULT_PREFIX
from .queue import Queue
from .worker import (
    HEADER,
    JOB_FIELDS,
    Worker,
    _age_ms,
    _ms_up,
    encode_results,
    failure_outcome,
    fetched_job,
)

STALL_CHECK_BATCH = 1000


class ManualWorker:
    """Takes jobs one at a time for code that processes them itself, and records their
    outcomes. Use ``async with`` or call ``close()``.

    ``lock_duration`` (s): the lease each job is taken under (``extend_lock`` renews it).
    ``limiter``: ``{"max": n, "duration": s}``, as for ``Worker``. ``stalled_interval``
    (s): how often ``get_next_job`` also takes back jobs whose lease ran out (0: never; a
    ``Worker`` of the queue does it too). ``backoff_strategies``: custom backoff functions
    by name, as for ``Worker``.
    Raises ValueError for a lock_duration or stalled_interval that is not positive.
    """

    def __init__(
        self,
        queue_name: str,
        *,
        url: str | None = None,
        connection: Any = None,
        prefix: str = DEFAULT_PREFIX,
        lock_duration: float = 30.0,
        limiter: Mapping[str, float] | None = None,
        stalled_interval: float = 30.0,
        max_stalled_count: int = 1,
        name: str | None = None,
        backoff_strategies: Mapping[str, BackoffStrategy] | None = None,
    ) -> None:
        if not lock_duration > 0:
            raise ValueError(f"lock_duration must be > 0, got {lock_duration!r}")
        if not stalled_interval >= 0:
            raise ValueError(f"stalled_interval must be >= 0, got {stalled_interval!r}")
        self.queue = Queue(queue_name, url=url, connection=connection, prefix=prefix)
        self.redis = self.queue.redis
        self.keys = self.queue.keys
        self.lock_ms = max(1, _ms_up(lock_duration))
        self.lim_max, self.lim_window_ms = Worker._limiter(limiter)
        self.stalled_interval = stalled_interval
        self.max_stalled_count = max_stalled_count
        self.backoff_strategies = dict(backoff_strategies or {})
        self.name = name or f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:6]}"
        # The identity its jobs, leases and call record carry in Redis (as a Worker's).
        self.ident = f"manual:{self.name}#{uuid.uuid4().hex[:8]}"
        self._call_seq = 0
        # One call at a time: finish.lua keeps each worker's last call only, so a re-send
        # of an earlier one would no longer be recognised.
        self._lock = asyncio.Lock()
        self._next_stall_check = 0.0
        # A call that got no answer (cancelled, timed out): sent again first, so that a job
        # it took is not left to its lease (see _call).
        self._unanswered: list[Any] | None = None
        self._closed = False

    async def __aenter__(self) -> ManualWorker:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    # ----- taking jobs -------------------------------------------------------------------

    async def get_next_job(self, block: float = 0.0) -> Job | None:
        """The next job, now active under this worker's lease, or None when none is
        ready (the queue empty, paused or rate limited, a concurrency limit reached)
        within ``block`` seconds. A job whose stored options are corrupt, or that starts
        past its ``expires``, is failed and skipped, as a ``Worker`` does.
        Raises RuntimeError once closed."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + max(0.0, block)
        while True:
            if self.stalled_interval and loop.time() >= self._next_stall_check:
                self._next_stall_check = loop.time() + self.stalled_interval
                await self.check_stalled()
            job, header = await self._call([], want=1)
            if job is not None:
                return job
            remaining = deadline - loop.time()
            if remaining <= 0:
                return None
            status, info, next_due, wake_id, now_ms = header[:5]
            wait = remaining
            if int(status) == 2:  # rate limited for `info` ms
                wait = min(wait, int(info) / 1000.0)
            elif int(status) == 0 and int(next_due) >= 0:
                wait = min(wait, max(0.0, (int(next_due) - int(now_ms)) / 1000.0))
            await self._wait_for_work(wake_id, int(status) == 1, wait)

    async def _wait_for_work(self, wake_id: bytes, paused: bool, timeout: float) -> None:
        """Blocks until a job may be ready (a stream entry, a wake-up) or ``timeout``."""
        if timeout <= 0:
            return
        names = [self.keys.wake] if paused else [self.keys.ready, self.keys.wake]
        ids = [wake_id.decode()] if paused else ["0-0", wake_id.decode()]
        block_ms = max(1, math.ceil(timeout * 1000))
        pool = getattr(self.redis, "connection_pool", None)
        if pool is None:  # Redis Cluster: the queue's node, through the client
            await self.redis.xread(dict(zip(names, ids, strict=True)), count=1, block=block_ms)
            return
        # A connection of its own with a deadline of its own: the client's socket timeout
        # may be shorter than the block.
        conn = await pool.get_connection()
        try:
            await conn.send_command("XREAD", "COUNT", 1, "BLOCK", block_ms, "STREAMS", *names,
                                    *ids)
            await conn.read_response(timeout=timeout + 5.0)
        except BaseException:
            await conn.disconnect(nowait=True)  # an unread reply must not reach another call
            raise
        finally:
            await pool.release(conn)

    # ----- outcomes ----------------------------------------------------------------------

    async def complete(self, job: Job, value: Any = None, *, fetch_next: bool = False) -> Job | None:
        """Records ``value`` (any msgspec-encodable value) as the job's return value: the
        job completes, under its retention, and a flow parent waiting for it goes on.
        With ``fetch_next``, takes the next job in the same call and returns it (or None).
        Raises LockLost when the job is no longer this worker's (its lease ran out and the
        stall check took it back), JobNotFound when it was removed meanwhile (its result
        is then dropped), PayloadError for a value that cannot be encoded."""
        raw = codec.encode(value, "return value")
        return await self._finish(job, "c", raw, "", 0, fetch_next)

    async def fail(self, job: Job, error: BaseException | str, *, final: bool = False,
                   fetch_next: bool = False) -> Job | None:
        """Records a failed attempt: the job is retried after its backoff while it has
        attempts left, else it fails for good; with ``final``, or for an
        ``UnrecoverableError``, it fails for good now. ``error`` may be the exception (its
        type, message and stack trace are kept) or a reason string, kept as it is (a job
        whose ``cancel()`` was asked fails with the reason "cancelled", final). Returns and
        raises as ``complete``."""
        if isinstance(error, str):
            reason, stack, delay = error, "", None
            if not final:
                _, _, delay = failure_outcome(job, _Reason(error), self.backoff_strategies)
        else:
            reason, stack, delay = failure_outcome(job, error, self.backoff_strategies)
        if final or delay is None:
            return await self._finish(job, "f", reason, stack, 0, fetch_next)
        return await self._finish(job, "r", reason, stack, max(1, _ms_up(delay)), fetch_next)

    async def delay(self, job: Job, seconds: float) -> None:
        """Puts the job back as delayed for ``seconds`` without using an attempt (a
        processor's ``raise Delayed(seconds)``; BullMQ's ``moveToDelayed``). 0 puts it at
        the head of the line. Raises ValueError for a negative delay, and as ``complete``."""
        if not seconds >= 0:
            raise ValueError(f"delay must be >= 0 seconds, got {seconds!r}")
        delay_ms = 0 if seconds == 0 else max(1, _ms_up(seconds))
        await self._finish(job, "d", "delayed", "", delay_ms, False)

    async def move_to_waiting_children(self, job: Job) -> None:
        """Parks the job until the children it added while active are done (a processor's
        ``raise WaitingChildren()``, docs/guide/flows.md); with none pending it goes back to
        the head of the line. Raises as ``complete``."""
        await self._finish(job, "k", "waiting for children", "", 0, False)

    async def extend_lock(self, job: Job, duration: float | None = None) -> bool:
        """Renews the job's lease for ``duration`` seconds (default: ``lock_duration``).
        False when the job is no longer this worker's (its lease ran out and the stall
        check took it back; finished; removed): stop working on it."""
        lock_ms = self.lock_ms if duration is None else max(1, _ms_up(duration))
        lost, _cancel = await scripts.run(self.redis, "extend", (self.keys.meta,),
                                          [self.keys.job_prefix, lock_ms, job.id,
                                           job.token or ""])
        return not lost

    async def is_cancel_requested(self, job: Job) -> bool:
        """Whether ``queue.cancel(job.id)`` was asked for the job while it was active: stop
        and ``fail(job, "cancelled", final=True)``, which is what ``cancel()`` waits for."""
        return bool(await self.redis.hexists(self.keys.job(job.id), "cx"))

    async def check_stalled(self) -> int:
        """Takes back jobs whose lease ran out, this worker's own included (a Worker leaves
        its own alone, as it renews them itself; here a lease that ran out was not
        extended); returns how many."""
        keep = self.queue._default_resolved.stored.keep_failed
        total = 0
        while True:
            n, _next, _now, _examined = await scripts.run(
                self.redis, "stalled", self.keys.vector,
                [self.keys.job_prefix, self.max_stalled_count, STALL_CHECK_BATCH, keep.count,
                 _age_ms(keep), ""])
            total += int(n)
            if int(n) < STALL_CHECK_BATCH:
                return total

    async def close(self) -> None:
        """Forgets this worker's call record and closes its connection (if it made it).
        Jobs it still has stay active until their lease runs out, then run again."""
        if self._closed:
            return
        self._closed = True
        try:
            async with self._lock:
                with contextlib.suppress(Exception):
                    # A call left unanswered may have taken a job: it goes back now.
                    extra = await self._answer_unanswered(False)
                    if isinstance(extra, list) and extra:
                        await self._hand_back(extra[0])
                await self.redis.hdel(f"{self.keys.base}:calls", self.ident)
        finally:
            await self.queue.close()

    # ----- the call ----------------------------------------------------------------------

    async def _finish(self, job: Job, kind: str, value: Any, stack: str, delay_ms: int,
                      fetch_next: bool) -> Job | None:
        if job.queue.keys.base != self.keys.base:
            raise ValueError(f"job {job.id} is of queue {job.queue.name!r}, not "
                             f"{self.queue.name!r}")
        if not job.token:
            raise LockLost(f"job {job.id} has no token: it was not taken by a worker")
        keep = job.opts.keep_completed if kind == "c" else job.opts.keep_failed
        result = (job.id, job.token, kind, value, stack, delay_ms, keep.count, _age_ms(keep), "")
        next_job, _header = await self._call([result], want=1 if fetch_next else 0,
                                             finished=job)
        if kind in ("c", "f"):
            job.state = "completed" if kind == "c" else "failed"
        return next_job

    async def _call(self, results: list[tuple[Any, ...]], want: int,
                    finished: Job | None = None) -> tuple[Job | None, list[Any]]:
        """One finish.lua call: ``results`` recorded, ``want`` jobs (0 or 1) taken. A job
        that must fail without running (corrupt options, expired) is failed in a call of
        its own, and the take goes on. ``finished``: the job whose result is
        ``results[0]``, whose status raises LockLost or JobNotFound."""
        if self._closed:
            raise RuntimeError("this ManualWorker is closed")
        async with self._lock:
            extra = await self._answer_unanswered(bool(want) and not results)
            if isinstance(extra, Job):
                return extra, []
            results = [*results, *extra]
            while True:
                args = self._call_args(results, want)
                self._unanswered = args
                reply = await scripts.run(self.redis, "finish", (self.keys.meta,), args)
                self._unanswered = None
                n = len(results)
                header = reply[n:n + HEADER]
                body = reply[n + HEADER:n + HEADER + JOB_FIELDS]
                job = None
                if body:
                    job, bad_opts = fetched_job(self.queue, body)
                    reason = self._unrunnable(job, bad_opts, int(header[4]))
                    if reason:
                        # Failed for good without running, as a Worker does; then the next.
                        results, job = [_result(job, "f", reason)], None
                if finished is not None and n:
                    status, done = int(reply[0]), finished
                    finished = None
                    if status != 1:
                        if job is not None:  # taken for nothing: handed back unstarted
                            await self._hand_back(job)
                        if status == 0:
                            raise LockLost(f"job {done.id}: its lease ran out and it is no "
                                           "longer this worker's; the result was discarded")
                        raise JobNotFound(f"job {done.id} was removed while active; its "
                                          "result was dropped")
                if job is not None or not body:
                    return job, header

    def _call_args(self, results: list[tuple[Any, ...]], want: int) -> list[Any]:
        """finish.lua's arguments: a fresh call id, nothing held (hold 0)."""
        self._call_seq += 1
        return [self.keys.job_prefix, want, self.lock_ms, self.ident, self.lim_max,
                self.lim_window_ms, 1000, 0, 0, self._call_seq, len(results),
                *encode_results(results)]

    async def _answer_unanswered(self, may_take: bool) -> list[tuple[Any, ...]] | Job:
        """Sends again the last call that got no answer: the same call id, so Redis answers
        as it did the first time (lua/finish.lua) and nothing is applied twice. A job it
        took is returned when ``may_take`` (a get_next_job), else handed back with the
        call's results (the list returned)."""
        args = self._unanswered
        if args is None:
            return []
        reply = await scripts.run(self.redis, "finish", (self.keys.meta,), args)
        self._unanswered = None
        n = int(args[10])
        body = reply[n + HEADER:n + HEADER + JOB_FIELDS]
        if not body:
            return []
        job, bad_opts = fetched_job(self.queue, body)
        reason = self._unrunnable(job, bad_opts, int(reply[n + 4]))
        if may_take and not reason:
            return job
        return [_result(job, "f", reason) if reason else _result(job, "h", "")]

    async def _hand_back(self, job_or_result: Job | tuple[Any, ...]) -> None:
        """Returns a job taken but never given out to its place in the line (no attempt
        used), or sends a result for one (see _answer_unanswered)."""
        result = (_result(job_or_result, "h", "") if isinstance(job_or_result, Job)
                  else job_or_result)
        args = self._call_args([result], 0)
        self._unanswered = args
        await scripts.run(self.redis, "finish", (self.keys.meta,), args)
        self._unanswered = None

    @staticmethod
    def _unrunnable(job: Job, bad_opts: bool, now_ms: int) -> str:
        """Why a fetched job must fail without running ('' when it may run)."""
        if bad_opts:
            return f"job {job.id}: stored options cannot be decoded"
        expires = job.opts.expires
        if (expires is not None and job.attempts_started - 1 <= job.attempts_made
                and now_ms > job.timestamp * 1000.0 + expires * 1000.0):
            return f"expired: not started within {expires:g}s of being added"
        return ""


def _result(job: Job, kind: str, value: str) -> tuple[Any, ...]:
    """A finish.lua result for a job taken but not run: failed for good, or handed back."""
    keep = job.opts.keep_failed
    return (job.id, job.token, kind, value, "", 0, keep.count, _age_ms(keep), "")


class _Reason(Exception):
    """A failure given as a string (``fail(job, "reason")``), for a backoff function."""


__all__ = ["ManualWorker"]
