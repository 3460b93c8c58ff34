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
import contextvars
import inspect
import logging
import math
import os
import socket
import time
import traceback
import uuid
from collections import deque
from collections.abc import Awaitable, Callable, Mapping, Sequence
from typing import Any, NamedTuple

import msgspec
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import RedisError
from redis.exceptions import TimeoutError as RedisTimeoutError

from . import codec, local_controls, scheduler, scripts, signals, telemetry
from .backoff import BackoffFailed, BackoffStrategy, check_strategies, retry_delay
from .batch import Batch
from .connection import check_client, check_pool_room, connect, resolve_url
from .errors import (
    Delayed,
    JobCorrupted,
    PayloadError,
    RateLimited,
    UnrecoverableError,
    WaitingChildren,
    failure_summary,
    wire_text,
)
from .job import Job
from .keys import DEFAULT_PREFIX, QueueKeys
from .link_monitor import LinkMonitor
from .observers import WorkerObserver
from .options import Keep, StoredOptions, decode_stored
from .pool import ProcessRunner
from .queue import Queue
from .redis_problems import url_of, wait_until_reachable
from .registry import Handler, Registry
from .sync_runner import ThreadRunner
from .unread_messages import UnreadMessages
from .worker_info import WorkerInfo

log = logging.getLogger("minique.worker")

JOB_FIELDS = 11  # per job in a fetch reply: see lua/includes/take.lua
# status, info, next_due, wake_id, now, global limit, control version, hold granted, the
# start time of the reply's active jobs (ms, by the Redis clock), the queue's held version
HEADER = 10
HEADER_STARTED_MS = 8  # the header's index of the active jobs' start time
PREFETCH_WORK = 0.005  # seconds of work a worker may hold per slot beyond what it runs
PREFETCH_MAX = 200  # jobs held ahead at most (see Worker._prefetch)
# Payload bytes held ahead at most: a reply carrying more takes longer to arrive than the
# hold (HOLD_TIME), which has run out when it lands, and its held jobs went back unstarted
# to be fetched again with the next call, over and over.
PREFETCH_BYTES = 1 << 20
REASON_MAX = 65536  # characters of a failure reason kept (head and tail)
CALL_VALUES_MAX = 32 * 1024 * 1024  # bytes of results' values one call carries (but one)
# How long a held job may wait for a runner (renewed by every reply while the queue's
# controls stay as they were). It bounds how long pause() and drain() wait for workers.
HOLD_TIME = 0.05
# The hold a call asks for when it gives way to jobs held elsewhere (lua/includes/take.lua):
# tell their holders to hand them back, or they were told already; and the status of a
# reply that gave way.
GIVE_WAY_TELL = -1
GIVE_WAY_TOLD = -2
GAVE_WAY = 3
# How long a take that gave way waits for a hand-back's wake-up before it asks again (s):
# a holder told while a reply was on its way to it hands back once that reply is in.
GIVE_WAY_SLICE = 0.02
# How much later than a worker's own due time Redis may find a delay due (s): the delay
# left rounded up to the ms, and finish.lua's 1 ms for its clock cut to the ms.
DUE_ROUNDING = 0.002
SLOW_CALL = 5.0  # seconds without an answer from Redis before the worker says so
# Results a runner lets the dispatcher report early (while half of the buffer is left) at
# least: fewer would buy overlap with calls too small to be worth their round trip.
EARLY_SEND = 16
CALL_ID_ARG = 9  # the index of the call id in a finish call's arguments (its ARGV[10])
RUNNER_SLICE = 0.01  # seconds a runner goes through jobs before yielding to the loop
_OUTCOMES = {"c": "completed", "C": "completed", "T": "completed", "f": "failed",
             "r": "retried", "w": "requeued", "d": "delayed", "h": "returned",
             "g": "group throttled"}
# What observers are told (minique.observers.Outcome: five values only): a job handed back
# unstarted at shutdown, or put back by GroupRateLimited, went back without an attempt.
_OBSERVED = {**_OUTCOMES, "h": "requeued", "g": "requeued"}
_SHORT_KINDS = frozenset("cCsSh")  # result kinds sent without a stack trace (T: its group)
EARLY_CANCELS_MAX = 1000  # cancels of unknown jobs remembered at most
EARLY_CANCEL_S = 10.0  # seconds an unknown job's cancel is worth checking
CANCEL_RETRY_MAX = 30.0  # seconds between the cancel listener's attempts at most
TRANSIENT = (RedisConnectionError, RedisTimeoutError, ConnectionError, TimeoutError, OSError)


def encode_results(results: list[tuple[Any, ...]], trust: str = "") -> list[Any]:
    """finish.lua's argument layout for results ``(id, token, kind, value, stack, delay_ms,
    keep_count, keep_age_ms, started_ms, counts)``: the distinct retention policies once,
    ``trust`` ("<held version>:<earliest take ms>" of the results of kind C, which
    lua/finish.lua may write without reading their jobs; "": none), then per job one
    "token:made:started|kind|delay|policy|started|id" string, the value, and the stack
    unless the kind is c, C, s, S or h. started_ms is "" except for jobs taken as held.
    counts is the job's ":<attempts made>:<attempts started>" as its take replied
    them (``Job._counts``; '' has Redis read them from the job: a hash field read each).
    The id (which may contain "|") comes last, so that Lua matches the string without
    backtracking."""
    policies: dict[tuple[int, int], int] = {}
    args: list[Any] = ["", trust]
    for (job_id, token, kind, value, stack, delay_ms, keep_count, keep_age, started,
         counts) in results:
        index = policies.setdefault((keep_count, keep_age), len(policies))
        args.append(f"{token}{counts}|{kind}|{delay_ms}|{index}|{started}|{job_id}")
        args.append(value)
        if kind not in _SHORT_KINDS:
            args.append(stack)
    args[0] = ",".join(f"{c}:{a}" for c, a in policies)
    return args


def split_finish_reply(reply: list[Any], n: int) -> tuple[list[Any], list[Any]]:
    """A finish call's reply (lua/finish.lua) as ``(statuses, take)``: the statuses of the
    call's ``n`` results (1 applied, 0 another owner's now, 2 gone), and the take's reply
    (``HEADER`` fields, then ``JOB_FIELDS`` per job). The script sends the statuses last;
    ``reply`` is cut in place."""
    if not n:
        return [], reply
    cut = len(reply) - n
    statuses = reply[cut:]
    del reply[cut:]
    return statuses, reply


# The worker whose runner runs the current job (pause() refuses to wait for itself).
_RUNNING_FOR: contextvars.ContextVar[Worker] = contextvars.ContextVar("minique_running_for")


def _ms_up(seconds: float) -> int:
    """Seconds to whole ms, rounded up (a delay is never cut short); 0 for none."""
    return max(0, math.ceil(seconds * 1000 - 1e-9))


def _age_ms(keep: Keep) -> int:
    return -1 if keep.age < 0 else int(keep.age * 1000)


def fetched_job(queue: Queue, f: list[Any], started_ms: bytes | int) -> tuple[Job, bool]:
    """The active Job of one job's ``JOB_FIELDS`` fields in a fetch reply
    (lua/includes/take.lua), started at ``started_ms`` (the reply header's start time of
    its active jobs), and whether its stored options could not be decoded (the job then
    has ``attempts=1`` and must fail at once: no attempt can go better)."""
    try:
        opts = decode_stored(f[4])
    except Exception:
        opts, bad_opts = StoredOptions(attempts=1), True
    else:
        bad_opts = False
    stalled = f[9]  # the stalled count, with "!" after it for a suspect job
    job = Job.taken(queue, f[0].decode(), f[2].decode(errors="replace"), f[3], opts,
                    int(f[8]), int(f[7]) / 1000.0, int(f[5]), int(f[6]),
                    int(stalled[:-1] if stalled.endswith(b"!") else stalled),
                    f[1].decode(), int(started_ms) / 1000.0, f[10].decode() if f[10] else None)
    return job, bad_opts


def failure_outcome(job: Job, exc: BaseException,
                    strategies: Mapping[str, BackoffStrategy]) -> tuple[str, str, float | None]:
    """What an attempt of ``job`` that raised ``exc`` becomes: (reason, stack trace, seconds
    until the next attempt, or None when it fails for good: ``UnrecoverableError``, no
    attempts left, or the backoff said so or failed, which the reason then tells)."""
    reason = failure_summary(exc)
    if len(reason) > REASON_MAX:  # its head names it, its tail often says why
        reason = f"{reason[:REASON_MAX // 2]} [...] {reason[-REASON_MAX // 2:]}"
    stack = wire_text("".join(traceback.format_exception(exc))[-8000:])
    attempts_made = job.attempts_made + 1
    if isinstance(exc, UnrecoverableError) or attempts_made >= job.opts.attempts:
        return reason, stack, None
    try:
        return reason, stack, retry_delay(job.opts.backoff, attempts_made, exc, job, strategies)
    except (LookupError, BackoffFailed) as lookup:
        return f"{reason} (and {lookup})", stack, None


class _Running:
    __slots__ = ("bad_opts", "batch", "cancel_reason", "cv", "held", "hv", "job",
                 "start_known", "started", "started_ms", "suspect", "taken_call", "taken_ms",
                 "task")

    def __init__(self, job: Job, bad_opts: bool = False, held: bool = False,
                 cv: bytes = b"", suspect: bool = False) -> None:
        self.job = job
        self.bad_opts = bad_opts
        self.task: asyncio.Task[None] | None = None  # the runner running it; None while buffered
        self.cancel_reason: str | None = None
        # Held: taken ahead of a free slot; Redis counts it as waiting until the worker
        # reports its start (with the next call, or with its result).
        self.held = held
        self.cv = cv  # the queue's control version when it was taken
        # The queue's held version when it was taken (b"": unknown), the Redis ms of its
        # take and the id of the call that took it: while the version is still in force,
        # its lease from the take still runs, the take is in the data's history and Redis
        # has had no start note for it, its completion is trusted (kind C).
        self.hv = b""
        self.taken_ms = 0
        self.taken_call = 0
        self.started = 0.0  # loop time it started at
        self.started_ms = 0  # the same, by the Redis clock (reported for held jobs)
        self.batch: _Gathering | None = None  # the batch it is part of (batch processors)
        # A dead holder's hold gave it back, maybe after it started there (it may kill its
        # worker at its start): held, it starts only once Redis knows of the start, which
        # start_known tells (True: the job is still this worker's).
        self.suspect = suspect
        self.start_known: asyncio.Future[bool] | None = None


# A batch being gathered is keyed by its processor and, for group="same", the jobs' group
# ("" for group="any": group ids are never empty).
_BatchKey = tuple[int, str | None]


class _Gathering:
    """A batch of a batch processor: its jobs (active in Redis, not yet given to the
    processor while ``called`` is False) and whether it must stop gathering now (``cut``:
    a control of the queue changed)."""

    __slots__ = ("call", "called", "cut", "members")

    def __init__(self, first: _Running) -> None:
        self.members = [first]
        self.called = False
        self.cut = False
        self.call: Batch | None = None  # what the processor was given, once called


# A finish call: its arguments, the results and start notes it carries, the jobs it asked
# for, the loop time it was first sent at, and the control changes known then.
_Call = tuple[list[Any], list[tuple[Any, ...]], list[_Running], int, float, int]


class _Incoming(NamedTuple):
    """A reply's jobs, not started yet (Worker._start_jobs): the reply's fields after its
    header, how many of them were taken for free slots (the rest are held), the control
    version it carries, whether it was stale, when its call was sent, and the worker's
    control count when it was handled."""

    body: list[Any]
    active_n: int
    cv: bytes
    stale: bool
    sent_at: float
    controls: int
    started_ms: bytes  # the start time of the active jobs (the reply header's)
    hv: bytes  # the queue's held version (the reply header's; b"": none, a re-sent call's)
    call: int  # the id of the call whose reply it is

    @property
    def jobs(self) -> int:
        return len(self.body) // JOB_FIELDS


