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
import logging
import math
import os
import socket
import time
import uuid
from collections.abc import Mapping
from typing import Any, NamedTuple

from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import TimeoutError as RedisTimeoutError

from . import codec, scripts
from .backoff import BackoffStrategy, check_strategies
from .connection import check_client
from .errors import JobNotFound, LockLost, wire_text
from .job import Job
from .keys import DEFAULT_PREFIX
from .options import MAX_SECONDS
from .queue import Queue
from .worker import (
    GAVE_WAY,
    GIVE_WAY_SLICE,
    GIVE_WAY_TELL,
    GIVE_WAY_TOLD,
    HEADER,
    HEADER_STARTED_MS,
    JOB_FIELDS,
    Worker,
    _age_ms,
    _ms_up,
    encode_results,
    failure_outcome,
    fetched_job,
    remove_heartbeat,
    split_finish_reply,
    write_heartbeat,
)
from .worker_info import WorkerInfo

log = logging.getLogger("minique.manual_worker")

STALL_CHECK_BATCH = 1000
WAIT_MAX = 60.0  # seconds one blocking read waits at most (a longer block loops)
WAIT_RETRY = 0.05  # seconds before asking again when the wait's connection dropped
UNREPORTED_MAX = 1000  # results recorded by calls whose caller had no answer, kept at most
# Errors after which Redis may or may not have run a call (see ManualWorker._send).
_UNKNOWN_OUTCOME = (RedisConnectionError, RedisTimeoutError, ConnectionError, TimeoutError,
                    OSError)
_KINDS = {"c": "completed", "f": "failed", "r": "retried", "d": "delayed",
          "k": "waiting for children"}


