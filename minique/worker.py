"""The worker: fetches jobs in batches, runs them, and reports the results in batches.

One dispatcher task owns the command connection. Each of its script calls reports every
result gathered since the previous call *and* fetches as many new jobs as there are free
slots, so a busy worker costs about one round trip per batch of jobs. When the queue is
empty, a waiter blocks (with a deadline) on the ready and wake streams on a second
connection; the dispatcher never blocks on Redis itself.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import signal
import socket
import time
import traceback
import uuid
from collections import deque
from collections.abc import Awaitable, Callable, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import msgspec
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import RedisError
from redis.exceptions import TimeoutError as RedisTimeoutError

from . import codec, scheduler, scripts, telemetry
from .backoff import BackoffStrategy, retry_delay
from .connection import connect
from .errors import Delayed, JobCorrupted, PayloadError, RateLimited, UnrecoverableError
from .job import Job
from .keys import DEFAULT_PREFIX, QueueKeys
from .options import Keep, StoredOptions, decode_stored
from .pool import ProcessRunner
from .queue import Queue
from .registry import Handler, Registry

log = logging.getLogger("minique.worker")

JOB_FIELDS = 11  # per job in a fetch reply: see lua/includes/take.lua
HEADER = 6  # status, info, next_due, wake_id, now, global concurrency limit
PREFETCH_WORK = 0.005  # seconds of work a worker may hold per slot beyond what it runs
PREFETCH_MAX = 200  # jobs held ahead at most (see Worker._prefetch)
RUNNER_SLICE = 0.01  # seconds a runner goes through jobs before yielding to the loop
_OUTCOMES = {"c": "completed", "f": "failed", "r": "retried", "w": "requeued", "d": "delayed"}
TRANSIENT = (RedisConnectionError, RedisTimeoutError, ConnectionError, TimeoutError, OSError)


def encode_results(results: list[tuple[Any, ...]]) -> list[Any]:
    """finish.lua's argument layout for results ``(id, token, kind, value, stack, delay_ms,
    keep_count, keep_age_ms)``: the distinct retention policies once, then per job one
    "id|token|kind|delay|policy" string, the value, and the stack unless it completed."""
    policies: dict[tuple[int, int], int] = {}
    args: list[Any] = [""]
    for job_id, token, kind, value, stack, delay_ms, keep_count, keep_age in results:
        index = policies.setdefault((keep_count, keep_age), len(policies))
        args.append(f"{job_id}|{token}|{kind}|{delay_ms}|{index}")
        args.append(value)
        if kind != "c":
            args.append(stack)
    args[0] = ",".join(f"{c}:{a}" for c, a in policies)
    return args


def _age_ms(keep: Keep) -> int:
    return -1 if keep.age < 0 else int(keep.age * 1000)


class _Running:
    __slots__ = ("bad_opts", "cancel_reason", "job", "task")

    def __init__(self, job: Job, bad_opts: bool = False) -> None:
        self.job = job
        self.bad_opts = bad_opts
        self.task: asyncio.Task[None] | None = None  # the runner running it; None while held
        self.cancel_reason: str | None = None


class Worker:
    """Processes the jobs of one queue.

    ``processor`` is a ``Registry`` or one callable for every job of the queue. A coroutine
    function runs on the event loop; a plain function runs in a thread.
    """

    def __init__(
        self,
        queue_name: str,
        processor: Registry | Callable[..., Any],
        *,
        url: str | None = None,
        connection: Any = None,
        prefix: str = DEFAULT_PREFIX,
        concurrency: int = 5,
        limiter: Mapping[str, float] | None = None,
        lock_duration: float = 30.0,
        lock_renew_time: float | None = None,
        stalled_interval: float = 30.0,
        max_stalled_count: int = 1,
        shutdown_timeout: float = 30.0,
        block_timeout: float = 5.0,
        sweep_interval: float = 60.0,
        name: str | None = None,
        backoff_strategies: Mapping[str, BackoffStrategy] | None = None,
        default_job_options: Mapping[str, Any] | None = None,
        processes: int = 0,
        heartbeat_interval: float = 5.0,
        observers: Sequence[Any] = (),
    ) -> None:
        if isinstance(concurrency, bool) or not isinstance(concurrency, int) or concurrency < 1:
            raise ValueError(f"concurrency must be an integer >= 1, got {concurrency!r}")
        for label, value in (("lock_duration", lock_duration), ("stalled_interval", stalled_interval),
                             ("block_timeout", block_timeout), ("shutdown_timeout", shutdown_timeout)):
            if value <= 0:
                raise ValueError(f"{label} must be > 0, got {value}")
        self.queue_name = queue_name
        self.registry = processor if isinstance(processor, Registry) else Registry.single(
            queue_name, processor)
        self.keys = QueueKeys(queue_name, prefix)
        self._own = connection is None
        self.redis: Any = connection if connection is not None else connect(url)
        # The blocking wait gets its own connection, so it never delays a script call.
        self._blocking: Any = (connect(url, socket_timeout=block_timeout + 5.0)
                               if connection is None else connection)
        self.queue = Queue(queue_name, connection=self.redis, prefix=prefix,
                           default_job_options=default_job_options)
        self.concurrency = concurrency
        self.lock_ms = int(lock_duration * 1000)
        self.renew_interval = lock_renew_time if lock_renew_time else lock_duration / 2
        self.stalled_interval = stalled_interval
        self.max_stalled_count = max_stalled_count
        self.shutdown_timeout = shutdown_timeout
        self.block_timeout = block_timeout
        self.sweep_interval = sweep_interval
        self.name = name or f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:6]}"
        self.backoff_strategies = dict(backoff_strategies or {})
        self.lim_max, self.lim_window_ms = self._limiter(limiter)
        self.jobs_done = 0
        self.jobs_failed = 0
        self._running: dict[str, _Running] = {}  # every job this worker holds, incl. buffered
        self._buffered: deque[_Running] = deque()  # fetched, waiting for a runner
        self._executing = 0
        # Jobs run in a pool of long-lived runner tasks (at most `concurrency`), not a task
        # per job: a runner whose job finishes without suspending takes the next one at
        # once, so a batch of short jobs costs no task creation and no loop turns.
        self._runners: list[asyncio.Task[None]] = []
        self._idle_runners: deque[asyncio.Future[None]] = deque()
        self._waking = 0  # runners told to look at the buffer that have not run yet
        self._owe_turn = False  # a runner ran RUNNER_SLICE: all yield until the next pass
        self._all_done: asyncio.Event | None = None  # set when nothing executes (close())
        self._avg_duration: float | None = None
        self._global_limit = 0  # the queue's global concurrency, as the last call saw it
        self._results: list[tuple[Any, ...]] = []
        self._wakeup = asyncio.Event()
        self._queue_empty = False
        self._limited_until = 0.0
        self._waiter: asyncio.Task[None] | None = None
        self._blocking_conn: Any = None
        self._due_timer: asyncio.TimerHandle | None = None
        self._closing = False
        self._closed = asyncio.Event()
        self._stop = asyncio.Event()
        self._next_lease_expiry: float | None = None
        self._started = False
        self._threads: ThreadPoolExecutor | None = None
        self._background: list[asyncio.Task[None]] = []
        self._close_task: asyncio.Future[None] | None = None
        self.heartbeat_interval = heartbeat_interval
        # Objects with job_started(queue, job) / job_finished(queue, job, outcome, seconds),
        # e.g. minique.metrics.WorkerMetrics; called on the event loop, errors only logged.
        self.observers: list[Any] = list(observers)
        self._started_at: dict[str, float] = {}
        self.started_at = time.time()
        self._processes = ProcessRunner(processes) if processes > 0 else None

    @staticmethod
    def _limiter(limiter: Mapping[str, float] | None) -> tuple[int, int]:
        if not limiter:
            return 0, 0
        extra = set(limiter) - {"max", "duration"}
        if extra:
            raise TypeError(f"limiter: unknown key(s) {sorted(extra)}; use 'max' and 'duration'")
        lim_max, duration = int(limiter.get("max", 0)), float(limiter.get("duration", 1.0))
        if lim_max < 1 or duration <= 0:
            raise ValueError(f"limiter needs max >= 1 and duration > 0, got {dict(limiter)}")
        return lim_max, int(duration * 1000)

    # ----- lifecycle ---------------------------------------------------------------------

    async def run(self, *, handle_signals: bool = False) -> None:
        """Processes jobs until ``close()`` (or SIGTERM/SIGINT with ``handle_signals``)."""
        if self._started:
            raise RuntimeError("a Worker runs once; create a new one")
        self._started = True
        if handle_signals:
            self._install_signal_handlers()
        await self._check_eviction_policy()
        if getattr(self._blocking, "connection_pool", None) is None:
            await self._blocking.initialize()  # Redis Cluster: learn the slot map first
        pubsub = await self._subscribe_cancels()
        self._background = [
            asyncio.create_task(self._renew_loop(), name="minique-renew"),
            asyncio.create_task(self._maintenance_loop(), name="minique-maintenance"),
            asyncio.create_task(self._heartbeat_loop(), name="minique-heartbeat"),
            asyncio.create_task(self._cancel_listener(pubsub), name="minique-cancel"),
        ]
        log.info("worker %s started on queue %s (concurrency %d)", self.name, self.queue_name,
                 self.concurrency)
        try:
            await self._dispatch_loop()
        finally:
            # redis-py may turn a cancellation inside a command into a ConnectionError, which
            # a loop's error handler would swallow; the stop event ends the loops regardless.
            self._stop.set()
            for idle in self._idle_runners:
                idle.cancel()  # a runner still inside a job is left to finish it
            for task in self._background:
                task.cancel()
            # Bounded: a read blocked inside the client must not hold up shutdown.
            await asyncio.wait(self._background, timeout=2.0)
            if self._due_timer is not None:
                self._due_timer.cancel()
            await self._stop_waiter()
            if self._threads:
                self._threads.shutdown(wait=False, cancel_futures=True)
            if self._processes:
                self._processes.shutdown()
            with contextlib.suppress(Exception):
                await self._remove_heartbeat()
            if self._own:
                await self.redis.aclose()
                await self._blocking.aclose()
            self._closed.set()
            log.info("worker %s stopped (%d done, %d failed)", self.name, self.jobs_done,
                     self.jobs_failed)

    async def _stop_waiter(self) -> None:
        # A blocked read does not always yield to cancellation at once, so the socket is cut
        # too; and the wait for it is bounded, so shutdown can never hang on it.
        waiter = self._waiter
        if waiter is None or waiter.done():
            return
        if self._blocking_conn is not None:
            await self._blocking_conn.disconnect(nowait=True)
        waiter.cancel()
        await asyncio.wait([waiter], timeout=1.0)

    async def close(self, timeout: float | None = None) -> None:
        """Stops fetching; running jobs get ``timeout`` seconds (default shutdown_timeout),
        then are cancelled and put back to waiting without using an attempt."""
        grace = self.shutdown_timeout if timeout is None else timeout
        self._closing = True
        self._wakeup.set()
        if not self._started:
            return
        self._return_buffered("worker shut down")
        if self._executing:
            self._all_done = asyncio.Event()
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(grace):
                    await self._all_done.wait()
        for running in list(self._running.values()):
            if running.task and not running.task.done():
                running.cancel_reason = "shutdown"
                running.task.cancel()
        self._wakeup.set()
        await self._closed.wait()

    def _install_signal_handlers(self) -> None:
        loop = asyncio.get_running_loop()
        state = {"count": 0}

        def on_signal(signame: str) -> None:
            state["count"] += 1
            if state["count"] == 1:
                log.warning("%s received: finishing running jobs (grace %.0fs)", signame,
                            self.shutdown_timeout)
                self._close_task = asyncio.ensure_future(self.close())
            else:
                log.warning("second %s: exiting now; leases will return running jobs", signame)
                os._exit(1)

        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, on_signal, sig.name)

    # ----- the dispatcher ----------------------------------------------------------------

    async def _dispatch_loop(self) -> None:
        failures = 0
        while True:
            if self._closing and self._buffered:
                self._return_buffered("worker shut down")
            if self._closing and not self._running and not self._results:
                return
            results, self._results = self._results, []
            want = 0 if self._closing else (
                self.concurrency + self._prefetch() - len(self._running))
            limited = self._limited_until > time.monotonic()
            if not results and (want == 0 or self._queue_empty or limited):
                self._wakeup.clear()
                wait = self.block_timeout
                if limited:
                    wait = min(wait, self._limited_until - time.monotonic())
                # asyncio.timeout rather than wait_for: no task per wait.
                with contextlib.suppress(TimeoutError):
                    async with asyncio.timeout(max(wait, 0.001)):
                        await self._wakeup.wait()
                if limited and self._limited_until <= time.monotonic():
                    self._queue_empty = False
                continue
            try:
                reply = await self._finish_and_fetch(results, want)
                failures = 0
            except (*TRANSIENT, RedisError) as exc:
                self._results = results + self._results
                failures += 1
                delay = min(5.0, 0.1 * 2 ** min(failures, 6))
                log.error("queue %s: Redis call failed (%s: %s); retrying in %.1fs",
                          self.queue_name, type(exc).__name__, exc, delay)
                await asyncio.sleep(delay)
                continue
            self._handle_reply(results, reply, want)

    async def _finish_and_fetch(self, results: list[tuple[Any, ...]], want: int) -> Any:
        args: list[Any] = [self.keys.job_prefix, want, self.lock_ms, self.name, self.lim_max,
                           self.lim_window_ms, 1000, len(results), *encode_results(results)]
        return await scripts.run(self.redis, "finish", self.keys.vector, args)

    def _handle_reply(self, results: list[tuple[Any, ...]], reply: list[Any], want: int) -> None:
        n = len(results)
        for result, status in zip(results, reply[:n], strict=True):
            if status == 0:
                log.error("queue %s job %s: lease lost before the result was saved; another "
                          "worker owns the job now, so this result (%s) was discarded",
                          self.queue_name, result[0], result[2])
        status, info, next_due, wake_id, now_ms, global_limit = reply[n:n + HEADER]
        self._global_limit = int(global_limit)
        body = reply[n + HEADER:]
        for i in range(0, len(body), JOB_FIELDS):
            self._start(body[i:i + JOB_FIELDS])
        if want == 0 or body:
            if body:
                self._queue_empty = False
            return
        if status == 2:
            self._limited_until = time.monotonic() + int(info) / 1000.0
            return
        self._queue_empty = True
        if status == 0 and int(next_due) >= 0:
            self._schedule_due((int(next_due) - int(now_ms)) / 1000.0)
        if self._waiter is None or self._waiter.done():
            self._waiter = asyncio.create_task(
                self._wait_for_work(wake_id, status == 1, self.block_timeout))

    async def _acquire_blocking_connection(self) -> tuple[Any, Callable[[Any], Awaitable[None]]]:
        """A raw connection to the node that holds the queue (any node of a plain Redis)."""
        pool = getattr(self._blocking, "connection_pool", None)
        if pool is not None:
            return await pool.get_connection(), pool.release
        # Redis Cluster: the whole queue lives in one slot, so one node serves the wait.
        node = self._blocking.get_node_from_key(self.keys.ready)
        conn = node.acquire_connection()

        async def release(c: Any) -> None:
            node.release(c)

        return conn, release

    def _schedule_due(self, delay: float) -> None:
        """Wakes the dispatcher when the next delayed job falls due (the waiter may be
        blocked with a longer deadline, set before that job was delayed)."""
        loop = asyncio.get_running_loop()
        when = loop.time() + max(0.0, delay)
        if self._due_timer is not None and self._due_timer.when() <= when:
            return
        if self._due_timer is not None:
            self._due_timer.cancel()
        self._due_timer = loop.call_at(when, self._on_due)

    def _on_due(self) -> None:
        self._due_timer = None
        self._queue_empty = False
        self._wakeup.set()

    async def _wait_for_work(self, wake_id: bytes, paused: bool, timeout: float) -> None:
        """Blocks until a job may be ready: a stream entry, a wake-up, or the next due time.

        It uses a connection of its own and a deadline of its own: shutdown disconnects it
        rather than relying on cancellation, and a reply that never comes cannot hang it.
        """
        names = [self.keys.wake] if paused else [self.keys.ready, self.keys.wake]
        ids = [wake_id.decode()] if paused else ["0-0", wake_id.decode()]
        block_ms = max(1, int(timeout * 1000))
        conn = None
        try:
            conn, release = await self._acquire_blocking_connection()
            self._blocking_conn = conn
            if self._closing:
                return
            await conn.send_command("XREAD", "COUNT", 1, "BLOCK", block_ms, "STREAMS", *names, *ids)
            await conn.read_response(timeout=timeout + 5.0)
        except asyncio.CancelledError:
            raise
        except Exception as exc:  # never let the waiter die silently: report, pause, retry
            if not self._closing:
                log.warning("queue %s: blocking wait failed (%s: %s)", self.queue_name,
                            type(exc).__name__, exc)
                await self._pause(0.5)
        finally:
            self._blocking_conn = None
            if conn is not None:
                await release(conn)
            self._queue_empty = False
            self._wakeup.set()

    # ----- running one job ---------------------------------------------------------------

    def _start(self, f: list[Any]) -> None:
        job_id = f[0].decode()
        name = f[2].decode(errors="replace")
        try:
            opts = decode_stored(f[4])
        except Exception:
            opts = StoredOptions(attempts=1)
            bad_opts = True
        else:
            bad_opts = False
        job = Job(self.queue, job_id, name, f[3], opts,
                  priority=int(f[8]), timestamp=int(f[7]) / 1000.0, attempts_made=int(f[5]),
                  attempts_started=int(f[6]), stalled_count=int(f[9]), state="active",
                  token=f[1].decode())
        job.processed_on = int(f[10]) / 1000.0
        running = _Running(job, bad_opts)
        if self._closing:
            # Fetched by a call that was in flight when close() began: hand it straight back.
            self._push(job, "w", "worker shut down", "", 0, job.opts.keep_failed)
            return
        self._running[job_id] = running
        self._buffered.append(running)
        self._rouse()

    def _prefetch(self) -> int:
        """How many jobs to hold beyond ``concurrency``, so the next job starts the moment one
        finishes instead of a round trip later, and one script call serves many jobs.

        Bounded by time, like a prefetch multiplier sized by the jobs' measured duration:
        what is held ahead is at most PREFETCH_WORK seconds of work per slot (so a held job
        waits at most that long while another worker might have run it), at least one job
        per slot and at most PREFETCH_MAX jobs. Nothing while jobs are long or unmeasured,
        never with a rate limiter, which counts a job as started when it is fetched, and
        never under a global concurrency limit, whose allowance a worker would otherwise
        hold while other workers' slots stand idle."""
        avg = self._avg_duration
        if self.lim_max or self._global_limit or avg is None or avg > PREFETCH_WORK:
            return 0
        per_slot = PREFETCH_WORK / max(avg, 1e-6)
        return int(min(PREFETCH_MAX, max(self.concurrency, self.concurrency * per_slot)))

    def _rouse(self) -> None:
        """Gets a runner to look at the buffer, one at a time: when a runner goes through
        the buffer without suspending (short jobs), the others are not woken for nothing;
        when it suspends, the runner roused here takes the next job and rouses another."""
        if self._waking or not self._buffered:
            return
        while self._idle_runners:
            idle = self._idle_runners.popleft()
            if not idle.done():
                self._waking += 1
                idle.set_result(None)
                return
        if len(self._runners) < self.concurrency:
            self._waking += 1
            self._runners.append(asyncio.create_task(
                self._runner(), name=f"minique-runner-{len(self._runners)}"))

    async def _runner(self) -> None:
        task = asyncio.current_task()
        assert task is not None
        loop = asyncio.get_running_loop()
        while True:
            self._waking -= 1
            streak = loop.time()
            while self._buffered:
                if self._owe_turn:
                    # Another runner used up the loop's turn: wait for the next one.
                    await asyncio.sleep(0)
                    streak = loop.time()
                    continue
                running = self._buffered.popleft()
                self._rouse()  # should this job suspend, another runner takes the next one
                await self._execute(running, task)
                if loop.time() - streak > RUNNER_SLICE:
                    # Jobs that never suspend would keep the loop to the runners; lease
                    # renewal, replies and cancels get a turn about this often. Every
                    # runner waits until the loop has polled for I/O again (_turn_paid).
                    if not self._owe_turn:
                        self._owe_turn = True
                        loop.call_soon(self._turn_paid)
                    await asyncio.sleep(0)
                    streak = loop.time()
            idle: asyncio.Future[None] = loop.create_future()
            self._idle_runners.append(idle)
            await idle

    def _turn_paid(self) -> None:
        # Scheduled while the loop runs its ready callbacks, so it runs in the next pass,
        # after the loop has polled for I/O and fired its timers.
        self._owe_turn = False

    async def _execute(self, running: _Running, task: asyncio.Task[None]) -> None:
        job = running.job
        self._executing += 1
        running.task = task
        if self.observers:
            self._started_at[job.id] = time.monotonic()
            self._observe("job_started", job)
        handler = self.registry.resolve(self.queue_name, job.name)
        await self._process(running, handler, running.bad_opts)
        # A cancel meant this job (cancel(), shutdown) was handled by _process; the runner
        # goes on, so its cancellation count must not leak into the next job.
        while task.cancelling():
            task.uncancel()

    async def _process(self, running: _Running, handler: Handler | None, bad_opts: bool) -> None:
        job = running.job
        started = time.monotonic()
        try:
            if bad_opts:
                raise UnrecoverableError(f"job {job.id}: stored options cannot be decoded")
            if handler is None:
                raise UnrecoverableError(
                    f"no processor for job {job.name!r} in queue {self.queue_name!r}")
            if handler.decoder is not None:
                try:
                    job.payload = handler.decoder.decode(job._data_raw or b"")
                except msgspec.DecodeError as exc:
                    expected = handler.payload.__name__ if handler.payload else "payload"
                    raise UnrecoverableError(f"payload does not match {expected}: {exc}") from exc
            else:
                # Decoded now rather than on first access, so a payload that cannot be decoded
                # fails the job at once, like an unknown name: no attempt can go better.
                try:
                    _ = job.data
                except JobCorrupted as exc:
                    raise UnrecoverableError(str(exc)) from exc
            if telemetry.enabled():
                with telemetry.processing_span(self.queue_name, job):
                    value = await self._call(handler, job)
            else:
                value = await self._call(handler, job)
            raw = codec.encode(value, "return value")
            self._push(job, "c", raw, "", 0, job.opts.keep_completed)
            self.jobs_done += 1
            if log.isEnabledFor(logging.DEBUG):
                took = time.monotonic() - started
                log.debug("queue %s job %s (%s) attempt %d completed in %.3fs", self.queue_name,
                          job.id, job.name, job.attempts_started, took,
                          extra=self._log_fields(job, took, "completed"))
        except asyncio.CancelledError:
            if running.cancel_reason == "shutdown":
                self._push(job, "w", "worker shut down", "", 0, job.opts.keep_failed)
            else:
                self._fail(job, "cancelled", "", final=True, started=started)
        except Delayed as exc:
            self._push(job, "d", str(exc), "", int(exc.delay * 1000), job.opts.keep_failed)
        except RateLimited as exc:
            self._push(job, "w", "rate limited", "", int(exc.delay * 1000), job.opts.keep_failed)
        except PayloadError as exc:
            self._fail(job, str(exc), "", final=True, started=started)
        except BaseException as exc:
            if isinstance(exc, KeyboardInterrupt | SystemExit):
                raise
            self._on_error(job, exc, started)
        finally:
            self._running.pop(job.id, None)
            self._executing -= 1
            took = time.monotonic() - started
            avg = self._avg_duration
            self._avg_duration = took if avg is None else avg * 0.9 + took * 0.1
            if not self._executing and self._all_done is not None:
                self._all_done.set()
            self._wakeup.set()

    async def _call(self, handler: Handler, job: Job) -> Any:
        if handler.is_async:
            coro = handler.fn(job)
        elif self._processes is not None:
            coro = self._processes.run(handler.fn, job)
        else:
            if self._threads is None:
                self._threads = ThreadPoolExecutor(self.concurrency, "minique-job")
            coro = asyncio.get_running_loop().run_in_executor(self._threads, handler.fn, job)
        timeout = job.opts.timeout
        if timeout is None:
            return await coro
        try:
            return await asyncio.wait_for(coro, timeout)
        except TimeoutError:
            raise TimeoutError(f"job timed out after {timeout}s") from None

    def _on_error(self, job: Job, exc: BaseException, started: float) -> None:
        reason = f"{type(exc).__name__}: {exc}" if str(exc) else type(exc).__name__
        stack = "".join(traceback.format_exception(exc))[-8000:]
        attempts_made = job.attempts_made + 1
        final = isinstance(exc, UnrecoverableError) or attempts_made >= job.opts.attempts
        if not final:
            try:
                delay = retry_delay(job.opts.backoff, attempts_made, exc, job,
                                    self.backoff_strategies)
            except LookupError as lookup:
                reason, delay = f"{reason} (and {lookup})", None
            if delay is not None:
                self._push(job, "r", reason, stack, int(delay * 1000), job.opts.keep_failed)
                took = time.monotonic() - started
                log.info("queue %s job %s (%s) attempt %d failed after %.3fs: %s; retry in %.3fs",
                         self.queue_name, job.id, job.name, attempts_made, took, reason, delay,
                         extra=self._log_fields(job, took, "retrying"))
                return
        self._fail(job, reason, stack, final=True, started=started)

    def _fail(self, job: Job, reason: str, stack: str, *, final: bool, started: float) -> None:
        self._push(job, "f", reason, stack, 0, job.opts.keep_failed)
        self.jobs_failed += 1
        took = time.monotonic() - started
        log.warning("queue %s job %s (%s) attempt %d failed for good after %.3fs: %s",
                    self.queue_name, job.id, job.name, job.attempts_made + 1, took, reason,
                    extra=self._log_fields(job, took, "failed"))

    def _log_fields(self, job: Job, took: float, outcome: str) -> dict[str, Any]:
        """Fields for structured (e.g. JSON) log formatters; never payloads or secrets."""
        return {"queue": self.queue_name, "job_id": job.id, "job_name": job.name,
                "attempt": job.attempts_made + 1, "duration": round(took, 6),
                "outcome": outcome, "worker": self.name}

    def _push(self, job: Job, kind: str, value: Any, stack: str, delay_ms: int,
              keep: Keep) -> None:
        self._results.append((job.id, job.token, kind, value, stack, delay_ms, keep.count,
                              _age_ms(keep)))
        started = self._started_at.pop(job.id, None)
        if started is not None:
            self._observe("job_finished", job, _OUTCOMES.get(kind, kind), time.monotonic() - started)

    def _observe(self, method: str, job: Job, *args: Any) -> None:
        for observer in self.observers:
            try:
                getattr(observer, method)(self.queue_name, job, *args)
            except Exception:
                log.exception("queue %s: observer %r failed in %s", self.queue_name, observer,
                              method)

    # ----- leases, stalled jobs, retention ----------------------------------------------

    async def _pause(self, seconds: float) -> None:
        """Sleeps, but returns at once when the worker stops."""
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._stop.wait(), seconds)

    async def _renew_loop(self) -> None:
        while not self._stop.is_set():
            await self._pause(self.renew_interval)
            if not self._running:
                continue
            args: list[Any] = [self.keys.job_prefix, self.lock_ms]
            snapshot = list(self._running.values())
            for r in snapshot:
                args += [r.job.id, r.job.token or ""]
            try:
                lost, cancel = await scripts.run(self.redis, "extend", self.keys.vector, args)
            except Exception as exc:
                log.error("queue %s: lease renewal failed (%s: %s)", self.queue_name,
                          type(exc).__name__, exc)
                continue
            for raw in lost:
                log.warning("queue %s job %s: lease lost (expired or taken over)",
                            self.queue_name, raw.decode())
            for raw in cancel:
                self._cancel_local(raw.decode(), "cancelled")

    def _return_buffered(self, reason: str) -> None:
        """Hands back jobs fetched ahead but never started, without using an attempt."""
        while self._buffered:
            running = self._buffered.popleft()
            self._running.pop(running.job.id, None)
            self._push(running.job, "w", reason, "", 0, running.job.opts.keep_failed)
        self._wakeup.set()

    def _cancel_local(self, job_id: str, reason: str) -> None:
        running = self._running.get(job_id)
        if running and running.task is None:
            self._buffered.remove(running)
            self._running.pop(job_id, None)
            self._fail(running.job, reason, "", final=True, started=time.monotonic())
            self._wakeup.set()
        elif running and running.task and not running.task.done():
            running.cancel_reason = reason
            running.task.cancel()

    async def _maintenance_loop(self) -> None:
        last_sweep = 0.0
        while not self._stop.is_set():
            wait = self.stalled_interval
            try:
                await self.check_stalled()
                await scheduler.refill_due(self.queue)
                if self._next_lease_expiry is not None:
                    # Check again as soon as a lease can expire (never later than the
                    # interval), so a killed worker's job comes back a lease after its
                    # last renewal rather than up to a whole interval later.
                    wait = min(wait, max(0.05, self._next_lease_expiry + 0.01))
                if time.monotonic() - last_sweep >= self.sweep_interval:
                    last_sweep = time.monotonic()
                    await self.queue.sweep()
            except Exception as exc:
                log.error("queue %s: maintenance failed (%s: %s)", self.queue_name,
                          type(exc).__name__, exc)
            await self._pause(wait)

    async def check_stalled(self, batch: int = 1000) -> int:
        """Takes back jobs whose lease has expired; returns how many."""
        keep = self.queue._default_resolved.stored.keep_failed
        total = 0
        while True:
            n, next_deadline, now_ms = await scripts.run(
                self.redis, "stalled", self.keys.vector,
                [self.keys.job_prefix, self.max_stalled_count, batch, keep.count, _age_ms(keep)])
            total += int(n)
            self._next_lease_expiry = (None if int(next_deadline) < 0
                                       else (int(next_deadline) - int(now_ms)) / 1000.0)
            if int(n) < batch:
                if total:
                    log.warning("queue %s: took back %d job(s) whose lease expired", self.queue_name,
                                total)
                return total

    # ----- heartbeats, cancel requests, rate limits, eviction ---------------------------

    def _heartbeat_key(self) -> str:
        return f"{self.keys.base}:worker:{self.name}"

    async def _heartbeat_loop(self) -> None:
        while not self._stop.is_set():
            try:
                await self.heartbeat()
            except Exception as exc:
                log.warning("queue %s: heartbeat failed (%s: %s)", self.queue_name,
                            type(exc).__name__, exc)
            await self._pause(self.heartbeat_interval)

    async def heartbeat(self) -> None:
        """Publishes this worker's liveness; ``Queue.get_workers()`` lists the live ones."""
        now = time.time()
        ttl = max(1, int(self.heartbeat_interval * 3))
        info = WorkerInfo(
            name=self.name, host=socket.gethostname(), pid=os.getpid(), queues=[self.queue_name],
            started_at=self.started_at, last_seen=now, jobs_done=self.jobs_done,
            jobs_failed=self.jobs_failed, concurrency=self.concurrency,
            running=sorted(self._running),
        )
        async with self.redis.pipeline(transaction=False) as pipe:
            pipe.set(self._heartbeat_key(), msgspec.msgpack.encode(info), ex=ttl)
            pipe.zadd(self.keys.workers, {self.name: now})
            pipe.zremrangebyscore(self.keys.workers, "-inf", now - ttl)
            await pipe.execute()

    async def _remove_heartbeat(self) -> None:
        async with self.redis.pipeline(transaction=False) as pipe:
            pipe.delete(self._heartbeat_key())
            pipe.zrem(self.keys.workers, self.name)
            await pipe.execute()

    async def _subscribe_cancels(self) -> Any:
        """Subscribes before the first job is taken, so no cancel request can slip by."""
        pubsub = self._blocking.pubsub()
        try:
            await pubsub.subscribe(self.keys.meta + ":cancel")
        except Exception as exc:
            log.warning("queue %s: cannot subscribe to cancel requests yet (%s: %s)",
                        self.queue_name, type(exc).__name__, exc)
        return pubsub

    async def _cancel_listener(self, pubsub: Any) -> None:
        """Cancels running jobs as soon as ``Queue.cancel`` asks; a missed message is still
        caught by the next lease renewal, which reads the job's cancel flag."""
        while not self._stop.is_set():
            try:
                if not pubsub.subscribed:
                    await pubsub.subscribe(self.keys.meta + ":cancel")
                while not self._stop.is_set():
                    message = await pubsub.get_message(ignore_subscribe_messages=True, timeout=5.0)
                    if message and message.get("type") == "message":
                        self._cancel_local(message["data"].decode(), "cancelled")
            except asyncio.CancelledError:
                break
            except Exception as exc:
                if not self._stop.is_set():
                    log.warning("queue %s: cancel listener reconnecting (%s: %s)",
                                self.queue_name, type(exc).__name__, exc)
                await self._pause(1.0)
                with contextlib.suppress(Exception):
                    await asyncio.wait_for(pubsub.aclose(), 1.0)
                pubsub = self._blocking.pubsub()
        with contextlib.suppress(Exception):
            await asyncio.wait_for(pubsub.aclose(), 1.0)

    async def rate_limit(self, delay: float) -> None:
        """Stops every worker of the queue taking jobs for ``delay`` seconds (e.g. after an
        upstream 429). Raise ``RateLimited(delay)`` instead to also put the job back."""
        await self.queue.rate_limit(delay)

    async def _check_eviction_policy(self) -> None:
        try:
            reply = await self.redis.config_get("maxmemory-policy")
        except Exception:  # managed Redis may forbid CONFIG; nothing to check then
            return
        # Keys and values come back as str or bytes depending on the client's settings.
        values = {(k.decode() if isinstance(k, bytes) else str(k)):
                  (v.decode() if isinstance(v, bytes) else str(v)) for k, v in reply.items()}
        policy = values.get("maxmemory-policy")
        if policy is not None and policy != "noeviction":
            log.warning("Redis maxmemory-policy is %r, not 'noeviction': under memory pressure "
                        "Redis will silently evict jobs and leases. Set maxmemory-policy "
                        "noeviction on the queue's Redis.", policy)


class WorkerInfo(msgspec.Struct):
    """A live worker, as its heartbeat describes it."""

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