async def write_heartbeat(redis: Any, keys: QueueKeys, info: WorkerInfo, ttl: int) -> None:
    """Publishes ``info`` for ``ttl`` seconds; ``Queue.get_workers()`` lists the live ones
    (the queue's worker set, pruned of those not seen for ``ttl`` seconds)."""
    async with redis.pipeline(transaction=False) as pipe:
        pipe.set(f"{keys.base}:worker:{info.name}", msgspec.msgpack.encode(info), ex=ttl)
        pipe.zadd(keys.workers, {info.name: info.last_seen})
        pipe.zremrangebyscore(keys.workers, "-inf", info.last_seen - ttl)
        await pipe.execute()


async def remove_heartbeat(redis: Any, keys: QueueKeys, name: str, ident: str) -> None:
    """Unlists a worker that stops, and forgets its last call's record (lua/finish.lua)."""
    async with redis.pipeline(transaction=False) as pipe:
        pipe.delete(f"{keys.base}:worker:{name}")
        pipe.zrem(keys.workers, name)
        pipe.hdel(f"{keys.base}:calls", ident)
        await pipe.execute()


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
        max_tasks_per_child: int | None = None,
        heartbeat_interval: float = 5.0,
        observers: Sequence[WorkerObserver] = (),
        prefetch: bool = True,
        fail_fast: bool | None = None,
        burst: bool = False,
        on_startup: Callable[[Worker], Awaitable[None]] | None = None,
        on_shutdown: Callable[[Worker], Awaitable[None]] | None = None,
    ) -> None:
        """``fail_fast``: if Redis cannot be reached when ``run()`` starts, raise
        ``RedisUnavailable`` instead of retrying with backoff (a wrong password or DB index
        raises it either way); by default only in burst mode. ``burst``: stop once nothing
        is waiting or due in the queue and nothing runs here (for scripts and CI, like RQ's
        and arq's burst mode; a script must not wait for ever on a Redis that is not
        there).

        ``on_startup(worker)`` and ``on_shutdown(worker)`` (arq's hooks): async functions
        that ``run()`` awaits before it takes its first job (Redis reachable by then) and
        after its last job has ended and been reported. They share ``worker.ctx``, a dict
        that every job this worker runs sees as ``job.ctx`` (a database pool, an HTTP
        client). An exception in ``on_startup`` ends ``run()`` with it before any job is
        taken; one in ``on_shutdown`` is logged.

        ``processes``: run sync processors in that many child processes (0: in threads);
        ``max_tasks_per_child`` (Celery's; None: no limit): a child exits after that many
        jobs and the next job starts a fresh one. ValueError without ``processes``."""
        for label, lifecycle_hook in (("on_startup", on_startup), ("on_shutdown", on_shutdown)):
            if lifecycle_hook is not None and not inspect.iscoroutinefunction(lifecycle_hook):
                raise TypeError(f"{label} must be an async function taking the worker, got "
                                f"{lifecycle_hook!r}")
        self.on_startup, self.on_shutdown = on_startup, on_shutdown
        self.ctx: dict[str, Any] = {}
        if isinstance(concurrency, bool) or not isinstance(concurrency, int) or concurrency < 1:
            raise ValueError(f"concurrency must be an integer >= 1, got {concurrency!r}")
        for label, value in (("lock_duration", lock_duration), ("stalled_interval", stalled_interval),
                             ("block_timeout", block_timeout), ("shutdown_timeout", shutdown_timeout),
                             ("sweep_interval", sweep_interval)):
            if value <= 0:
                raise ValueError(f"{label} must be > 0, got {value}")
        self.queue_name = queue_name
        if isinstance(processor, Registry) and queue_name not in processor.queues():
            # Every job of the queue would fail for good with "no processor": a typo in a
            # queue name must not eat the queue (the CLI refuses the same).
            served = ", ".join(map(repr, processor.queues())) or "none"
            raise ValueError(f"the registry has no processor for queue {queue_name!r}; it "
                             f"serves: {served}")
        self.registry = processor if isinstance(processor, Registry) else Registry.single(
            queue_name, processor)
        self.keys = QueueKeys(queue_name, prefix)
        # The hot scripts (finish, extend) get the meta key alone and derive the rest
        # (lua/includes/call.lua): each key sent costs the server about a small command.
        self._call_keys = (self.keys.meta,)
        self._own = connection is None
        self.redis: Any = (check_client(connection, f"Worker({queue_name!r})", url)
                           if connection is not None else connect(url))
        # The blocking wait gets its own connection, so it never delays a script call.
        self._blocking: Any = (connect(url, socket_timeout=block_timeout + 5.0)
                               if connection is None else connection)
        self.queue = Queue(queue_name, connection=self.redis, prefix=prefix,
                           default_job_options=default_job_options)
        # A batch processor's jobs each take a slot: room for one full batch at least.
        self._batch_size = self.registry.batch_size(queue_name)
        self.concurrency = max(concurrency, self._batch_size)
        self.lock_ms = int(lock_duration * 1000)
        self.renew_interval = lock_renew_time if lock_renew_time else lock_duration / 2
        self.stalled_interval = stalled_interval
        self.max_stalled_count = max_stalled_count
        self.shutdown_timeout = shutdown_timeout
        self.block_timeout = block_timeout
        self.sweep_interval = sweep_interval
        self.name = name or f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:6]}"
        # The identity this worker's jobs, leases and call records carry in Redis: unique
        # even when several workers are given one name (--name with --processes N).
        # (minique.worker_info.worker_label gives the name back.)
        self.ident = self.name if name is None else f"{name}#{uuid.uuid4().hex[:8]}"
        if backoff_strategies is None:
            # The registry's (worker_options), as `minique worker` takes them: an app's
            # own Worker(registry) and its tests then retry as its deployed workers do.
            backoff_strategies = self.registry.worker_options.get("backoff_strategies")
        self.backoff_strategies = check_strategies(backoff_strategies)
        if connection is not None:
            check_pool_room(connection, self.concurrency, f"Worker({queue_name!r})")
        self.lim_max, self.lim_window_ms = self._limiter(limiter)
        self.jobs_done = 0
        self.jobs_failed = 0
        self.jobs_retried = 0  # attempts that failed with attempts left (retried later)
        self._running: dict[str, _Running] = {}  # every job this worker holds, incl. buffered
        # Cancels heard for jobs this worker did not know (yet): the message can beat the
        # reply that hands the job over. Job id -> monotonic time heard.
        self._early_cancels: dict[str, float] = {}
        self._side_tasks: set[asyncio.Task[None]] = set()  # checks started from callbacks
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
        self._avg_bytes = 0.0  # the payloads' size, measured as _start sees them
        # The queue's limit as the last call saw it: its global concurrency, -1 for a global
        # rate limit alone, 0 for none (lua/includes/take.lua). No job is held under one.
        self._global_limit = 0
        self._results: list[tuple[Any, ...]] = []
        # Held jobs: runners start them only before _hold_until (loop time), the hold the
        # last reply granted; a control change (pause, drain, limits, priority) ends it.
        self._hold_until = 0.0
        # Jobs that go ahead and fall due later (_on_local_control: a prioritized job of this
        # process, a retry of its own), each [due, surely, job id or None] in loop time:
        # from `due` no held job starts until a reply brings the job (its id known) or a
        # call goes after `surely`, when Redis has surely found it due too (its due time
        # counts from the call that carried the result, with the rounding).
        self._aheads: list[list[Any]] = []
        self._due_ahead = math.inf  # the earliest of their due times
        # A control message on its way in, not read yet (minique/unread_messages.py):
        # checked before each held start; not again before _peek_after when the listener
        # could not catch up (a dead link reads as readable).
        self._unread = UnreadMessages()
        self._peek_after = 0.0
        # At most this many jobs held: a control change that sends held jobs back cuts it to
        # a quarter of what it sent back; each hold granted with no change meanwhile doubles
        # it again. Controls that come every few ms (priority adds from other processes)
        # would otherwise send back and take again a full prefetch each time.
        self._hold_cap = PREFETCH_MAX
        self._timed_results = 0  # results whose delay is still a due time (_push)
        self._hold_timer: asyncio.TimerHandle | None = None
        # The calls' round trip (s), a moving average: while it is above half a hold, held
        # jobs would come back with their hold run out, or nearly, so nothing is held.
        self._round_trip = 0.0
        self._cv: bytes | None = None  # the queue's control version, as the last reply saw it
        self._start_notes: dict[str, _Running] = {}  # held jobs started, start not yet sent
        self._held_started: dict[str, int] = {}  # id -> start (Redis ms) of jobs taken held
        self._clock_offset_ms = 0.0  # Redis clock minus loop clock, in ms (last reply)
        # Every finish call carries an id; a call that failed in transit is re-sent with the
        # same id and arguments, and Redis answers a re-send with the first answer.
        self._call_seq = 0
        # The held version of the last reply, and the held jobs whose completions wait to be
        # sent as trusted (kind C: lua/finish.lua): id -> (the held version it was taken
        # at, the Redis ms of its take, the id of the call that took it).
        self._hv = b""
        self._trusted: dict[str, tuple[bytes, int, int]] = {}
        self._unsent: _Call | None = None
        self._incoming: _Incoming | None = None
        self._in_call = False  # a finish call is out: Redis works while the runners do
        self._monitor = LinkMonitor(f"queue {queue_name}", self._probe)
        self._controls = 0  # control changes this worker learnt of (pub/sub, its own limit)
        # The control version a reply must carry for the control changes learnt of while
        # its call was out to be in it already (inf: one of them has no version, a local
        # one); reset once a reply is handled.
        self._control_need: float = 0
        self._wakeup = asyncio.Event()
        self._queue_empty = False
        self._limited_until = 0.0
        # Giving way to jobs held elsewhere (_give_way): until when this worker waits for
        # their hand-back; None while it is not waiting.
        self._giving_way_until: float | None = None
        # Its last take for free slots found nothing (or it has taken nothing yet): an idle
        # worker, which gives way even when it would hold (_give_way).
        self._starved = True
        self._peer_at = -math.inf  # when an idle taker last asked for held jobs (_on_peer)
        self._waiter: asyncio.Task[None] | None = None
        self._blocking_conn: Any = None
        self._due_timer: asyncio.TimerHandle | None = None
        self._closing = False
        self._paused = False  # pause(): this worker takes no jobs until resume()
        # pause() calls waiting for the jobs that ran when they were made to end.
        self._pause_waiters: list[tuple[list[_Running], asyncio.Event]] = []
        self._grace = shutdown_timeout  # close()'s grace (its timeout argument)
        # Loop time past which a closing worker stops trying to report its last results to
        # a Redis that does not answer (set once nothing runs here any more).
        self._report_by: float | None = None
        self._call_scope: asyncio.Timeout | None = None  # the finish call out, if any
        self._closed = asyncio.Event()
        self._stop = asyncio.Event()
        self._next_lease_expiry: float | None = None
        self._started = False
        self._threads = ThreadRunner(concurrency)
        self._background: list[asyncio.Task[None]] = []
        self._close_task: asyncio.Future[None] | None = None
        self.heartbeat_interval = heartbeat_interval
        # The maxmemory-policy last seen ("" before the first look; None: CONFIG is
        # forbidden, so it is not looked at again).
        self._policy_checked: str | None = ""
        # The largest return value a finish call may carry: minique's own bound, or the
        # server's proto-max-bulk-len if lower (read at start-up, see _read_value_limit).
        self._value_max = codec.MAX_VALUE_BYTES
        # Objects with job_started(queue, job) / job_finished(queue, job, outcome, seconds),
        # e.g. minique.metrics.WorkerMetrics; called on the event loop, errors only logged.
        self.observers: list[WorkerObserver] = list(observers)
        for observer in self.observers:
            for hook in ("job_started", "job_finished", "job_failed"):
                if inspect.iscoroutinefunction(getattr(observer, hook, None)):
                    # Called on the loop and never awaited, it would silently never run.
                    raise TypeError(f"observer {observer!r}: {hook} is an async function; "
                                    f"hooks are plain functions (hand slow work to a task or a "
                                    f"thread of your own)")
        self._started_at: dict[str, float] = {}
        self.started_at = time.time()
        if max_tasks_per_child is not None and (
                isinstance(max_tasks_per_child, bool) or not isinstance(max_tasks_per_child, int)
                or max_tasks_per_child < 1 or processes <= 0):
            raise ValueError("max_tasks_per_child must be an integer >= 1, with processes >= 1 "
                             f"(got {max_tasks_per_child!r} with processes={processes})")
        self._processes = (ProcessRunner(processes, max_tasks_per_child) if processes > 0
                           else None)
        # False: take jobs for free slots only, never hold ahead. Batch processors gather
        # what is taken for free slots; they hold nothing ahead.
        self.prefetch = prefetch and not self._batch_size
        # A job was buffered, a batch grew or must stop gathering (gathering batches wait on it).
        self._arrived = asyncio.Event()
        self._collecting: dict[_BatchKey, _Gathering] = {}  # the batches being gathered
        self.fail_fast = burst if fail_fast is None else fail_fast
        self.burst = burst
        self._url = resolve_url(url) if connection is None else url_of(connection)

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

    async def run(self, *, handle_signals: bool | None = None) -> None:
        """Processes jobs until ``close()``, or until SIGTERM/SIGINT, which close gracefully
        (a second signal exits at once).

        ``handle_signals``: None (the default) handles the signals when the worker runs in
        the main thread and nothing else has claimed SIGTERM, as arq does; workers of one
        event loop share the handler. False leaves signals to the application that embeds
        the worker; True always installs the handler (main thread only).
        """
        if self._started:
            raise RuntimeError("a Worker runs once; create a new one")
        self._started = True
        if handle_signals is None:
            handle_signals = signals.may_handle()
        if handle_signals:
            signals.join(self)
        if not await self._wait_for_redis():
            if handle_signals:
                signals.leave(self)
            return
        if self.on_startup is not None:
            started = False
            try:
                started = await self._run_startup()
            finally:
                if not started:
                    if handle_signals:
                        signals.leave(self)
                    if self._own:
                        await self.redis.aclose()
                        await self._blocking.aclose()
                    self._closed.set()
            if not started:
                return
        await self._check_eviction_policy()
        await self._read_value_limit()
        if getattr(self._blocking, "connection_pool", None) is None:
            await self._blocking.initialize()  # Redis Cluster: learn the slot map first
        pubsub = await self._subscribe_cancels()
        self._unread.watch(pubsub)
        # A Queue of this process that puts a job ahead tells this worker before its call
        # returns (minique/local_controls.py): its job may be the one that made the call.
        local_controls.listen(self.keys.base, self._on_local_control)
        self._background = [
            asyncio.create_task(self._renew_loop(), name="minique-renew"),
            asyncio.create_task(self._maintenance_loop(), name="minique-maintenance"),
            asyncio.create_task(self._heartbeat_loop(), name="minique-heartbeat"),
            asyncio.create_task(self._cancel_listener(pubsub), name="minique-cancel"),
            asyncio.create_task(self._monitor.run(self._stop), name="minique-link-monitor"),
        ]
        log.info("worker %s started on queue %s (concurrency %d)", self.name, self.queue_name,
                 self.concurrency)
        try:
            await self._dispatch_loop()
        finally:
            # Stopped without close() (run() cancelled, an error): no result can be reported
            # any more, so no job may start here now; a runner inside a job finishes it. The
            # jobs' leases and holds give them back. (After close() nothing is buffered.)
            self._buffered.clear()
            self._incoming = None
            # redis-py may turn a cancellation inside a command into a ConnectionError, which
            # a loop's error handler would swallow; the stop event ends the loops regardless.
            self._stop.set()
            local_controls.unlisten(self.keys.base, self._on_local_control)
            for idle in self._idle_runners:
                idle.cancel()  # a runner still inside a job is left to finish it
            for task in self._background:
                task.cancel()
            # Bounded: a read blocked inside the client must not hold up shutdown.
            await asyncio.wait(self._background, timeout=2.0)
            if self._due_timer is not None:
                self._due_timer.cancel()
            await self._stop_waiter()
            self._threads.shutdown()
            if self._processes:
                self._processes.shutdown()
            if self.on_shutdown is not None:
                try:
                    await self.on_shutdown(self)
                except Exception:
                    log.exception("worker %s: on_shutdown failed", self.name)
            with contextlib.suppress(Exception):
                async with asyncio.timeout(2.0):  # a Redis that does not answer
                    await self._remove_heartbeat()
            if self._own:
                await self.redis.aclose()
                await self._blocking.aclose()
            if handle_signals:
                signals.leave(self)
            self._closed.set()
            log.info("worker %s stopped (%d done, %d failed)", self.name, self.jobs_done,
                     self.jobs_failed)

    async def _run_startup(self) -> bool:
        """Awaits on_startup; False if close() (or a signal) came first and the hook did not
        end within the shutdown grace (it is cancelled then): a hung start-up must not hold
        up a shutdown. Its exception goes to run()."""
        assert self.on_startup is not None
        startup = asyncio.ensure_future(self.on_startup(self))
        while not startup.done() and not self._closing:
            await asyncio.wait({startup}, timeout=0.05)
        if not startup.done():
            await asyncio.wait({startup}, timeout=self._grace)
        if not startup.done():
            startup.cancel()
            await asyncio.wait({startup}, timeout=1.0)
            log.warning("worker %s: on_startup had not ended %.1fs after the shutdown "
                        "began; cancelled", self.name, self._grace)
            return False
        startup.result()  # its exception, if any
        return not self._closing

    async def _wait_for_redis(self) -> bool:
        """Start-up on a Redis that does not answer: one line per attempt, with backoff
        (minique/redis_problems.py), nothing else running yet. False if closed meanwhile."""
        reachable = False
        try:
            reachable = await wait_until_reachable(
                self.redis, self._url, fail_fast=self.fail_fast, log=log,
                what=f"worker {self.name} (queue {self.queue_name})", stopped=lambda: self._closing)
        finally:
            if not reachable:
                self._closed.set()
                if self._own:
                    await self.redis.aclose()
                    await self._blocking.aclose()
        return reachable

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

    async def pause(self, wait_active: bool = True) -> None:
        """Stops this worker taking jobs (BullMQ's ``worker.pause``); the queue and other
        workers go on. Jobs it fetched or holds ahead and has not started go back to their
        place in the queue at once, as do jobs of a call already on its way (the jobs it
        holds behave as waiting ones); batches being gathered run with what they have.
        Running jobs run on: with ``wait_active`` (the default) this returns once the jobs
        running when it was called have ended (a ``resume()`` meanwhile does not make it
        wait for later ones), otherwise at once. Leases stay renewed. Idempotent. From
        inside one of this worker's own jobs (or a task one made) ``wait_active=True`` would
        wait for itself: RuntimeError."""
        if wait_active and _RUNNING_FOR.get(None) is self:
            # (A context variable of its runners, which tasks made inside a job inherit:
            # asyncio.wait_for runs pause() in a task of its own on Python 3.11.)
            raise RuntimeError("pause() from one of this worker's jobs would wait for "
                               "itself: use pause(wait_active=False)")
        self._paused = True
        self._on_control("worker paused")
        # What is in _running now runs: the jobs not started went back just above.
        running = list(self._running.values())
        if wait_active and running:
            ended = asyncio.Event()
            self._pause_waiters.append((running, ended))
            await ended.wait()

    def resume(self) -> None:
        """Lets a paused worker take jobs again (BullMQ's ``worker.resume``)."""
        if self._paused:
            self._paused = False
            self._queue_empty = False
            self._wakeup.set()

    def is_paused(self) -> bool:
        """True between pause() and resume()."""
        return self._paused

    async def close(self, timeout: float | None = None) -> None:
        """Stops fetching; running jobs get ``timeout`` seconds (default shutdown_timeout),
        then are cancelled and put back to waiting without using an attempt. A sync
        processor running in a thread cannot be stopped: close() waits for it (the job keeps
        its lease) and records its real outcome; with ``processes=N`` its process is killed."""
        grace = self.shutdown_timeout if timeout is None else timeout
        self._grace = grace
        self._closing = True
        self._wakeup.set()
        self._arrived.set()  # batches being gathered stop and hand their jobs back
        if not self._started:
            return
        self._return_buffered("worker shut down")
        if self._executing:
            self._all_done = asyncio.Event()
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(grace):
                    await self._all_done.wait()
        for running in list(self._running.values()):
            if running.job.id in self._threads.busy:
                log.warning("queue %s job %s: still running in a thread after the %.1fs "
                            "shutdown grace; waiting for it (a second signal exits at once, "
                            "and the lease then returns the job)", self.queue_name,
                            running.job.id, grace)
            elif running.task and not running.task.done():
                running.cancel_reason = "shutdown"
                running.task.cancel()
        if not self._executing:
            self._arm_report_deadline()
        self._wakeup.set()
        await self._closed.wait()

    def _check_idle(self) -> None:
        """Called whenever a job stops executing here."""
        if self._pause_waiters:
            self._release_pause_waiters()
        if self._executing:
            return
        if self._all_done is not None:
            self._all_done.set()
        if self._closing:
            self._arm_report_deadline()

    def _release_pause_waiters(self) -> None:
        waiting = []
        for jobs, ended in self._pause_waiters:
            if any(self._running.get(r.job.id) is r for r in jobs):
                waiting.append((jobs, ended))
            else:
                ended.set()
        self._pause_waiters = waiting

    def _arm_report_deadline(self) -> None:
        """Closing, and nothing runs here any more: the results left get the grace again
        (at least 1 s) to reach Redis, the call out now included, not for ever: a Redis
        that is away or frozen would hold the shutdown up (see _give_up_reporting)."""
        if self._report_by is not None:
            return
        self._report_by = asyncio.get_running_loop().time() + max(self._grace, 1.0)
        scope = self._call_scope
        if scope is not None:
            when = scope.when()
            if when is None or when > self._report_by:
                scope.reschedule(self._report_by)

    # ----- the dispatcher ----------------------------------------------------------------

    async def _dispatch_loop(self) -> None:
        failures = 0
        while True:
            if self._closing:
                self._start_incoming()  # (they go back: _start)
            if self._closing and self._buffered:
                self._return_buffered("worker shut down")
            if (self._closing and not self._running and not self._results
                    and self._unsent is None):
                return
            if self._closing and not self._running:
                self._arm_report_deadline()
            if self._unsent is not None:
                self._start_incoming()
                call = self._unsent
            else:
                results = self._take_results()
                notes = self._take_start_notes(results)
                want, hold = (0, 0) if self._closing or self._paused else self._wanted()
                limited = self._limited_until > time.monotonic()
                if not results and not notes and (
                        want + hold == 0 or self._queue_empty or limited):
                    self._start_incoming()
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
                call = self._build_call(results, notes, want, hold)
            self._in_call = True
            try:
                if self._incoming is None:
                    reply = await self._send_call(call[0])
                else:
                    # The last reply's jobs are started while Redis works on this call:
                    # the call goes first (its task writes it in the next loop turn), so
                    # Redis does not wait while they are made into jobs.
                    sending = asyncio.ensure_future(self._send_call(call[0]))
                    try:
                        await asyncio.sleep(0)
                    except BaseException:
                        # The worker's run() was cancelled: nothing more starts here (the
                        # jobs' leases and holds give them back).
                        sending.cancel()
                        self._incoming = None
                        raise
                    self._start_incoming()
                    reply = await sending
            except (*TRANSIENT, RedisError) as exc:
                # The same call goes again, unchanged: if the first send ran, Redis knows
                # its id and answers with the first answer (lua/finish.lua).
                self._unsent = call
                failures += 1
                delay = min(5.0, 0.1 * 2 ** min(failures, 6))
                if self._report_by is not None:
                    left = self._report_by - asyncio.get_running_loop().time()
                    if left <= 0:
                        self._give_up_reporting(exc)
                        return
                    delay = min(delay, left)
                log.error("queue %s: Redis call failed (%s: %s); sending it again in %.1fs",
                          self.queue_name, type(exc).__name__, exc, delay)
                await asyncio.sleep(delay)
                continue
            finally:
                self._in_call = False
            if failures:
                log.warning("queue %s: Redis answers again", self.queue_name)
            failures = 0
            self._unsent = None
            self._handle_reply(call, reply)

    def _give_up_reporting(self, exc: BaseException) -> None:
        """Stops a closing worker whose last results Redis did not take within the grace.
        Nothing is lost: Redis still holds those jobs under this worker's leases (or
        holds), which run out, and the jobs run again elsewhere (at least once)."""
        pending = list(self._unsent[1] if self._unsent is not None else []) + self._results
        ids = [str(r[0]) for r in pending]
        shown = ", ".join(ids[:10]) + (f" and {len(ids) - 10} more" if len(ids) > 10 else "")
        log.error("queue %s: %d result(s) could not be reported within the shutdown grace "
                  "(%s: %s); stopping without them (job(s) %s): their leases will run out "
                  "and those jobs run again", self.queue_name, len(ids), type(exc).__name__,
                  str(exc) or "no answer", shown)
        self._unsent = None
        self._results = []
        self._timed_results = 0

    def _take_results(self) -> list[tuple[Any, ...]]:
        """The waiting results, in order, up to CALL_VALUES_MAX bytes of values (at least
        one): Redis closes a link whose request outgrows its query buffer (1 GB by
        default), and the same call would then be sent again and again."""
        results = self._results
        size = 0
        for i, r in enumerate(results):
            size += len(r[3]) + len(r[4])
            if size > CALL_VALUES_MAX and i > 0:
                self._results = results[i:]
                return results[:i]
        self._results = []
        return results

    def _build_call(self, results: list[tuple[Any, ...]], notes: list[_Running], want: int,
                    hold: int) -> _Call:
        self._call_seq += 1
        if self._timed_results:
            now = asyncio.get_running_loop().time()
            for i, result in enumerate(results):
                if type(result[5]) is float:  # a due time (_push): the delay left now
                    # Rounded up: never early (finish.lua adds 1 ms for its own clock). At
                    # least 1 ms: a delay of 0 means "at once, to the head of the line"
                    # (Delayed(0)); one that has run out means "due now", at the end.
                    delay_ms = max(1, _ms_up(result[5] - now))
                    results[i] = (*result[:5], delay_ms, *result[6:])
                    self._timed_results -= 1
                    for ahead in self._aheads:
                        if ahead[2] == result[0]:
                            # Redis counts its delay from this call (maybe sent later than
                            # the worker's own due time), rounded.
                            ahead[1] = max(ahead[1], now + delay_ms / 1000.0 + DUE_ROUNDING)
        hold = self._give_way(want, hold)
        hold_ms = int(HOLD_TIME * 1000) if (hold > 0 or self._holding()) else 0
        for running in notes:
            # S: a suspect job's start, asked before it runs (a removal meanwhile wins).
            kind = "S" if running.start_known is not None else "s"
            results.append((running.job.id, running.job.token, kind, "", "", 0, 0, -1,
                            running.started_ms, running.job._counts))
        trust = self._trust(results) if self._trusted else ""
        args: list[Any] = [self.keys.job_prefix, want, self.lock_ms, self.ident, self.lim_max,
                           self.lim_window_ms, 1000, hold, hold_ms, self._call_seq, len(results),
                           *encode_results(results, trust)]
        return args, results, notes, want, asyncio.get_running_loop().time(), self._controls

    def _trust(self, results: list[tuple[Any, ...]]) -> str:
        """What the call says of its trusted completions ("<held version>:<earliest take
        ms>:<earliest take's call id>", or "" for none): those taken at the held version of
        the last reply stay C (or T), the others become plain c (lua/finish.lua reads
        their jobs)."""
        hv, earliest, first_call = self._hv, 0, 0
        for i, result in enumerate(results):
            if result[2] != "C" and result[2] != "T":
                continue
            taken_hv, taken_ms, taken_call = self._trusted.pop(result[0], (b"", 0, 0))
            if taken_hv != hv or not hv or not taken_call:
                results[i] = (result[0], result[1], "c", *result[3:])
                continue
            if not earliest or taken_ms < earliest:
                earliest = taken_ms
            if not first_call or taken_call < first_call:
                first_call = taken_call
        return f"{hv.decode()}:{earliest}:{first_call}" if earliest else ""

    async def _send_call(self, args: list[Any]) -> Any:
        """One finish call. A call Redis leaves unanswered is aborted by the link monitor
        once Redis answers again (it is then re-sent): the socket timeout alone could keep
        the worker waiting on a dead connection long after the link healed."""
        loop = asyncio.get_running_loop()
        try:
            # Closing: bounded by the time left to report (see _dispatch_loop).
            async with asyncio.timeout_at(self._report_by) as scope:
                self._call_scope = scope
                self._monitor.begin("finish call", lambda: scope.reschedule(loop.time()))
                return await scripts.run(self.redis, "finish", self._call_keys, args)
        finally:
            self._call_scope = None
            self._monitor.end("finish call")

    def _wanted(self) -> tuple[int, int]:
        """(jobs to take for free slots, jobs to take as held). Never negative.

        A slot counts as free only when nothing is buffered for it, held jobs included: a
        job taken as active for a slot that a runner then fills with a held job would sit
        "active" in Redis without running."""
        held = sum(1 for r in self._buffered if r.held)
        free = self.concurrency - self._executing - len(self._buffered)
        if self._incoming is not None:  # a reply's jobs not started yet (_start_incoming)
            free -= self._incoming.jobs
            held += self._incoming.jobs - self._incoming.active_n
        return max(0, free), max(0, self._prefetch() - held)

    def _holding(self) -> bool:
        incoming = self._incoming
        return (any(r.held for r in self._buffered)
                or (incoming is not None and incoming.jobs > incoming.active_n))

    def _give_way(self, want: int, hold: int) -> int:
        """The hold a call asks for: ``hold``, or GIVE_WAY_TELL / GIVE_WAY_TOLD when this
        worker is idle (its last take found nothing, or it has taken nothing yet), holds
        nothing and takes for free slots: one at a time, it would get the jobs other
        workers hold (they are waiting, to everyone else). Redis then has their holders
        hand them back first (lua/includes/take.lua, status 3). A busy worker (its takes
        find jobs) does not ask, with prefetch or without: asking at every take would keep
        sending the holders' jobs back, and turn holding off for everyone."""
        if not want or self._holding() or not self._starved:
            return hold
        if self._giving_way_until is None:
            return GIVE_WAY_TELL
        if asyncio.get_running_loop().time() < self._giving_way_until:
            return GIVE_WAY_TOLD
        return 0  # waited long enough (a frozen holder): take what is there

    def _take_start_notes(self, results: list[tuple[Any, ...]]) -> list[_Running]:
        """Held jobs that started since the last call and whose result is not in this one
        (a result carries its job's start itself)."""
        if not self._start_notes:
            return []
        if results:
            for result in results:
                self._start_notes.pop(result[0], None)
        notes = list(self._start_notes.values())
        self._start_notes.clear()
        return notes

    def _handle_reply(self, call: _Call, reply: list[Any]) -> None:
        _args, results, notes, want, sent_at, controls = call
        n = len(results)
        statuses, reply = split_finish_reply(reply, n)
        for result, status in zip(results, statuses, strict=True):
            kind = result[2]
            if status == 1 or kind == "h":
                continue
            if kind in ("s", "S"):
                continue  # a held job that was drained or removed: its result will say so
            if status == 2:
                log.info("queue %s job %s: removed while this worker had it; its result (%s) "
                         "was dropped", self.queue_name, result[0], _OUTCOMES.get(kind, kind))
            else:
                log.error("queue %s job %s: lease lost before the result was saved; another "
                          "worker owns the job now, so this result (%s) was discarded",
                          self.queue_name, result[0], kind)
        for running, status in zip(notes, statuses[n - len(notes):], strict=True):
            if status == 1:
                running.held = False
            if running.start_known is not None and not running.start_known.done():
                running.start_known.set_result(status == 1)
        (status, info, next_due, wake_id, now_ms, global_limit, cv,
         hold_granted, started_ms, hv) = reply[:HEADER]
        self._hv = hv
        loop = asyncio.get_running_loop()
        if self._aheads:
            self._settle_aheads(sent_at, reply[HEADER:])
        # Over a slow link (a Redis far away, a stalled network) every held job would come
        # with its hold run out, or nearly: each call would take jobs only for the next to
        # hand them back. _prefetch holds nothing while the average is above half a hold;
        # one slow call among fast ones (a pause of this process) does not get it there.
        took = loop.time() - sent_at
        self._round_trip = took if not self._round_trip else self._round_trip * 0.8 + took * 0.2
        self._clock_offset_ms = int(now_ms) - loop.time() * 1000.0
        self._global_limit = int(global_limit)
        if cv != self._cv:
            # A control changed since the jobs held now were taken: they go back, and
            # batches being gathered run now (in case the control message was missed).
            if self._cv is not None:
                self._cut_gathering()
            self._cv = cv
            self._return_held()
        # A control changed while the call was out, and the reply may predate it.
        stale = controls != self._controls and int(cv) < self._control_need
        self._control_need = 0
        if int(status) == GAVE_WAY:
            # Jobs held elsewhere are ahead: their holders hand them back (a wake-up
            # each), and the next call takes them, as one taken at a time would be.
            if self._giving_way_until is None:
                self._giving_way_until = sent_at + int(info) / 1000.0
            wait = max(0.001, min(GIVE_WAY_SLICE, self._giving_way_until - loop.time()))
            self._queue_empty = True
            self._schedule_due(wait)  # no wake-up: ask again (a frozen holder: without them)
            if self._waiter is None or self._waiter.done():
                self._waiter = asyncio.create_task(self._wait_for_work(wake_id, True, wait))
            return
        self._giving_way_until = None
        if int(status) == 1:
            self._cut_gathering()  # paused: nothing more will come
        if int(status) != 0 or stale:
            self._return_held(everything=True)  # paused or rate limited: nothing starts
        elif self._global_limit:
            self._return_held()
        elif int(hold_granted):
            # Redis granted until its own now + the ms it says (HOLD_TIME, or less when a
            # job that goes ahead falls due sooner: take.lua); the call left no later than
            # sent_at, so sent_at + that ends no later than the grant.
            self._hold_until = sent_at + min(HOLD_TIME, int(hold_granted) / 1000.0)
            self._hold_cap = min(PREFETCH_MAX, self._hold_cap * 2)
            self._arm_hold_timer()
        body = reply[HEADER:]
        active_n = int(info) if int(status) == 0 else 0
        if body:
            incoming = _Incoming(body, active_n, cv, stale, sent_at, self._controls,
                                 started_ms, hv, _args[CALL_ID_ARG])
            if self._results and not stale and int(status) == 0:
                # Results are waiting: the next call goes before these jobs are started
                # (_dispatch_loop). Until then they count as buffered (_wanted).
                self._incoming = incoming
            else:
                self._start_jobs(incoming)
            self._queue_empty = False
            self._starved = False
            return
        if want + max(0, int(_args[7])) == 0:  # (a negative hold: it gave way)
            return  # nothing was asked for: that says nothing about the queue
        if want:
            self._starved = True
        if int(status) == 2:
            self._limited_until = time.monotonic() + int(info) / 1000.0
            return
        self._queue_empty = True
        if self.burst and not self._running and not self._results and not self._closing and (
                int(next_due) < 0 or int(next_due) > int(now_ms)):
            # Burst mode: nothing waiting (or the queue is paused), nothing due, nothing
            # running or left to report here. Jobs delayed into the future stay for others.
            log.info("queue %s: burst worker %s is done (%s)", self.queue_name, self.name,
                     "queue paused" if int(status) == 1 else "nothing waiting or due")
            self._closing = True
            self._wakeup.set()
            return
        if int(status) == 0 and int(next_due) >= 0:
            self._schedule_due((int(next_due) - int(now_ms)) / 1000.0)
        if self._waiter is None or self._waiter.done():
            self._waiter = asyncio.create_task(
                self._wait_for_work(wake_id, int(status) == 1, self.block_timeout))

    def _start_jobs(self, incoming: _Incoming) -> None:
        """Makes a reply's jobs buffered jobs. A control that changed since the reply was
        handled (pause, a removal, a higher-priority job: _on_control) sends them all back,
        as it would have had they been buffered then."""
        body = incoming.body
        back = incoming.stale or incoming.controls != self._controls
        for i in range(0, len(body), JOB_FIELDS):
            self._start(body[i:i + JOB_FIELDS], incoming.started_ms,
                        held=i // JOB_FIELDS >= incoming.active_n, cv=incoming.cv, back=back,
                        hv=incoming.hv, call=incoming.call)
        if self._peer_at >= incoming.sent_at:
            self._return_held()  # held before an idle taker asked for them (_on_peer)

    def _start_incoming(self) -> None:
        """Starts the jobs of the last reply that _handle_reply left for after the next
        call was sent, if any."""
        incoming = self._incoming
        if incoming is not None:
            self._incoming = None
            self._start_jobs(incoming)

    # ----- held jobs ---------------------------------------------------------------------

    def _arm_hold_timer(self) -> None:
        if self._hold_timer is None:
            self._hold_timer = asyncio.get_running_loop().call_at(self._hold_until,
                                                                  self._on_hold_timer)

    def _on_hold_timer(self) -> None:
        self._hold_timer = None
        loop = asyncio.get_running_loop()
        if loop.time() >= self._hold_until:
            # Nothing renewed the hold (no reply since: the slots are busy with long jobs):
            # what is held goes back, for an idle worker elsewhere to take.
            self._return_held()
        elif self._holding():
            self._hold_timer = loop.call_at(self._hold_until, self._on_hold_timer)

    def _return_held(self, everything: bool = False) -> None:
        """Hands back every held job that has not started (with ``everything``, every job
        not started, held or not): at its old place in the queue, no attempt used."""
        if not self._buffered:
            return
        kept: deque[_Running] = deque()
        returned = False
        for running in self._buffered:
            if running.held or everything:
                self._running.pop(running.job.id, None)
                self._push(running.job, "h", "", "", 0, running.job.opts.keep_failed)
                returned = True
            else:
                kept.append(running)
        if returned:
            self._buffered = kept
            self._wakeup.set()

    def _settle_aheads(self, sent_at: float, body: list[Any]) -> None:
        """Drops the jobs that go ahead that a call sent at ``sent_at`` promoted and took:
        its reply brings the job, or the call went when Redis had surely found it due (up
        to DUE_ROUNDING later than this worker; a job taken by another worker, or removed,
        never comes). Taken as held, such a job must start, not go back. A reply that
        brings the job settles it however early its call went: on a loaded machine a call
        sent before the due time here may run in Redis after it (and then the job went
        back with the held jobs the due time stopped, behind jobs taken after it)."""
        ids = {body[i].decode() for i in range(0, len(body), JOB_FIELDS)}
        self._aheads = [a for a in self._aheads if not (sent_at >= a[1] or a[2] in ids)]
        self._due_ahead = min((a[0] for a in self._aheads), default=math.inf)

    def _on_local_control(self, what: str, delay: float, job_id: str | None = None) -> None:
        """A Queue of this process put a job ahead (minique/local_controls.py): now, or
        once ``delay`` s have passed (a prioritized job falling due). From then on no held
        job starts until a call sent after that time has been answered: that call promotes
        the job and takes it first, as a worker taking one job at a time would."""
        if delay <= 0:
            self._on_control(what)
            return
        if delay > HOLD_TIME:
            # Nothing to remember: a hold granted before the job was put ahead ends sooner
            # (it lasts at most HOLD_TIME from its call), and Redis grants none past its due
            # time from then on (take.lua). Kept, such entries (a job delayed by an hour)
            # piled up until their due times, and every reply went through them.
            return
        at = asyncio.get_running_loop().time() + delay
        self._aheads.append([at, at + DUE_ROUNDING, job_id])
        self._due_ahead = min(self._due_ahead, at)

    def _on_due_ahead(self, message: bytes) -> None:
        """Another process made a job that goes ahead of held ones fall due later
        (``due|<ms from now>|<job id>``, lua/includes/base.lua enqueue_delayed and
        change_priority.lua: a delayed job with a priority or LIFO, a delayed job given
        one): from its due time on no held job starts until a call of this worker's has
        taken it, as for this process's own (_on_local_control). A reply to a call sent
        after the add would say so too, but a loaded machine sends its next call late. A
        message in another shape is ignored."""
        parts = message.decode(errors="replace").split("|", 2)
        if len(parts) == 3 and parts[1].isdigit():
            self._on_local_control("priority", int(parts[1]) / 1000.0, parts[2])

    def _on_peer(self) -> None:
        """An idle taker elsewhere found jobs held here ahead of what it would take
        (lua/includes/take.lua, giving way): they go back now, for it. The jobs taken for
        free slots stay: one at a time, they would be this worker's."""
        # A reply on its way may bring more, granted before the taker asked: they go back
        # too (_handle_reply).
        self._peer_at = asyncio.get_running_loop().time()
        held = sum(1 for r in self._buffered if r.held)
        if not held:
            return
        self._hold_until = 0.0
        self._hold_cap = max(1, held // 4)
        self._return_held()

    def _control_seen(self, version: str) -> bool:
        """Whether a reply handled here carried control version ``version`` or a later one
        (lua/includes/base.lua control_changed)."""
        return (version.isdigit() and self._cv is not None and self._cv.isdigit()
                and int(self._cv) >= int(version))

    def _on_control(self, what: str, version: float = math.inf) -> None:
        """A control of the queue changed (pause, drain, rate limit, global concurrency, a
        higher-priority job, a removal): held jobs stop starting now and go back, and so do
        the jobs of a reply to a call sent before this unless it carries control version
        ``version`` (see _handle_reply)."""
        self._controls += 1
        self._control_need = max(self._control_need, version)
        self._hold_until = 0.0
        held = sum(1 for r in self._buffered if r.held)
        if held:
            self._hold_cap = max(1, held // 4)
        self._return_held(everything=True)
        self._cut_gathering()

    def _cut_gathering(self) -> None:
        """Batches being gathered stop gathering and run now: their jobs were taken for
        free slots before a control changed, like jobs a runner has started."""
        if self._collecting:
            for gathering in self._collecting.values():
                gathering.cut = True
            self._arrived.set()

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
            self._monitor.begin("blocking wait", self._cut_wait, grace=timeout + 1.0)
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
            self._monitor.end("blocking wait")
            self._blocking_conn = None
            if conn is not None:
                await release(conn)
            self._queue_empty = False
            self._wakeup.set()

    def _cut_wait(self) -> None:
        """Aborts a blocking wait stuck on a dead connection (the link monitor saw Redis
        answer on another): the read is cancelled (redis-py then drops the connection) and
        the dispatcher asks again."""
        if self._waiter is not None and not self._waiter.done():
            self._waiter.cancel()

    async def _probe(self) -> None:
        """PING on a fresh connection (not one a stuck call holds), for the link monitor."""
        pool = getattr(self.redis, "connection_pool", None)
        if pool is None:  # Redis Cluster: the node that holds the queue
            await self.redis.get_node_from_key(self.keys.meta).execute_command("PING")
            return
        conn = pool.make_connection()
        try:
            await conn.connect()
            await conn.send_command("PING")
            await conn.read_response(timeout=2.0)
        finally:
            await conn.disconnect(nowait=True)

    # ----- running one job ---------------------------------------------------------------

    def _start(self, f: list[Any], started_ms: bytes, held: bool = False, cv: bytes = b"",
               back: bool = False, hv: bytes = b"", call: int = 0) -> None:
        job, bad_opts = fetched_job(self.queue, f, started_ms)
        job_id = job.id
        job.ctx = self.ctx
        running = _Running(job, bad_opts, held, cv, suspect=held and f[9].endswith(b"!"))
        if held:
            running.hv, running.taken_ms, running.taken_call = hv, int(started_ms), call
        size = len(f[3]) if f[3] else 0
        # Up at once, down slowly: one big payload shrinks what is held at the next call.
        self._avg_bytes = max(float(size), self._avg_bytes * 0.9 + size * 0.1)
        if back or self._closing or (
                held and asyncio.get_running_loop().time() >= self._hold_until):
            # Fetched by a call that was in flight when close() began or a control changed,
            # or held without a hold to start it in: hand it straight back.
            self._push(job, "h", "", "", 0, job.opts.keep_failed)
            return
        self._running[job_id] = running
        self._buffered.append(running)
        self._arrived.set()
        self._rouse()
        if self._early_cancels.pop(job_id, None) is not None:
            # Kept until done: the loop holds only a weak reference to a task.
            check = asyncio.get_running_loop().create_task(self._check_early_cancel(job))
            self._side_tasks.add(check)
            check.add_done_callback(self._side_tasks.discard)

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
        if (not self.prefetch or self.lim_max or self._global_limit or avg is None
                or avg > PREFETCH_WORK):
            return 0
        if self._round_trip > HOLD_TIME / 2:
            return 0  # round trips outlast the hold (_handle_reply)
        # A slot whose job has run past the budget may stay busy for long: nothing is held
        # for it, so held jobs never wait behind a long job.
        slots = self.concurrency
        if self._executing:
            now = asyncio.get_running_loop().time()
            for r in self._running.values():
                if r.task is not None and now - r.started > 2 * PREFETCH_WORK:
                    slots -= 1
        if slots <= 0:
            return 0
        per_slot = PREFETCH_WORK / max(avg, 1e-6)
        n = int(min(PREFETCH_MAX, max(slots, slots * per_slot)))
        # Big payloads: no more than PREFETCH_BYTES of them held (none past that size).
        return min(n, int(PREFETCH_BYTES / max(self._avg_bytes, 1.0)), self._hold_cap)

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
        _RUNNING_FOR.set(self)  # this runner's context alone (a task runs in a copy)
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
                if (running.held and loop.time() >= self._peek_after
                        and self._unread.pending()):
                    # A control message has arrived: the listener reads it before this
                    # held job may start (it may send the job back), as a fetch would.
                    self._buffered.appendleft(running)
                    await self._catch_up_controls()
                    streak = loop.time()
                    continue
                if running.held and loop.time() >= min(self._hold_until, self._due_ahead):
                    # Its hold ran out or a control ended it: it goes back, not ahead.
                    self._buffered.appendleft(running)
                    self._return_held()
                    continue
                self._rouse()  # should this job suspend, another runner takes the next one
                await self._execute(running, task)
                if (not self._in_call and len(self._results) >= EARLY_SEND
                        and len(self._results) >= len(self._buffered)):
                    # Half of what was buffered is done and no call is out: let the
                    # dispatcher report it and fetch more now, so Redis works on that call
                    # while the runners go through the other half, instead of the two
                    # taking turns with one waiting on the other.
                    await asyncio.sleep(0)
                    streak = loop.time()
                elif loop.time() - streak > RUNNER_SLICE:
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

    async def _catch_up_controls(self) -> None:
        """Gives the loop turns until the pub/sub listener has read what reached its
        connection (at most 20); if it has not by then, held starts stop peeking for 10 ms."""
        for _ in range(20):
            await asyncio.sleep(0)
            if not self._unread.pending():
                return
        self._peek_after = asyncio.get_running_loop().time() + 0.01

    def _turn_paid(self) -> None:
        # Scheduled while the loop runs its ready callbacks, so it runs in the next pass,
        # after the loop has polled for I/O and fired its timers.
        self._owe_turn = False

    async def _execute(self, running: _Running, task: asyncio.Task[None]) -> None:
        job = running.job
        self._executing += 1
        running.task = task
        running.started = asyncio.get_running_loop().time()
        if running.held:
            # Redis learns of the start with the next call (or with the result).
            running.started_ms = int(running.started * 1000.0 + self._clock_offset_ms)
            job.processed_on = running.started_ms / 1000.0
            self._held_started[job.id] = running.started_ms
            self._start_notes[job.id] = running
            self._wakeup.set()
        if self.observers:
            self._started_at[job.id] = time.monotonic()
            self._observe("job_started", job)
        handler = self.registry.resolve(self.queue_name, job.name)
        if running.held and running.suspect and (handler is None or handler.batch is None):
            # Its start note (sent by the dispatcher now, with the results waiting) must
            # be answered before it runs: if it kills this worker at its start, Redis knows
            # it started, and the results of the jobs before it are saved (_process).
            running.start_known = asyncio.get_running_loop().create_future()
        if handler is not None and handler.batch is not None and not running.bad_opts:
            key = self._batch_key(handler, job)
            gathering = self._collecting.get(key)
            if gathering is not None and len(gathering.members) < handler.batch.size:
                gathering.members.append(running)  # joins the batch another runner gathers
                running.batch = gathering
                if len(gathering.members) == handler.batch.size:
                    # Full: no longer gathered, though its gatherer wakes only later. A job
                    # of the same key that comes meanwhile (this runner's next, in this
                    # loop turn) begins the next batch (break round 24).
                    del self._collecting[key]
                self._arrived.set()
                return
            await self._run_batch(running, handler, key, task)
        else:
            await self._process(running, handler, running.bad_opts)
        # A cancel meant this job (cancel(), shutdown) was handled by _process; the runner
        # goes on, so its cancellation count must not leak into the next job.
        while task.cancelling():
            task.uncancel()

    def _expiry(self, job: Job, running: _Running) -> str:
        """The failure reason if this attempt starts past the job's ``expires`` (seconds
        from its add, both times on Redis's clock), else ''."""
        expires = job.opts.expires
        assert expires is not None
        if job.attempts_started - 1 > job.attempts_made:
            # An earlier run started (in time) and ended as no attempt (WaitingChildren,
            # Delayed, a rate limit, a stall): this run goes on with it.
            return ""
        start_ms = running.started * 1000.0 + self._clock_offset_ms
        if start_ms <= job.timestamp * 1000.0 + expires * 1000.0:
            return ""
        return f"expired: not started within {expires:g}s of being added"

    @staticmethod
    def _batch_key(handler: Handler, job: Job) -> _BatchKey:
        assert handler.batch is not None
        return id(handler), (job.group if handler.batch.group == "same" else "")

    def _pull_batch_jobs(self, handler: Handler, key: _BatchKey, gathering: _Gathering,
                         size: int, task: asyncio.Task[None]) -> None:
        """Moves buffered jobs of ``handler`` (and, for group="same", of the batch's group)
        into the batch being gathered."""
        if not self._buffered:
            return
        kept: deque[_Running] = deque()
        now = asyncio.get_running_loop().time()
        members = gathering.members
        group = key[1]
        any_group = group == ""  # group="any" (see _batch_key)
        for r in self._buffered:
            if (len(members) < size and not r.held and not r.bad_opts
                    and (any_group or r.job.group == group)
                    and self.registry.resolve(self.queue_name, r.job.name) is handler):
                self._executing += 1
                r.task, r.started, r.batch = task, now, gathering
                members.append(r)
                if self.observers:
                    self._started_at[r.job.id] = time.monotonic()
                    self._observe("job_started", r.job)
            else:
                kept.append(r)
        self._buffered = kept

    def _gathering_stuck(self) -> bool:
        """True when every slot of the worker holds a job of a batch being gathered: no
        job can be taken, so waiting out the timeout cannot make any batch larger. (Jobs
        still buffered are placed first: each may start a batch, and it is asked again.)"""
        if self._buffered or self._executing < self.concurrency:
            return False
        return self._executing == sum(len(g.members) for g in self._collecting.values()
                                      if not g.called)

    async def _run_batch(self, first: _Running, handler: Handler, key: _BatchKey,
                         task: asyncio.Task[None]) -> None:
        """Gathers up to the batch size (or what came within the timeout) and calls the
        batch processor once; each job then gets its own result (minique/batch.py).

        Gathering stops early when a control of the queue changes (the jobs run at once,
        as started jobs do) or when every slot holds a gathered job; at shutdown the
        gathered jobs go back unstarted, without using an attempt (kind 'h')."""
        assert handler.batch is not None
        loop = asyncio.get_running_loop()
        size = handler.batch.size
        gathering = _Gathering(first)
        first.batch = gathering
        members = gathering.members
        deadline = loop.time() + handler.batch.timeout
        self._collecting[key] = gathering
        self._arrived.set()  # a batch more: others may now see every slot taken
        try:
            self._pull_batch_jobs(handler, key, gathering, size, task)
            while (len(members) < size and not self._closing and not gathering.cut
                   and loop.time() < deadline):
                if self._gathering_stuck():
                    # Every batch being gathered runs now (not this one alone: the slot it
                    # frees would let the others wait on for jobs no slot could take).
                    self._cut_gathering()
                    break
                self._arrived.clear()
                self._wakeup.set()  # the dispatcher takes jobs for the slots still free
                with contextlib.suppress(TimeoutError):
                    async with asyncio.timeout(deadline - loop.time()):
                        await self._arrived.wait()
                self._pull_batch_jobs(handler, key, gathering, size, task)
        except asyncio.CancelledError:
            pass  # not expected while gathering (cancels reach members one by one)
        except Exception:
            # A fault of the gathering itself must not strand what it gathered: those jobs
            # are this worker's (leases renewed), and only the call below ends them.
            log.exception("queue %s: gathering a batch failed; its %d job(s) run as gathered",
                          self.queue_name, len(members))
        finally:
            # Its own entry only: once full it left (_execute), and the next batch of the
            # key may be gathering under the same key.
            if self._collecting.get(key) is gathering:
                del self._collecting[key]
            gathering.called = True
        started = time.monotonic()
        jobs: list[Job] = []
        try:
            if self._closing:
                # Never started: back to their places, no attempt used (as buffered jobs).
                for r in members:
                    self._push(r.job, "h", "worker shut down", "", 0, r.job.opts.keep_failed)
                return
            for r in members:
                r.task = task
                expired = r.job.opts.expires is not None and self._expiry(r.job, r)
                if expired:
                    self._fail(r.job, expired, "", final=True, started=started)
                    continue
                try:
                    if handler.decoder is not None:
                        r.job.payload = handler.decoder.decode(r.job._data_raw or b"")
                    else:
                        _ = r.job.data
                except (msgspec.DecodeError, JobCorrupted) as exc:
                    self._fail(r.job, f"payload cannot be decoded: {exc}", "", final=True,
                               started=started)
                else:
                    jobs.append(r.job)
            if jobs:
                await self._call_batch(handler, members, jobs, started)
        finally:
            took = (time.monotonic() - started) / max(1, len(members))
            for r in members:
                self._running.pop(r.job.id, None)
                self._executing -= 1
                avg = self._avg_duration
                self._avg_duration = took if avg is None else avg * 0.9 + took * 0.1
            self._check_idle()
            self._wakeup.set()

    async def _call_batch(self, handler: Handler, members: list[_Running], jobs: list[Job],
                          started: float) -> None:
        batch = Batch(jobs)
        # Cancels that reach a job during the call are told to the processor (cancelled()).
        batch._gone.update(r.job.id for r in members if r.cancel_reason not in (None, "shutdown"))
        if members and members[0].batch is not None:
            members[0].batch.call = batch
        # Each job's own timeout counts from the call's start, as for a job alone. The call
        # is not cut for one job (the others' work would be lost): a job past its timeout
        # fails as timed out when the call returns. Once every job is past its timeout,
        # nothing is left to lose and the call is cut, as a hung call of one job would be.
        timeouts = [job.opts.timeout for job in jobs]
        cut_after = None if None in timeouts else max(t for t in timeouts if t is not None)
        call_started = time.monotonic()
        try:
            if cut_after is None:
                await handler.fn(batch)
            else:
                try:
                    async with asyncio.timeout(cut_after) as deadline:
                        await handler.fn(batch)
                except TimeoutError:
                    if not deadline.expired():  # a TimeoutError of the processor's own
                        raise
                    # Every job is past its timeout: those given an outcome in time keep it
                    # (_record_batch), the others fail as timed out (or cancelled).
                    self._record_batch(members, jobs, batch, time.monotonic() - call_started,
                                       started, call_started)
                    return
        except asyncio.CancelledError:
            # Shutdown past its grace (a cancel() of one job never interrupts the call). The
            # jobs the processor already gave an outcome keep it, as they would have run
            # alone (a webhook it delivered must not be sent again); the others go back.
            decided = [job for job in jobs if job.id in batch.values or job.id in batch.failed]
            self._record_batch(members, decided, batch, time.monotonic() - call_started,
                               started, call_started)
            asked = {r.job.id for r in members if r.cancel_reason not in (None, "shutdown")}
            for job in jobs:
                if job.id in batch.values or job.id in batch.failed:
                    continue
                if job.id in asked:
                    self._fail(job, "cancelled", "", final=True, started=started)
                else:
                    self._push(job, "w", "worker shut down", "", 0, job.opts.keep_failed)
            return
        except (Delayed, RateLimited) as exc:
            # Each job as if it had raised it alone: with a group limit, the groups of the
            # batch's jobs sleep (one group with group="same").
            for job in jobs:
                self._put_back(job, exc)
            return
        except BaseException as exc:
            # A batch processor's sys.exit() or KeyboardInterrupt is its error (see _process).
            for job in jobs:
                self._on_error(job, exc, started)
            return
        self._record_batch(members, jobs, batch, time.monotonic() - call_started, started,
                           call_started)

    def _record_batch(self, members: list[_Running], jobs: list[Job], batch: Batch,
                      took: float, started: float, call_started: float) -> None:
        """Each job's result once the call is over (``took`` seconds): cancelled, timed out,
        or what the processor said of it (completed with None when it said nothing). A job
        past its own timeout is timed out unless the processor gave it its outcome within
        that timeout (as alone, it would have finished then)."""
        cancelled = {r.job.id: r.cancel_reason for r in members
                     if r.cancel_reason not in (None, "shutdown")}
        none_raw: bytes | None = None
        for job in jobs:
            reason = cancelled.get(job.id)
            if reason is not None:
                self._fail(job, reason, "", final=True, started=started)
                continue
            said_at = batch._at.get(job.id)
            in_time = said_at is not None and said_at - call_started <= (job.opts.timeout or 0)
            if job.opts.timeout is not None and took > job.opts.timeout and not in_time:
                self._on_error(job, TimeoutError(f"job timed out after {job.opts.timeout}s"),
                               started)
                continue
            error = batch.failed.get(job.id)
            if isinstance(error, Delayed | RateLimited):
                self._put_back(job, error)  # batch.fail(job, Delayed(...)): no attempt used
                continue
            if error is not None:
                self._on_error(job, error, started)
                continue
            if job.id in batch.values:
                try:
                    raw = self._encode_value(batch.values[job.id])
                except PayloadError as exc:
                    self._fail(job, str(exc), "", final=True, started=started)
                    continue
            else:
                if none_raw is None:
                    none_raw = codec.encode(None, "return value")
                raw = none_raw
            self._push(job, "c", raw, "", 0, job.opts.keep_completed)
            self.jobs_done += 1

    async def _process(self, running: _Running, handler: Handler | None, bad_opts: bool) -> None:
        job = running.job
        started = time.monotonic()
        try:
            if running.start_known is not None and not await running.start_known:
                # Redis gave it to another worker meanwhile, or it was removed: not ours.
                self._held_started.pop(job.id, None)
                return
            if bad_opts:
                raise UnrecoverableError(f"job {job.id}: stored options cannot be decoded")
            expired = job.opts.expires is not None and self._expiry(job, running)
            if expired:
                self._fail(job, expired, "", final=True, started=started)
                return
            if handler is None:
                known = ", ".join(sorted(repr(n) for n in self.registry.names(self.queue_name)
                                         if n is not None)) or "none"
                raise UnrecoverableError(
                    f"no processor for job {job.name!r} in queue {self.queue_name!r} "
                    f"(this worker's job names: {known})")
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
            if running.cancel_reason not in (None, "shutdown"):
                # A processor that caught the cancel and went on: its value is dropped, as
                # a thread's is (a shutdown keeps the real outcome, as for a thread).
                raise asyncio.CancelledError
            raw = self._encode_value(value)
            self._push(job, "c", raw, "", 0, job.opts.keep_completed)
            self.jobs_done += 1
            if log.isEnabledFor(logging.DEBUG):
                took = time.monotonic() - started
                log.debug("queue %s job %s (%s) attempt %d completed in %.3fs", self.queue_name,
                          job.id, job.name, job.attempts_started, took,
                          extra=self._log_fields(job, took, "completed"))
        except asyncio.CancelledError as exc:
            task = asyncio.current_task()
            if running.cancel_reason is None and (task is None or not task.cancelling()):
                # Nobody cancelled the job: the processor's own CancelledError (a helper
                # task it awaited was cancelled), an error like any other, retried.
                self._on_error(job, exc, started)
            elif running.cancel_reason == "shutdown":
                self._push(job, "w", "worker shut down", "", 0, job.opts.keep_failed)
            else:
                self._fail(job, "cancelled", "", final=True, started=started)
        except (Delayed, RateLimited, WaitingChildren) as exc:
            self._put_back(job, exc)
        except PayloadError as exc:
            self._fail(job, str(exc), "", final=True, started=started)
        except BaseException as exc:
            # sys.exit() or KeyboardInterrupt from a processor (click's standalone mode, a
            # library's) is the job's error: the attempt fails and may be retried. A sync
            # one's ended its own thread (or came back from its child process); an async
            # one's, re-raised, escaped the event loop and hung the process with the jobs
            # beside it unreported. Stopping the worker is SIGTERM's (or close()'s) job.
            self._on_error(job, exc, started)
        finally:
            self._running.pop(job.id, None)
            self._executing -= 1
            took = time.monotonic() - started
            avg = self._avg_duration
            self._avg_duration = took if avg is None else avg * 0.9 + took * 0.1
            self._check_idle()
            self._wakeup.set()

    async def _call(self, handler: Handler, job: Job) -> Any:
        timeout = job.opts.timeout
        if not handler.is_async:
            # Each counts the timeout from the call's own start, and returns only once the
            # code has stopped: no retry can overlap it (see sync_runner.py, pool.py).
            runner = self._processes if self._processes is not None else self._threads
            return await runner.run(handler.fn, job, timeout)
        if timeout is None:
            return await handler.fn(job)
        try:
            async with asyncio.timeout(timeout) as deadline:
                value = await handler.fn(job)
        except TimeoutError:
            if deadline.expired():  # not a TimeoutError of the processor's own
                raise TimeoutError(f"job timed out after {timeout}s") from None
            raise
        if deadline.expired():
            # It caught the cancel of its deadline and returned late: the value is dropped,
            # as a thread's is after its deadline.
            raise TimeoutError(f"job timed out after {timeout}s")
        return value

    def _put_back(self, job: Job, exc: Delayed | RateLimited | WaitingChildren) -> None:
        """A processor's ``Delayed``, ``RateLimited``, ``GroupRateLimited`` or
        ``WaitingChildren`` for ``job``: it goes back without using an attempt (delayed
        alone, its group asleep, the queue limited, or waiting for its children)."""
        if isinstance(exc, WaitingChildren):
            # lua/finish.lua 'k': to waiting-children, or to the head of the line if its
            # children are all done (then, as for Delayed(0), nothing held here starts
            # before it runs again).
            self._push(job, "k", exc.message, "", 0, job.opts.keep_failed)
            self._on_control("ahead")
            return
        delay_ms = _ms_up(exc.delay)
        if isinstance(exc, Delayed):
            self._push(job, "d", str(exc), "", delay_ms, job.opts.keep_failed)
            if delay_ms <= 0:
                # To the head of the line (lua/finish.lua, enqueue_front): Redis hands back
                # every held job when it applies this; this worker knows first, so none it
                # holds starts before the job runs again, as one taken at a time would.
                self._on_control("ahead")
        elif exc.group:
            # Only the job's group sleeps (lua/includes/groups.lua); others go on.
            self._push(job, "g", exc.message, "", delay_ms, job.opts.keep_failed)
            # Redis hands back every held job when it applies this (a control change):
            # this worker knows first, so none it holds starts meanwhile, in the group
            # asleep above all (one fetched at a time would not have been taken).
            self._on_control("group")
        else:
            self._push(job, "w", "rate limited", "", delay_ms, job.opts.keep_failed)
            # This worker knows first: nothing it holds starts, and it takes nothing until
            # the reply to this result confirms the limit (other workers hear of it then).
            self._limited_until = time.monotonic() + exc.delay
            self._on_control("limit")

    def _on_error(self, job: Job, exc: BaseException, started: float) -> None:
        reason, stack, delay = failure_outcome(job, exc, self.backoff_strategies)
        attempts_made = job.attempts_made + 1
        if delay is not None:
            self._push(job, "r", reason, stack, _ms_up(delay), job.opts.keep_failed)
            self.jobs_retried += 1
            if job.priority > 0 or job.lifo:
                # Waiting again with a priority (now, or once its backoff has run):
                # ahead of the jobs held here (lua/includes/base.lua,
                # give_way_to_ahead), as for Delayed(0).
                self._on_local_control("priority", delay, job.id)
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
        # A failure's reason and stack trace are a processor's text (an exception message
        # may hold a lone surrogate: os.fsdecode of a file name that is not UTF-8), which
        # the call must be able to encode: one that cannot kills the whole call.
        if type(value) is str and not value.isascii():
            value = wire_text(value)
        if stack and not stack.isascii():
            stack = wire_text(stack)
        held_start: int | str = self._held_started.pop(job.id, "") if self._held_started else ""
        sent_kind = kind
        if kind == "c" and held_start != "":
            # A held job that started and ended before its start note went: Redis still has
            # it as its take left it, unless someone else changed a held job since (which
            # _build_call and finish.lua tell by the held version).
            note = self._start_notes.get(job.id)
            if note is not None and note.hv:
                # T: the same for a job with a group, which goes with it (in the place of
                # a stack trace): the completion releases the group's count of held jobs.
                sent_kind = "T" if job.group else "C"
                if job.group:
                    stack = job.group
                self._trusted[job.id] = (note.hv, note.taken_ms, note.taken_call)
        # A delay counts from now, not from when the result reaches Redis (results wait for
        # the next call): its due time on the loop's clock, turned into the delay left when
        # the call is built (_build_call), as a worker sending each result at once would.
        delay: int | float = delay_ms
        if delay_ms > 0:
            delay = asyncio.get_running_loop().time() + delay_ms / 1000.0
            self._timed_results += 1
        self._results.append((job.id, job.token, sent_kind, value, stack, delay, keep.count,
                              _age_ms(keep), held_start, job._counts))
        if kind in ("c", "f") and job.opts.parent_ahead:
            # Its parent, in this queue and maybe with a priority, may become waiting when
            # this result reaches Redis: what this worker holds goes back first, so the
            # parent starts next, as it would one job at a time (lua/includes/flows.lua).
            self._on_control("ahead")
        started = self._started_at.pop(job.id, None)
        if started is not None:
            if kind in ("f", "r"):
                self._observe("job_failed", job, value, stack, kind == "f")
            self._observe("job_finished", job, _OBSERVED.get(kind, kind), time.monotonic() - started)

    def _observe(self, method: str, job: Job, *args: Any) -> None:
        for observer in self.observers:
            try:
                # getattr with a default: observers written before a hook existed lack it.
                hook = getattr(observer, method, None)
                if hook is not None:
                    hook(self.queue_name, job, *args)
            except KeyboardInterrupt:
                raise
            except BaseException:
                # A hook's SystemExit, or the CancelledError of a cancelled future it read, is
                # its own failure (hooks are not coroutines: no cancel of the worker's lands
                # in one), and must not become the job's, or stop the runner.
                log.exception("queue %s: observer %r failed in %s", self.queue_name, observer,
                              method)

    # ----- leases, stalled jobs, retention ----------------------------------------------

    async def _pause(self, seconds: float) -> None:
        """Sleeps, but returns at once when the worker stops."""
        # asyncio.timeout, not wait_for: on Python 3.11 wait_for can swallow a cancel that
        # lands as the wait ends, and a loop cancelled at shutdown would then run on.
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(seconds):
                await self._stop.wait()

    async def _renew_loop(self) -> None:
        while not self._stop.is_set():
            await self._pause(self.renew_interval)
            if not self._running:
                continue
            args: list[Any] = [self.keys.job_prefix, self.lock_ms]
            snapshot = dict(self._running)
            for r in snapshot.values():
                args += [r.job.id, r.job.token or ""]
            try:
                self._monitor.begin("lease renewal")
                lost, cancel = await scripts.run(self.redis, "extend", self._call_keys, args)
            except Exception as exc:
                log.error("queue %s: lease renewal failed (%s: %s)", self.queue_name,
                          type(exc).__name__, exc)
                continue
            finally:
                self._monitor.end("lease renewal")
            for raw in lost:
                job_id = raw.decode()
                # Renewal and results travel on different connections: a job that finished
                # (or went back) while the renewal was on its way is no loss.
                if self._running.get(job_id) is snapshot.get(job_id):
                    log.warning("queue %s job %s: lease lost (expired or taken over); its "
                                "run here is given up", self.queue_name, job_id)
                    # Another worker may run it now (a frozen worker, a long GC pause): run
                    # on, and two runs of one job would overlap, beyond its group's
                    # concurrency too. Its result would be discarded anyway (fenced).
                    self._cancel_local(job_id, "lease lost")
            for raw in cancel:
                self._cancel_local(raw.decode(), "cancelled")

    def _return_buffered(self, reason: str) -> None:
        """Hands back jobs fetched (or held) but never started, to their place in the
        queue, without using an attempt."""
        while self._buffered:
            running = self._buffered.popleft()
            self._running.pop(running.job.id, None)
            self._push(running.job, "h", reason, "", 0, running.job.opts.keep_failed)
        self._wakeup.set()

    async def _check_early_cancel(self, job: Job) -> None:
        """A cancel was heard before this job arrived: it is this job's if its cancel flag
        is set (the lease renewal would find it too, but up to lock_duration / 2 later)."""
        with contextlib.suppress(Exception):
            tok, cx = await self.redis.hmget(self.keys.job(job.id), "tok", "cx")
            if cx and tok is not None and tok.decode() == job.token:
                self._cancel_local(job.id, "cancelled")

    def _cancel_local(self, job_id: str, reason: str) -> None:
        # A reply's jobs not made yet (the next call is being sent): made now, so that the
        # cancel finds its job buffered, as it would have without that wait.
        self._start_incoming()
        running = self._running.get(job_id)
        if running is None and reason == "cancelled":
            now = time.monotonic()
            if len(self._early_cancels) >= EARLY_CANCELS_MAX:
                self._early_cancels = {k: t for k, t in self._early_cancels.items()
                                       if now - t < EARLY_CANCEL_S}
            if len(self._early_cancels) < EARLY_CANCELS_MAX:
                self._early_cancels[job_id] = now
            return
        if running and running.batch is not None:
            gathering = running.batch
            if not gathering.called and running in gathering.members:
                # Not given to the processor yet: it leaves the batch and fails now, as a
                # fetched job that has not started.
                gathering.members.remove(running)
                self._running.pop(job_id, None)
                self._executing -= 1
                self._fail(running.job, reason, "", final=True, started=time.monotonic())
                self._check_idle()
                self._wakeup.set()
            else:
                # Inside the processor's call: the others' work must not be cut short, so
                # the call runs on and this job fails as cancelled when it returns; the
                # processor can see it (Batch.cancelled) and skip the job's work.
                running.cancel_reason = reason
                if gathering.call is not None:
                    gathering.call._gone.add(job_id)
                # Unless every job of the call lost its lease: other workers run them all
                # now, there is no work left to lose, and running on would overlap them.
                if (reason == "lease lost" and running.task is not None
                        and not running.task.done()
                        and all(r.cancel_reason == "lease lost" for r in gathering.members)):
                    running.task.cancel()
            return
        if running and running.task is None:
            self._buffered.remove(running)
            self._running.pop(job_id, None)
            if running.held and reason == "cancelled":
                # Held ahead, not started: to everyone else a waiting job, which a cancel
                # does not reach. It goes back to its place, its cancel flag cleared, and
                # Queue.cancel() answers False (lua/finish.lua, kind 'h'). The jobs held
                # with it go back too: kept, they would start before it, out of its turn
                # (hand-backs go back in the order of their stream entries).
                self._push(running.job, "h", "", "", 0, running.job.opts.keep_failed)
                self._return_held()
                # And so do the jobs of a reply to a call already out: taken behind this
                # one, they would start before it is back (see _handle_reply, stale).
                self._controls += 1
                self._control_need = math.inf
            else:
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
                # A sweep interval shorter than the stalled interval is kept too (it
                # swept only every stalled_interval: break round 37).
                wait = min(wait, max(0.05, last_sweep + self.sweep_interval - time.monotonic()))
            except Exception as exc:
                log.error("queue %s: maintenance failed (%s: %s)", self.queue_name,
                          type(exc).__name__, exc)
            await self._pause(wait)

    async def check_stalled(self, batch: int = 1000) -> int:
        """Takes back jobs whose lease has expired; returns how many."""
        keep = self.queue._default_resolved.stored.keep_failed
        total = 0
        while True:
            n, next_deadline, now_ms, _examined = await scripts.run(
                self.redis, "stalled", self.keys.vector,
                [self.keys.job_prefix, self.max_stalled_count, batch, keep.count, _age_ms(keep),
                 self.ident])
            total += int(n)
            self._next_lease_expiry = (None if int(next_deadline) < 0
                                       else (int(next_deadline) - int(now_ms)) / 1000.0)
            if int(n) < batch:
                if total:
                    log.warning("queue %s: took back %d job(s) whose lease expired", self.queue_name,
                                total)
                return total

    # ----- heartbeats, cancel requests, rate limits, eviction ---------------------------

    async def _heartbeat_loop(self) -> None:
        while not self._stop.is_set():
            try:
                self._monitor.begin("heartbeat")
                await self.heartbeat()
                await self._check_eviction_policy()
            except Exception as exc:
                log.warning("queue %s: heartbeat failed (%s: %s)", self.queue_name,
                            type(exc).__name__, exc)
            finally:
                self._monitor.end("heartbeat")
            await self._pause(self.heartbeat_interval)

    async def heartbeat(self) -> None:
        """Publishes this worker's liveness; ``Queue.get_workers()`` lists the live ones."""
        now = time.time()
        ttl = max(1, int(self.heartbeat_interval * 3))
        info = WorkerInfo(
            name=self.name, host=socket.gethostname(), pid=os.getpid(), queues=[self.queue_name],
            started_at=self.started_at, last_seen=now, jobs_done=self.jobs_done,
            jobs_failed=self.jobs_failed, concurrency=self.concurrency,
            # Held jobs not started are waiting, to everyone else: not listed as running.
            running=sorted(job_id for job_id, r in self._running.items()
                           if not (r.held and r.task is None)),
        )
        await write_heartbeat(self.redis, self.keys, info, ttl)

    async def _remove_heartbeat(self) -> None:
        await remove_heartbeat(self.redis, self.keys, self.name, self.ident)

    async def _subscribe_cancels(self) -> Any:
        """Subscribes before the first job is taken, so no cancel request can slip by."""
        pubsub = self._blocking.pubsub()
        try:
            await pubsub.subscribe(self.keys.meta + ":cancel", self.keys.control)
        except Exception as exc:
            log.warning("queue %s: cannot subscribe to cancel requests yet (%s: %s)",
                        self.queue_name, type(exc).__name__, exc)
        return pubsub

    async def _cancel_listener(self, pubsub: Any) -> None:
        """Cancels running jobs as soon as ``Queue.cancel`` asks; a missed message is still
        caught by the next lease renewal, which reads the job's cancel flag. While Redis is
        away it retries after 1 s, doubling up to CANCEL_RETRY_MAX."""
        failures = 0
        while not self._stop.is_set():
            try:
                if not pubsub.subscribed:
                    await pubsub.subscribe(self.keys.meta + ":cancel", self.keys.control)
                    # Messages sent while unsubscribed are lost: whatever is held now may
                    # predate a control change, so it goes back.
                    self._on_control("resubscribed")
                control = self.keys.control.encode()
                while not self._stop.is_set():
                    message = await pubsub.get_message(ignore_subscribe_messages=True, timeout=5.0)
                    failures = 0
                    if message and message.get("type") == "message":
                        if message.get("channel") == control and message["data"] == b"peer|":
                            self._on_peer()  # no control changed: not one of those below
                        elif (message.get("channel") == control
                              and message["data"].startswith(b"due|")):
                            self._on_due_ahead(message["data"])  # nor this one (yet)
                        elif message.get("channel") == control:
                            # A limit may have been lifted or loosened (or set by this
                            # worker's own RateLimited): ask Redis again rather than wait
                            # out what the last reply said.
                            if self._limited_until:
                                self._limited_until = 0.0
                                self._queue_empty = False
                                self._wakeup.set()
                            what, _, version = message["data"].decode().partition("|")
                            if self._control_seen(version):
                                # The last reply carried this change (its control version):
                                # handled then, with the jobs taken after it, which it
                                # concerns no more (a second hand-back sent back the very
                                # job that went ahead).
                                continue
                            self._on_control(what, int(version) if version.isdigit()
                                             else math.inf)
                        else:
                            self._cancel_local(message["data"].decode(), "cancelled")
            except asyncio.CancelledError:
                break
            except Exception as exc:
                delay = min(CANCEL_RETRY_MAX, 2.0 ** failures)
                failures += 1
                if not self._stop.is_set():
                    log.warning("queue %s: cancel listener reconnecting in %.0fs (%s: %s)",
                                self.queue_name, delay, type(exc).__name__, exc)
                await self._pause(delay)
                with contextlib.suppress(Exception):
                    async with asyncio.timeout(1.0):
                        await pubsub.aclose()
                pubsub = self._blocking.pubsub()
                self._unread.watch(pubsub)
        with contextlib.suppress(Exception):
            async with asyncio.timeout(1.0):
                await pubsub.aclose()

    async def rate_limit(self, delay: float) -> None:
        """Stops every worker of the queue taking jobs for ``delay`` seconds (e.g. after an
        upstream 429). Raise ``RateLimited(delay)`` instead to also put the job back."""
        await self.queue.rate_limit(delay)

    def _encode_value(self, value: Any) -> bytes:
        """A return value encoded; PayloadError if it cannot be, or if it is larger than
        this Redis takes in one value: sent, the finish call would be refused, and sent
        again for ever, with every result after it."""
        raw = codec.encode(value, "return value")
        if len(raw) > self._value_max:
            raise PayloadError(f"return value is {len(raw):,} bytes encoded; this Redis takes "
                               f"at most {self._value_max:,} per value (proto-max-bulk-len): "
                               "store large data elsewhere and return its key")
        return raw

    async def _read_value_limit(self) -> None:
        """Lowers the largest return value to the server's proto-max-bulk-len (a Redis
        allows down to 1 MB), less room for the call's other arguments. CONFIG may be
        forbidden (managed Redis): minique's own bound then stands."""
        with contextlib.suppress(Exception):
            reply = await self.redis.config_get("proto-max-bulk-len")
            for key, value in reply.items():
                if (key.decode() if isinstance(key, bytes) else str(key)) == "proto-max-bulk-len":
                    self._value_max = min(codec.MAX_VALUE_BYTES, int(value) - 64 * 1024)

    async def _check_eviction_policy(self) -> None:
        """Warns when Redis may evict keys: at start-up, and again whenever the policy
        changes to an evicting one while the worker runs (a ``CONFIG SET`` by mistake, a
        managed Redis' settings changed): evicted job hashes, stream entries and the id
        counter are jobs lost without a trace. The heartbeat calls it."""
        if self._policy_checked is None:
            return  # CONFIG is forbidden here
        try:
            reply = await self.redis.config_get("maxmemory-policy")
        except RedisConnectionError:
            return  # checked again at the next heartbeat
        except Exception:  # managed Redis may forbid CONFIG; nothing to check then
            self._policy_checked = None
            return
        # Keys and values come back as str or bytes depending on the client's settings.
        values = {(k.decode() if isinstance(k, bytes) else str(k)):
                  (v.decode() if isinstance(v, bytes) else str(v)) for k, v in reply.items()}
        policy = values.get("maxmemory-policy")
        if policy is None or policy == self._policy_checked:
            return
        self._policy_checked = policy
        if policy != "noeviction":
            log.warning("Redis maxmemory-policy is %r, not 'noeviction': under memory pressure "
                        "Redis will silently evict jobs and leases. Set maxmemory-policy "
                        "noeviction on the queue's Redis.", policy)