class ManualWorker:
    """Takes jobs one at a time for code that processes them itself, and records their
    outcomes. Use ``async with`` or call ``close()``.

    ``lock_duration`` (s): the lease each job is taken under (``extend_lock`` renews it).
    ``limiter``: ``{"max": n, "duration": s}``, as for ``Worker``. ``stalled_interval``
    (s): how often ``get_next_job`` also takes back jobs whose lease ran out (0: never; a
    ``Worker`` of the queue does it too). ``sweep_interval`` (s): how often it also
    applies retention to a queue gone quiet and drops the re-send records of producers
    gone quiet (``Queue.sweep``; 0: never; a ``Worker`` does it too, so a queue served
    only by ManualWorkers needs this). ``backoff_strategies``: custom backoff functions
    by name, as for ``Worker``. ``heartbeat_interval`` (s): from its first call until
    ``close()`` it is listed by ``Queue.get_workers()`` and the dashboard (kind "manual",
    with the jobs it took and has not finished), as a ``Worker`` is.
    Raises ValueError for a lock_duration or heartbeat_interval that is not positive, or a
    stalled_interval or sweep_interval below 0.
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
        sweep_interval: float = 60.0,
        name: str | None = None,
        backoff_strategies: Mapping[str, BackoffStrategy] | None = None,
        heartbeat_interval: float = 5.0,
    ) -> None:
        if not 0 < heartbeat_interval < MAX_SECONDS:
            raise ValueError(f"heartbeat_interval must be > 0 seconds, got {heartbeat_interval!r}")
        if not 0 < lock_duration < MAX_SECONDS:
            raise ValueError(f"lock_duration must be > 0 seconds, got {lock_duration!r}")
        if not stalled_interval >= 0:
            raise ValueError(f"stalled_interval must be >= 0, got {stalled_interval!r}")
        if not sweep_interval >= 0:
            raise ValueError(f"sweep_interval must be >= 0, got {sweep_interval!r}")
        if connection is not None:
            check_client(connection, f"ManualWorker({queue_name!r})", url)
        self.queue = Queue(queue_name, url=url, connection=connection, prefix=prefix)
        self.redis = self.queue.redis
        self.keys = self.queue.keys
        self.lock_ms = max(1, _ms_up(lock_duration))
        self.lim_max, self.lim_window_ms = Worker._limiter(limiter)
        self.stalled_interval = stalled_interval
        self.sweep_interval = sweep_interval
        self._next_sweep = 0.0
        self.max_stalled_count = max_stalled_count
        self.backoff_strategies = check_strategies(backoff_strategies)
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
        self._unanswered: _Unanswered | None = None
        self._closed = False
        self.heartbeat_interval = heartbeat_interval
        self.started_at = time.time()
        self.jobs_done = 0
        self.jobs_failed = 0  # jobs failed for good (a retry is not counted), as a Worker's
        self._taken: dict[str, str] = {}  # jobs taken and not finished: id -> token
        # Results a call applied whose caller never had the answer (lost, cancelled): a
        # retry of the same result finds it here, (id, token) -> kind.
        self._unreported: dict[tuple[str, str], str] = {}
        self._starved = True  # its last take found nothing (or it has taken nothing yet)
        self._heartbeat: asyncio.Task[None] | None = None

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
        ``block`` may be ``math.inf``. Returns None when ``close()`` comes while it
        waits; raises RuntimeError when called after it."""
        self._check_open()
        if block != block:  # NaN
            raise ValueError("block must be a number of seconds, got nan")
        loop = asyncio.get_running_loop()
        deadline = loop.time() + max(0.0, block)
        while True:
            if self._closed:
                return None
            if self.stalled_interval and loop.time() >= self._next_stall_check:
                self._next_stall_check = loop.time() + self.stalled_interval
                await self.check_stalled()
            if self.sweep_interval and loop.time() >= self._next_sweep:
                # A queue served by ManualWorkers alone was never swept: quiet producers'
                # records and retention of a quiet queue piled up (break round 37).
                self._next_sweep = loop.time() + self.sweep_interval
                await self.queue.sweep()
            job, header = await self._call([], want=1)
            if job is not None:
                return job
            remaining = deadline - loop.time()
            if remaining <= 0:
                return None
            status, info, next_due, wake_id, now_ms = header[:5]
            wait = min(remaining, WAIT_MAX)
            if int(status) == 2:
                # Rate limited, or a concurrency limit reached, for `info` ms: jobs may be
                # waiting in the stream, so only a wake-up (a resume, a job ahead) ends
                # the wait sooner.
                wait = min(wait, int(info) / 1000.0)
            elif int(status) == 0 and int(next_due) >= 0:
                wait = min(wait, max(0.0, (int(next_due) - int(now_ms)) / 1000.0))
            try:
                await self._wait_for_work(wake_id, int(status) != 0, wait)
            except Exception as exc:
                if self._closed:  # close() cut the wait short
                    return None
                if not isinstance(exc, _UNKNOWN_OUTCOME):
                    raise
                # The wait's connection dropped (a Redis restart, a failover, a proxy): it
                # only watched for work, so nothing is lost; the next call asks again (and
                # raises if Redis stays away), after a pause that keeps a flapping link
                # from spinning.
                await asyncio.sleep(min(WAIT_RETRY, max(0.0, deadline - loop.time())))

    async def _wait_for_work(self, wake_id: bytes, wake_only: bool, timeout: float) -> None:
        """Blocks until a job may be ready (a stream entry; with ``wake_only``, or else, a
        wake-up) or ``timeout``."""
        if timeout <= 0:
            return
        names = [self.keys.wake] if wake_only else [self.keys.ready, self.keys.wake]
        ids = [wake_id.decode()] if wake_only else ["0-0", wake_id.decode()]
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
            # (A lone surrogate, as os.fsdecode makes of a file name that is not UTF-8,
            # could not be sent.)
            reason, stack, delay = wire_text(error), "", None
            if not final:
                _, _, delay = failure_outcome(job, _Reason(error), self.backoff_strategies)
        else:
            reason, stack, delay = failure_outcome(job, error, self.backoff_strategies)
        if final or delay is None:
            return await self._finish(job, "f", reason, stack, 0, fetch_next)
        # No backoff (0 s): waiting again at once, at the end of its priority, as a Worker's
        # retry; a delay below 1 ms counts as 1 ms (lua/finish.lua: 0 means "no delay").
        delay_ms = max(1, _ms_up(delay)) if delay > 0 else 0
        return await self._finish(job, "r", reason, stack, delay_ms, fetch_next)

    async def delay(self, job: Job, seconds: float) -> None:
        """Puts the job back as delayed for ``seconds`` without using an attempt (a
        processor's ``raise Delayed(seconds)``; BullMQ's ``moveToDelayed``). 0 puts it at
        the head of the line. Raises ValueError for a negative delay, and as ``complete``."""
        if not 0 <= seconds < MAX_SECONDS:
            raise ValueError(f"delay must be >= 0 seconds (and finite), got {seconds!r}")
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
        self._check_open()
        if duration is not None and not 0 < duration < MAX_SECONDS:
            raise ValueError(f"duration must be > 0 seconds (and finite), got {duration!r}")
        lock_ms = self.lock_ms if duration is None else max(1, _ms_up(duration))
        lost, _cancel = await scripts.run(self.redis, "extend", (self.keys.meta,),
                                          [self.keys.job_prefix, lock_ms, job.id,
                                           job.token or ""])
        return not lost

    async def is_cancel_requested(self, job: Job) -> bool:
        """Whether ``queue.cancel(job.id)`` was asked for the job while it was active: stop
        and ``fail(job, "cancelled", final=True)``, which is what ``cancel()`` waits for."""
        self._check_open()
        return bool(await self.redis.hexists(self.keys.job(job.id), "cx"))

    async def check_stalled(self) -> int:
        """Takes back jobs whose lease ran out, this worker's own included (a Worker leaves
        its own alone, as it renews them itself; here a lease that ran out was not
        extended); returns how many."""
        self._check_open()
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
        """Forgets this worker's call record and closes its connection (if it made it). A
        ``get_next_job`` waiting in another task returns None. Jobs it still has stay
        active until their lease runs out, then run again; a job taken by a call whose
        answer never came goes back to its place now."""
        if self._closed:
            return
        self._closed = True
        try:
            async with self._lock:
                with contextlib.suppress(Exception):
                    answered = await self._answer_unanswered()
                    if answered is not None and answered.job is not None:
                        await self._send([_result(answered.job, "h", "")], 0)
                if self._heartbeat is not None:
                    self._heartbeat.cancel()
                    with contextlib.suppress(asyncio.CancelledError):
                        await self._heartbeat
                with contextlib.suppress(Exception):
                    async with asyncio.timeout(2.0):  # a Redis that does not answer
                        await remove_heartbeat(self.redis, self.keys, self.name, self.ident)
        finally:
            await self.queue.close()

    def _check_open(self) -> None:
        if self._closed:
            raise RuntimeError("this ManualWorker is closed")
        if self._heartbeat is None:
            self._heartbeat = asyncio.get_running_loop().create_task(
                self._heartbeat_loop(), name="minique-manual-heartbeat")

    async def _heartbeat_loop(self) -> None:
        ttl = max(1, math.ceil(self.heartbeat_interval * 3))
        while not self._closed:
            info = WorkerInfo(
                name=self.name, host=socket.gethostname(), pid=os.getpid(),
                queues=[self.queue.name], started_at=self.started_at, last_seen=time.time(),
                jobs_done=self.jobs_done, jobs_failed=self.jobs_failed, concurrency=0,
                running=sorted(self._taken), kind="manual")
            try:
                await write_heartbeat(self.redis, self.keys, info, ttl)
            except Exception as exc:
                log.warning("queue %s: heartbeat of %s failed (%s: %s)", self.queue.name,
                            self.name, type(exc).__name__, exc)
            await asyncio.sleep(self.heartbeat_interval)

    # ----- the call ----------------------------------------------------------------------

    async def _finish(self, job: Job, kind: str, value: Any, stack: str, delay_ms: int,
                      fetch_next: bool) -> Job | None:
        self._check_open()
        if job.queue.keys.base != self.keys.base:
            raise ValueError(f"job {job.id} is of queue {job.queue.name!r}, not "
                             f"{self.queue.name!r}")
        if not job.token:
            raise LockLost(f"job {job.id} has no token: it was not taken by a worker")
        keep = job.opts.keep_completed if kind == "c" else job.opts.keep_failed
        result = (job.id, job.token, kind, value, stack, delay_ms, keep.count, _age_ms(keep), "",
                  job._counts)
        try:
            next_job, _header = await self._call([result], want=1 if fetch_next else 0,
                                                 finished=job)
        except (LockLost, JobNotFound):
            self._forget(job)
            raise
        self._forget(job)
        if kind == "c":
            self.jobs_done += 1
        elif kind == "f":
            self.jobs_failed += 1
        if kind in ("c", "f"):
            job.state = "completed" if kind == "c" else "failed"
        return next_job

    async def _why_not_ours(self, job: Job) -> str:
        """Why a result for ``job`` was not applied (its token no longer matches): one
        this worker finished already (a second complete() or fail()) is named as such;
        otherwise the lease ran out and the job went back, or ran elsewhere."""
        state, holder = await self.redis.hmget(self.keys.job(job.id), "st", "w")
        if state in (b"completed", b"failed") and holder == self.ident.encode():
            return (f"job {job.id} is {state.decode()} already (a second complete() or "
                    "fail() for it); this result was not applied")
        ended = f" (another worker ran it since: it is {state.decode()})" if state in (
            b"completed", b"failed") else ""
        return (f"job {job.id}: its lease ran out and it is no longer this worker's{ended}; "
                "the result was discarded")

    def _took(self, job: Job | None) -> Job | None:
        if job is not None:
            self._taken[job.id] = job.token or ""
        return job

    def _forget(self, job: Job) -> None:
        if self._taken.get(job.id) == job.token:
            del self._taken[job.id]

    async def _call(self, results: list[tuple[Any, ...]], want: int,
                    finished: Job | None = None) -> tuple[Job | None, list[Any]]:
        """One finish.lua call: ``results`` recorded, ``want`` jobs (0 or 1) taken. A job
        that must fail without running (corrupt options, expired) is failed in a call of
        its own, and the take goes on. ``finished``: the job whose result is
        ``results[0]``, whose status raises LockLost or JobNotFound."""
        self._check_open()
        async with self._lock:
            answered = await self._answer_unanswered()
            if answered is not None:
                self._record_unreported(answered.applied)
            key = (finished.id, finished.token or "") if finished is not None else None
            reported = None
            if finished is not None and key in self._unreported:
                # The same job's result went with a call whose answer never reached the
                # caller (a complete() that timed out or was cancelled, retried): recorded
                # once, by that call. The same outcome is no error; another one is not
                # applied.
                earlier = self._unreported[key]
                if earlier != results[0][2]:
                    raise LockLost(
                        f"job {finished.id}: an earlier call of this worker, whose answer "
                        f"was lost, recorded its outcome ({_KINDS.get(earlier, earlier)}); "
                        "this one was not applied")
                # Forgotten only once this call is answered: should its answer be lost
                # too, the next retry must still find the result recorded.
                results, finished, reported = results[1:], None, key
            if answered is not None and answered.job is not None:
                if want and not results:
                    self._starved = False
                    if reported is not None:
                        self._unreported.pop(reported, None)
                    return self._took(answered.job), []
                results = [*results, _result(answered.job, "h", "")]
            applied: dict[tuple[str, str], str] = {}
            try:
                job, header = await self._take(results, want, finished, applied)
            except BaseException:
                # Results applied by a call that gave way, whose caller gets no answer now:
                # a retry of the same result must find them recorded.
                self._record_unreported(applied)
                raise
            if reported is not None:
                self._unreported.pop(reported, None)
            if want:
                self._starved = job is None
            return self._took(job), header

    def _record_unreported(self, applied: dict[tuple[str, str], str]) -> None:
        self._unreported.update(applied)
        while len(self._unreported) > UNREPORTED_MAX:
            del self._unreported[next(iter(self._unreported))]

    async def _take(self, results: list[tuple[Any, ...]], want: int, finished: Job | None,
                    applied: dict[tuple[str, str], str]) -> tuple[Job | None, list[Any]]:
        """The calls of one _call: until a job is taken or none is there. ``applied`` gets
        the results applied by a call that gave way (the loop goes on after it)."""
        # Idle (its last take found nothing), it gives way to jobs other workers hold.
        give_way, giving_way_until = (GIVE_WAY_TELL if self._starved else 0), 0.0
        loop = asyncio.get_running_loop()
        while True:
            reply = await self._send(results, want, hold=give_way if want else 0)
            n = len(results)
            header = reply[n:n + HEADER]
            body = reply[n + HEADER:n + HEADER + JOB_FIELDS]
            job = None
            if body:
                job, bad_opts = fetched_job(self.queue, body, header[HEADER_STARTED_MS])
                reason = self._unrunnable(job, bad_opts, int(header[4]))
                if reason:
                    # Failed for good without running, as a Worker does; then the next.
                    results, job = [_result(job, "f", reason)], None
            if finished is not None and n:
                status, done = int(reply[0]), finished
                finished = None
                if status != 1:
                    if job is not None:  # taken for nothing: handed back unstarted
                        await self._send([_result(job, "h", "")], 0)
                    if status == 0:
                        raise LockLost(await self._why_not_ours(done))
                    raise JobNotFound(f"job {done.id} was removed while active; its "
                                      "result was dropped")
            if want and not body and int(header[0]) == GAVE_WAY:
                # Jobs another worker holds are ahead of what this take would get: it has
                # been told to hand them back (a wake-up each); taken one at a time they
                # are this take's. Asked again once they are back, or, past the time Redis
                # gave (a frozen holder), without them.
                for r, st in zip(results, reply[:n], strict=True):
                    if int(st) == 1:
                        applied[(r[0], r[1])] = r[2]
                results = []
                if give_way == GIVE_WAY_TELL:
                    giving_way_until = loop.time() + int(header[1]) / 1000.0
                left = giving_way_until - loop.time()
                give_way = GIVE_WAY_TOLD if left > 0 else 0
                if left > 0:
                    try:
                        # Cut on this side: Redis ends a short BLOCK on its own 100 ms tick.
                        async with asyncio.timeout(min(GIVE_WAY_SLICE, left)):
                            await self._wait_for_work(header[3], True, left)
                    except TimeoutError:
                        pass  # no hand-back yet: ask again (it tells the holders again)
                    except _UNKNOWN_OUTCOME:
                        # The wait's connection dropped (a Redis restart, a proxy): it only
                        # watched for the hand-back; the next call asks again.
                        await asyncio.sleep(min(WAIT_RETRY, max(0.0, left)))
                if self._closed:
                    return None, header  # close() came: nothing more is taken
                continue
            if job is not None or not body:
                return job, header

    async def _send(self, results: list[tuple[Any, ...]], want: int,
                    args: list[Any] | None = None, hold: int = 0) -> Any:
        """Sends one call (``args``: one sent before, again). Until it is answered it is
        kept as unanswered: a timeout, a lost connection or a cancel leaves it unknown
        whether Redis ran it. Any other error (one the arguments raised before anything
        was sent, Redis's refusal) is an answer."""
        if args is None:
            self._call_seq += 1
            args = [self.keys.job_prefix, want, self.lock_ms, self.ident, self.lim_max,
                    self.lim_window_ms, 1000, hold, 0, self._call_seq, len(results),
                    *encode_results(results)]
        self._unanswered = _Unanswered(args, results)
        try:
            reply = await scripts.run(self.redis, "finish", (self.keys.meta,), args)
        except Exception as exc:
            if not isinstance(exc, _UNKNOWN_OUTCOME):
                self._unanswered = None
            raise
        self._unanswered = None
        # The statuses first, then the take's reply: a call here carries a result or two.
        statuses, take = split_finish_reply(reply, len(results))
        return statuses + take

    async def _answer_unanswered(self) -> _Answered | None:
        """Sends again the last call that got no answer: the same call id, so Redis answers
        as it did the first time (lua/finish.lua) and nothing is applied twice. Returns the
        results it applied and the job it took (which the caller returns or hands back)."""
        unanswered = self._unanswered
        if unanswered is None:
            return None
        reply = await self._send(unanswered.results, 0, unanswered.args)
        n = len(unanswered.results)
        applied = {(r[0], r[1]): r[2] for r, status in zip(unanswered.results, reply[:n],
                                                           strict=True) if int(status) == 1}
        body = reply[n + HEADER:n + HEADER + JOB_FIELDS]
        job = None
        if body:
            job, bad_opts = fetched_job(self.queue, body, reply[n + HEADER_STARTED_MS])
            reason = self._unrunnable(job, bad_opts, int(reply[n + 4]))
            if reason:
                await self._send([_result(job, "f", reason)], 0)
                job = None
        return _Answered(applied, job)

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


class _Unanswered(NamedTuple):
    """A call sent without an answer: its arguments (its call id among them) and results."""
    args: list[Any]
    results: list[tuple[Any, ...]]


class _Answered(NamedTuple):
    """What an unanswered call did, once sent again: results applied by (id, token), with
    their kind, and the job it took, if any (may be run)."""
    applied: dict[tuple[str, str], str]
    job: Job | None


def _result(job: Job, kind: str, value: str) -> tuple[Any, ...]:
    """A finish.lua result for a job taken but not run: failed for good, or handed back."""
    keep = job.opts.keep_failed
    return (job.id, job.token, kind, value, "", 0, keep.count, _age_ms(keep), "", job._counts)


class _Reason(Exception):
    """A failure given as a string (``fail(job, "reason")``), for a backoff function."""


__all__ = ["ManualWorker"]
