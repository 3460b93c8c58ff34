"""The producer and operator side of a queue: add jobs, inspect them, act on them."""

from __future__ import annotations

import asyncio
import collections
import contextlib
import os
import uuid
import weakref
from collections.abc import Callable, Iterable, Mapping, Sequence
from typing import TYPE_CHECKING, Any

import msgspec
from redis.exceptions import BusyLoadingError, RedisError, ResponseError
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import TimeoutError as RedisTimeoutError

from . import codec, local_controls, packing, scripts, telemetry
from .attempts import Attempt, attempts_from_hash
from .connection import check_client, connect
from .errors import (
    AddBulkIncomplete,
    AddNotSent,
    AddOutcomeUnknown,
    InvalidJobState,
    JobCorrupted,
    JobFailed,
    JobNotFound,
    SettleError,
)
from .holders import holders_answer
from .job import Job, public_state
from .keys import DEFAULT_PREFIX, QueueKeys, validate_name
from .options import (
    MAX_PRIORITY,
    MAX_SECONDS,
    check_option_names,
    check_utf8,
    encode_stored,
    resolve,
)
from .own_link import OwnLink, own_link
from .unsettled import Fences, UnsettledCall, settled_ids
from .worker_info import WorkerInfo

if TYPE_CHECKING:
    from .groups import GroupCounts, GroupDefaults, GroupInfo
    from .scheduler import JobScheduler

STATES = ("waiting", "active", "completed", "failed", "delayed", "waiting-children")
BULK_CHUNK = 250  # jobs per add script call: bounded work per call, big enough to amortise
# its cost, and small enough that a list of 500 goes as two calls, Redis running one while
# the client packs the other or makes its jobs (+15-20 % add_bulk, +0.5 % Redis instructions)
# Calls of one add_bulk written ahead of the oldest unanswered one: at most lua/add.lua's
# SEEN_WINDOW, within which it knows exactly which of a producer's numbers ran.
ADD_PIPELINE_DEPTH = 32
ADD_UNRUN_TRIES = 5  # sends of an add call that Redis keeps refusing unrun (functions flushed)
# Sweep calls at most per Queue.sweep while quiet producers' records keep turning up (each call
# drops up to 1,000: a Queue made per request, 20 a second, outran one call a minute).
SWEEP_CALLS_MAX = 20
BATCH = 1000  # jobs per call for bulk operations (drain, retry_jobs, obliterate...)
HELD_REMOVE_WAIT = 1.0  # s remove() waits for a holding worker's answer beyond its hold
ABORT_ROUNDS = 5  # abort(): remove, else cancel, at most this many times (see there)
# get_stats(): snapshots taken at most while the per-setting retention sets keep changing
# (each one reads the sets the one before found).
STATS_TRIES = 5
ID_BLOCK = 100  # automatic ids a producer reserves at a time (see Queue._assign_ids)
ID_BLOCK_MAX = 5000  # ... and at most, when bulk adds reserve ahead for the next ones

BulkItem = tuple[str, Any] | tuple[str, Any, Mapping[str, Any]]
_NO_OPTIONS: dict[str, Any] = {}  # never modified: resolve() reads options, never writes


# The option tail of a job added with no options to a queue without defaults: add.lua knows
# it, so it is sent as tail number 0 and not at all (each argument costs the server ~1k
# instructions; a plain one-job add sent 5 more than it needed).
PLAIN_TAIL = (b"", 0, 0, "", "")


def _refused_or_all(replies: list[Any]) -> list[Any]:
    """The replies of a producer's add calls; the first error when Redis refused them all
    (nothing was added). When it refused some after running others (out of memory after
    the first chunks of an add_bulk), each refused call's error stands in its reply."""
    errors = [r for r in replies if isinstance(r, Exception)]
    if errors and (len(errors) == len(replies) or not all(
            isinstance(e, ResponseError) for e in errors)):
        raise errors[0]
    return replies


def _outcome_unknown(exc: Exception, ids: list[str],
                     calls: Sequence[UnsettledCall]) -> AddOutcomeUnknown:
    """The error for adds whose outcome is unknown: Redis did not answer, or refused both a
    call and the question whether an earlier send of it had run (lua/fence_add.lua)."""
    what = ("refused to say whether an earlier send of the call had run"
            if isinstance(exc, ResponseError) else "did not answer")
    return AddOutcomeUnknown(
        f"Redis {what} ({type(exc).__name__}: {exc}); whether job(s) {_shown(ids)} were "
        f"added is unknown: {SETTLE_HINT}", ids, calls)


# How to learn an unknown outcome (minique/unsettled.py): get_job() alone does not tell.
SETTLE_HINT = ("await queue.settle(error) says which were added and makes sure a late copy of "
               "the call adds nothing (the Queue also does that before its next add goes)")


def _add_call_args(chunk: Sequence[list[Any]], producer: str, seq: int) -> list[Any]:
    """add.lua's arguments for ``chunk`` (each job as ``Queue._prepare`` made it: id, name,
    data, then its 5 option fields): the distinct option tails once, then per job its id,
    name, data and the number of its tail (0: ``PLAIN_TAIL``, not sent). The job count is
    negative when a job has a custom id (automatic ones are digits, custom ones never): only
    such a call checks its ids against the held jobs (lua/add.lua)."""
    tails: dict[tuple[Any, ...], int] = {PLAIN_TAIL: 0}
    jobs: list[Any] = []
    custom = False
    for args in chunk:
        custom = custom or not args[0].isdigit()
        tail = (args[3], args[4], args[5], args[6], args[7])
        number = tails.get(tail)
        if number is None:
            number = tails[tail] = len(tails)
        jobs += (args[0], args[1], args[2], number)
    del tails[PLAIN_TAIL]
    flat: list[Any] = [-len(chunk) if custom else len(chunk), producer, seq, len(tails)]
    for tail in tails:
        flat += tail
    flat += jobs
    return flat


# A prepared add and the future its caller waits on: (id, duplicate, server time).
_WaitingAdd = tuple[list[Any], "asyncio.Future[tuple[bytes, int, int]]"]


def _shown(ids: Sequence[str]) -> str:
    """Job ids for a message: the first five, and how many more."""
    return ", ".join(ids[:5]) + (f" and {len(ids) - 5} more" if len(ids) > 5 else "")


def _not_sent() -> AddNotSent:
    return AddNotSent("this add was never sent: the task sending this queue's concurrent "
                      "adds was cancelled first; nothing was added")


def _seconds(label: str, value: Any) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float) or not (
        0 <= value <= MAX_SECONDS
    ):
        raise ValueError(f"{label} must be a number of seconds from 0 to {MAX_SECONDS:.0f}, "
                         f"got {value!r}")
    return float(value)


def _count(label: str, value: Any, minimum: int = 1) -> int:
    """``value`` if it is an integer from ``minimum`` to 2^53 (counts travel through Lua,
    whose numbers are doubles); ValueError naming ``label`` otherwise."""
    if isinstance(value, bool) or not isinstance(value, int) or not minimum <= value <= 2**53:
        raise ValueError(f"{label} must be an integer >= {minimum}, got {value!r}")
    return value


def _text_id(job_id: Any) -> str:
    return job_id.decode() if isinstance(job_id, bytes) else str(job_id)


def ready_entry_job_id(fields: dict[bytes, bytes]) -> bytes:
    """The job id of a ready-stream entry: its one field, named ``i`` or ``b`` for what the
    take reads of the job (lua/includes/base.lua enqueue_ready)."""
    return next(iter(fields.values()))


class Queue:
    """A named queue on Redis.

    ``Queue("reports", url="redis://...")`` or ``Queue("reports", connection=redis_client)``.
    ``default_job_options`` apply to every ``add`` unless the call overrides them.
    """

    def __init__(
        self,
        name: str,
        *,
        url: str | None = None,
        connection: Any = None,
        prefix: str = DEFAULT_PREFIX,
        default_job_options: Mapping[str, Any] | None = None,
        events_max_len: int | None = None,
        payload_types: Mapping[str, type] | None = None,
    ) -> None:
        self.name = validate_name("queue name", name)
        self.prefix = prefix
        self.keys = QueueKeys(name, prefix)
        # add.lua gets the meta key alone and derives the rest (lua/includes/call.lua):
        # each key sent costs the server about as much as a small command.
        self._add_keys = (self.keys.meta,)
        self._own = connection is None
        self.redis: Any = (check_client(connection, f"Queue({name!r})", url) if connection is not None
                           else connect(url))
        self.default_job_options = dict(default_job_options or {})
        check_option_names(self.default_job_options, "default_job_options")
        # Validate the defaults now, so a bad default fails at construction, not at add.
        self._default_resolved = resolve(self.default_job_options, {})
        self._default_opts_blob = encode_stored(self._default_resolved.stored)
        d = self._default_resolved
        self._default_tail = (self._default_opts_blob, d.wire_priority, round(d.delay * 1000),
                              d.group or "", d.dedup)
        self._events_max_len = events_max_len
        self._add_inflight = False
        self._pending_adds: list[_WaitingAdd] = []
        self._flusher: asyncio.Future[None] | None = None
        # Whether the flusher's call of waiting adds may have gone out (see _send_adds).
        self._waiting_sent = False
        # Job name -> msgspec Struct: payloads are checked at add, so a bad one never queues.
        self.payload_types = dict(payload_types or {})
        # The per-setting retention sets get_stats() found last (read in its snapshot).
        self._keep_sets: tuple[tuple[bytes, ...], tuple[bytes, ...]] = ((), ())
        self._meta_written = events_max_len is None
        # Every add call carries this producer's id and next sequence number, so a call
        # that redis-py re-sends after a timeout is recognised and changes nothing twice
        # (lua/add.lua). The lock keeps this producer's calls one at a time, in order.
        self._producer = uuid.uuid4().hex[:16]
        self._producer_pid = os.getpid()
        self._add_seq = 0
        self._add_lock = asyncio.Lock()
        # Calls whose outcome is unknown, fenced before this producer's next call goes.
        self._fences = Fences()
        # Add calls (one at a time, under the lock) keep a connection of their own and skip
        # redis-py's per-command machinery (minique/own_link.py); None: through the client.
        self._link: OwnLink | None = own_link(self.redis)
        if self._link is not None:
            # A Queue made per request and never closed must not leave its socket open.
            weakref.finalize(self, self._link.abandon)
        # (producer, {job count: packed head}) of a plain one-job add call (_plain_add).
        self._plain_head: tuple[str, dict[int, bytes]] = ("", {})
        # Automatic ids come from blocks reserved with INCRBY, so an add knows its ids
        # before the first send (a re-send must not take fresh ones).
        self._id_next = 0
        self._id_end = 0
        # The events reader shared by this Queue's waiters (minique/waiter.py _EventHub).
        self._event_hub: Any = None

    def __repr__(self) -> str:
        return f"<Queue {self.name!r} {self.keys.base}>"

    async def _write_meta(self) -> None:
        if not self._meta_written:
            # Marked written only once Redis took it: a write refused (a Redis out of
            # memory, a dropped link) is tried again by the next call.
            await self.redis.hset(self.keys.meta, "emax", self._events_max_len)
            self._meta_written = True

    async def _run(self, name: str, args: Sequence[scripts.Arg], extra_keys: Sequence[str] = ()) -> Any:
        await self._write_meta()
        return await scripts.run(self.redis, name, (*self.keys.vector, *extra_keys),
                                 (self.keys.job_prefix, *args))

    # ----- adding ------------------------------------------------------------------------

    def _prepare(self, name: str, data: Any, options: Mapping[str, Any],
                 carrier: dict[str, str] | bool | None = False) -> tuple[list[Any], Any]:
        """``carrier``: the caller's trace context (telemetry.current_context()), when the
        caller looked it up once for many jobs; False: look it up here."""
        if (type(name) is not str and not isinstance(name, str)) or not name:
            raise ValueError(f"job name must be a non-empty string, got {name!r}")
        if not name.isascii():
            check_utf8("job name", name)
        if options:
            resolved = resolve(self.default_job_options, options)
            blob = (self._default_opts_blob if resolved.stored == self._default_resolved.stored
                    else encode_stored(resolved.stored))
        else:
            resolved, blob = self._default_resolved, self._default_opts_blob
        if carrier is False:
            carrier = telemetry.current_context()
        if carrier:
            resolved = msgspec.structs.replace(
                resolved, stored=msgspec.structs.replace(resolved.stored, trace=carrier))
            blob = encode_stored(resolved.stored)
        if name in self.payload_types:
            codec.check(data, self.payload_types[name], f"payload of job {name!r}")
        try:
            raw = codec.encode_fast(data)
        except Exception:  # again, for the error that names the field
            raw = codec.encode(data, f"payload of job {name!r}")
        if len(raw) > codec.MAX_VALUE_BYTES:
            codec.check_size(raw, f"payload of job {name!r}")
        if resolved is self._default_resolved:  # the common case: the tail is always the same
            return [resolved.job_id or "", name, raw, *self._default_tail], resolved
        args = [resolved.job_id or "", name, raw, blob, resolved.wire_priority,
                round(resolved.delay * 1000), resolved.group or "", resolved.dedup]
        return args, resolved

    def _made(self, job_id: str, name: str, data: Any, raw: bytes, resolved: Any, now_ms: int) -> Job:
        return Job.added(self, job_id, name, raw, resolved.stored, data, resolved.wire_priority,
                         now_ms / 1000.0, "delayed" if resolved.delay > 0 else "waiting",
                         resolved.group)

    async def add(self, name: str, data: Any = None, **options: Any) -> Job:
        """Adds one job. Options: attempts, backoff, delay, priority, lifo (the head of the
        plain line: newest first, behind every priority), job_id,
        remove_on_complete, remove_on_fail, timeout, keep_logs, expires (seconds from now
        within which an attempt must start, or the job fails as expired), group (a non-empty string:
        the job takes turns with other groups' jobs, under the group's limits; see
        docs/guide/groups.md), dedup; ``parent`` (a Job or ``{"id": ..., "queue": ...}``)
        and ``on_failure`` make it a child of an existing parent (see minique/flows.py).
        Unknown options raise TypeError.

        ``dedup={"id": str, "ttl": s, "replace": bool, "extend": bool,
        "keep_last_if_active": bool}``: while the id is
        taken (by an unfinished job; with ``ttl``, for ``ttl`` seconds) an add returns the
        job that took it, emits ``deduplicated`` and adds nothing. ``replace`` (debounce)
        also replaces that job's data while it is delayed and restarts its delay with this
        add's ``delay``; ``extend`` restarts the ttl; ``keep_last_if_active`` (no ttl, no
        job_id) keeps a duplicate of an *active* job, the last one winning, and adds it when
        that job completes or fails. ValueError/TypeError for a bad spec.

        Raises ``AddOutcomeUnknown`` (naming the job id) when Redis never answered, so it is
        unknown whether the job was added; a client retry of the same call never adds twice.
        """
        parent, on_failure = options.pop("parent", None), options.pop("on_failure", None)
        if parent is not None:
            return await self._add_child(name, data, options, parent, on_failure)
        if on_failure is not None:
            raise TypeError("on_failure applies only to a job added with a parent")
        args, resolved = self._prepare(name, data, options)
        raw_id, dup, now_ms = await self._submit_add(args)
        if resolved.wire_priority:  # a priority or LIFO: ahead of what workers hold
            local_controls.notify(self.keys.base, "priority", resolved.delay)
        job_id = raw_id.decode() if isinstance(raw_id, bytes) else str(raw_id)
        if dup:
            existing = await self.get_job(job_id)
            if existing is None and resolved.dedup:
                # A dedup id with a ttl outlives its job: the add still did nothing.
                return Job(self, job_id, name, None, resolved.stored, state="unknown")
            if existing is None:  # removed in between: the add did nothing, say so
                raise JobNotFound(f"job {job_id} was a duplicate and has since been removed")
            return existing
        return self._made(job_id, name, data, args[2], resolved, now_ms)

    async def _add_child(self, name: str, data: Any, options: dict[str, Any], parent: Any,
                         on_failure: Any) -> Job:
        """A child of an existing parent (minique/flows.py): the parent, if waiting or
        delayed, waits in "waiting-children" until this child is done."""
        from . import flows

        pkey = flows.parent_key(parent, self.prefix)
        # A parent in this queue may go ahead of held jobs once its children are done; its
        # priority is known only when it is given as a Job. So may an ancestor of it in
        # this queue with a priority (the parent's own parent_ahead says so): this child's
        # failure may climb to it (fail_parent) and release it ('ignore').
        ahead = pkey.startswith(self.keys.job_prefix) and (
            parent.priority > 0 or parent.lifo or parent.opts.parent_ahead
            if isinstance(parent, Job)
            else True)
        node = flows.prepare_child(self, name, data, options, pkey,
                                   flows.policy_code(on_failure or "fail_parent"), ahead)
        if node.args[0] and self.keys.job(node.args[0]) == pkey:
            raise flows.FlowError(f"job {node.args[0]!r} cannot be its own parent")
        token = parent.token if isinstance(parent, Job) else parent.get("token")
        if token:
            # The running job its worker gave the processor: it may take children while it
            # runs, then wait for them (WaitingChildren, docs/guide/flows.md).
            node.parent_token = str(token)
        self._own_producer()
        async with self._add_lock:  # this producer's numbers, shared with add.lua's calls
            await self._fence_unsettled()
            self._add_seq += 1
            try:
                now_ms = await flows.submit(self.redis, [node], self._producer, self._add_seq)
            except AddOutcomeUnknown as exc:
                self._fences.add(list(exc.calls))
                raise
            except BaseException:
                self._fences.add([flows.unsettled_call([node], self._producer, self._add_seq)])
                raise
        return self._made(node.args[0], name, data, node.args[2], node.resolved, now_ms)

    def _take_ids(self, batch: Sequence[list[Any]]) -> bool:
        """Gives every job of ``batch`` without an id an automatic one from the reserved
        block, if it holds enough; else assigns none and says so (True: reserve first,
        ``_assign_ids``)."""
        missing = [args for args in batch if not args[0]]
        if self._id_end - self._id_next < len(missing):
            return True
        for args in missing:
            self._id_next += 1
            args[0] = str(self._id_next)
        return False

    async def _assign_ids(self, batch: Sequence[list[Any]]) -> None:
        """Gives every job of ``batch`` without an id an automatic one (numeric, from
        blocks reserved on the queue's id counter: a lost block only leaves a gap)."""
        missing = [args for args in batch if not args[0]]
        if not missing:
            return
        if self._id_end - self._id_next < len(missing):
            # Bulk adds reserve for the next few bulks too: one INCRBY round trip per
            # chunk of 500 had been ~5% of add_bulk's time.
            block = max(len(missing), min(4 * len(missing), ID_BLOCK_MAX), ID_BLOCK)
            if self._link is not None:
                end = int(await self._link.execute("INCRBY", self.keys.idc, block))
            else:
                end = int(await self.redis.incrby(self.keys.idc, block))
            self._id_next, self._id_end = end - block, end
        for args in missing:
            self._id_next += 1
            args[0] = str(self._id_next)

    def _own_producer(self) -> None:
        """A forked child (gunicorn --preload, multiprocessing) is a producer of its own:
        sharing the parent's id and numbers, its adds (and add_flow's children) would pass
        for re-sends, or make the parent's next ones pass for re-sends (break round 33).
        Every caller of the producer's numbers calls this first."""
        if os.getpid() != self._producer_pid:
            self._producer, self._producer_pid = uuid.uuid4().hex[:16], os.getpid()
            self._add_seq = self._id_next = self._id_end = 0
            self._add_lock = asyncio.Lock()
            self._fences = Fences()  # the parent's calls are the parent's to settle

    async def _send_adds(self, chunks: Sequence[Sequence[list[Any]]],
                         waiting: list[_WaitingAdd] | None = None,
                         made: Callable[[int, list[Any]], None] | None = None) -> list[Any]:
        """Sends chunks of prepared adds, one producer call at a time; returns per chunk
        the (id, duplicate) pairs and the server time, or, when Redis refused some calls
        after it had run others, the error that refused a chunk in its place. A call the server saw already (a
        re-send) comes back as the ids sent, none of them a duplicate: the first send's
        duplicates were told then.

        ``waiting``: instead of ``chunks``, one chunk of adds whose callers wait on futures
        (the flusher's). Adds cancelled while the call waited for the producer's lock or
        its ids are dropped from it (in place) just before it goes: they were never sent.

        ``made``: told each chunk's outcome (its number and what this returns for it) as
        soon as its reply comes, when the chunks go pipelined over the producer's own link
        (``_stream_adds``); the caller makes the rest from the list returned."""
        self._own_producer()
        async with self._add_lock:
            if self._fences:  # (a coroutine only when needed: see below)
                await self._fence_unsettled()
            if waiting is not None:
                waiting[:] = [w for w in waiting if not w[1].done()]
                chunks = [[args for args, _ in waiting]]
            # (Coroutines only when there is something to wait for: each costs a one-job
            # add's client a few per cent.)
            batch = [args for chunk in chunks for args in chunk]
            if self._take_ids(batch):
                await self._assign_ids(batch)
            if not self._meta_written:
                await self._write_meta()
            if waiting is not None:
                # The last moment before anything of the call is sent (an id reserved for
                # a dropped add is skipped, as any id of a failed add).
                waiting[:] = [w for w in waiting if not w[1].done()]
                chunks = [[args for args, _ in waiting]]
                if not waiting:
                    return [[]]
                self._waiting_sent = True  # from here on, the call may reach Redis
            if (made is not None and len(chunks) > 1 and self._link is not None
                    and scripts.uses_functions()):
                return await self._stream_adds(self._link, chunks, made)
            calls: list[list[Any]] = []
            for chunk in chunks:
                self._add_seq += 1
                calls.append(_add_call_args(chunk, self._producer, self._add_seq))
            replies: list[Any] = [None] * len(calls)
            try:
                replies = await self._call_adds(calls)
                if any(not isinstance(reply, Exception) and int(reply[0]) == 2
                       for reply in replies):
                    # The id counter was reset (lua/add.lua): the rest of the block is void.
                    self._id_next = self._id_end = 0
            except BaseException as exc:
                self._unanswered(exc, [call[2] for call in calls], chunks, replies)
                raise
            replies = _refused_or_all(replies)
        out: list[Any] = []
        for chunk, reply in zip(chunks, replies, strict=True):
            if isinstance(reply, Exception):
                out.append(reply)  # refused by Redis, after others ran (_call_adds)
            else:
                out.append(self._chunk_outcome(chunk, reply))
        return out

    def _chunk_outcome(self, chunk: Sequence[list[Any]], reply: list[Any]) -> list[Any]:
        """A chunk's (id, duplicate) pairs and the server time, from add.lua's reply. A
        re-send's reply notes (place in the call, id, duplicate) for the jobs whose outcome
        its first run's state no longer tells (a fresh id given where the automatic one was
        taken, a duplicate and the job it found); every other job was added with the id
        sent."""
        if int(reply[0]) == 1:
            notes = reply[1:-1]
            noted = {int(notes[k]): (notes[k + 1], int(notes[k + 2]))
                     for k in range(0, len(notes), 3)}
            out: list[Any] = []
            for place, args in enumerate(chunk):
                out += noted.get(place, (args[0].encode(), 0))
            return [*out, reply[-1]]
        return reply[1:]

    async def _stream_adds(self, link: OwnLink, chunks: Sequence[Sequence[list[Any]]],
                           made: Callable[[int, list[Any]], None]) -> list[Any]:
        """``_send_adds`` of several chunks (add_bulk) over the producer's own link,
        pipelined both ways: each chunk's call is made and written while Redis runs the ones
        before (at most ADD_PIPELINE_DEPTH unanswered), and each reply goes to ``made`` as
        it comes, while Redis runs the next. (Sent all at once and read all at once, an
        add_bulk of 20,000 plain jobs left Redis idle for about a third of its time: the
        client made every call first and every job last; benchmarks/PROFILE.md,
        "Producers".)

        Every call keeps its sequence number whatever happens: the calls a lost connection
        or a timeout left unanswered go again under the client's retry policy, and those
        Redis refused unrun (the library missing, LOADING) go again through ``scripts.run``,
        which loads what is missing. add.lua knows which numbers ran (its record is exact
        within the pipeline's depth), so a call that ran is answered as a re-send and adds
        nothing, and one that did not runs. When the policy gives up, ``AddOutcomeUnknown``
        names the jobs of every call not answered as added (those refused included)."""
        fn, keys, jp = scripts.library().function("add"), self._add_keys, self.keys.job_prefix
        calls: list[list[Any] | None] = [None] * len(chunks)
        out: list[Any] = [None] * len(chunks)
        left = collections.deque(range(len(chunks)))  # not answered yet, in order
        unrun: list[int] = []
        refused: list[int] = []  # refused (out of memory...): fenced before more go

        def command(i: int) -> tuple[Any, ...]:
            call = calls[i]
            if call is None:
                self._add_seq += 1
                call = calls[i] = _add_call_args(chunks[i], self._producer, self._add_seq)
            return ("FCALL", fn, len(keys), *keys, jp, *call)

        async def answered(i: int, reply: Any) -> None:
            if int(reply[0]) == 2:
                # The id counter was reset (lua/add.lua): the rest of the block is void.
                self._id_next = self._id_end = 0
            out[i] = self._chunk_outcome(chunks[i], reply)
            made(i, out[i])

        async def pipelined() -> None:
            """Sends the calls of ``left`` and reads their replies; stops writing once one
            comes back refused, and returns when those written are answered, so that it goes
            again (refused unrun) or is fenced (refused) before the highest number outruns
            add.lua's window."""
            todo, sent = list(left), collections.deque[tuple[int, asyncio.Future[Any]]]()
            try:
                while sent or (todo and not unrun and not refused):
                    if todo and not unrun and not refused and len(sent) < ADD_PIPELINE_DEPTH:
                        batch = todo[:ADD_PIPELINE_DEPTH - len(sent)]
                        del todo[:len(batch)]
                        sent.extend(zip(batch, await link.write_each(map(command, batch)),
                                        strict=True))
                    i, waiter = sent.popleft()
                    try:
                        reply = await link.reply(waiter)
                    except BusyLoadingError:
                        unrun.append(i)
                    except ResponseError as exc:
                        if scripts.did_not_run(exc):
                            unrun.append(i)
                        else:
                            out[i] = exc
                            refused.append(i)
                    else:
                        await answered(i, reply)
                    left.popleft()
            except BaseException:
                for _, waiter in sent:  # (no "exception never retrieved" for those left)
                    waiter.cancel()
                raise

        async def failed(_error: Exception) -> None:
            await link.drop()

        try:
            while left or unrun or refused:
                if left and not unrun and not refused:
                    await link.retry_policy().call_with_retry(pipelined, failed)
                for i in sorted(unrun):
                    call = calls[i]
                    assert call is not None
                    reply = await self._add_again(link, call)
                    if isinstance(reply, Exception):
                        out[i] = reply
                        refused.append(i)
                    else:
                        await answered(i, reply)
                unrun.clear()
                for i in sorted(refused):
                    call = calls[i]
                    assert call is not None
                    answer = await self._fenced(link, call, out[i])
                    if answer is not out[i]:
                        await answered(i, answer)
                refused.clear()
        except BaseException as exc:
            # A call never written (calls[i] None) never runs: settled as not added.
            self._unanswered(exc, [0 if call is None else call[2] for call in calls], chunks, out)
            raise
        return _refused_or_all(out)

    def _unanswered(self, exc: BaseException, seqs: list[int],
                    chunks: Sequence[Sequence[list[Any]]], replies: list[Any]) -> None:
        """Records the calls (numbers ``seqs``) of ``chunks`` not answered with a reply
        list as unsettled (minique/unsettled.py: fenced before the next call goes), and
        raises ``AddOutcomeUnknown`` for them from ``exc`` when Redis did not answer or
        refused to say; for a cancel (the call may have gone out) only records them."""
        unsettled = [UnsettledCall(self.keys.meta, self.keys.job_prefix, self._producer, seq,
                                   "add", tuple(args[0] for args in chunk))
                     for seq, chunk, reply in zip(seqs, chunks, replies, strict=True)
                     if not isinstance(reply, list)]
        self._fences.add(unsettled)
        if isinstance(exc, RedisConnectionError | RedisTimeoutError | OSError | ResponseError):
            raise _outcome_unknown(exc, [i for c in unsettled for i in c.job_ids],
                                   unsettled) from exc

    async def _fence_unsettled(self) -> None:
        """Fences this producer's calls whose outcome is unknown (minique/unsettled.py),
        under the add lock, before its next call goes: that call raises the record's top,
        and 48 numbers on the fence could no longer tell. Raises ``AddNotSent`` when Redis
        does not answer the fence: the call waiting for it was not sent."""
        if not self._fences:
            return
        try:
            await self._fences.fence(self._link or self.redis)
        except (RedisConnectionError, RedisTimeoutError, OSError, ResponseError) as exc:
            raise AddNotSent(
                "this add was not sent: an earlier add's outcome is unknown, and Redis did not "
                f"answer the fence that settles it ({type(exc).__name__}: {exc})") from exc

    async def settle(self, error: AddOutcomeUnknown) -> dict[str, str | None]:
        """Settles an ``AddOutcomeUnknown`` that this Queue raised: fences its calls
        (lua/fence_add.lua), so that no copy of them still in the network adds anything
        from now on, and returns, per id of ``error.job_ids``, the id of the job the add
        made or found (the same id; a duplicate: the job that has its id or dedup id; an
        automatic id that was taken by then: the fresh id the job got), or None when it was
        not added and never will be: then adding it again is safe.

        One script call per unsettled call (none when the Queue already fenced them before a
        later add). Raises ``SettleError`` when Redis does not answer (settle again later),
        or when the error is too old (its outcomes are kept for the last 256 calls);
        ValueError for an error another Queue (or another process) raised."""
        for call in error.calls:
            if call.producer != self._producer or call.meta_key != self.keys.meta:
                raise ValueError("settle an AddOutcomeUnknown with the Queue that raised it")
        async with self._add_lock:
            try:
                await self._fences.fence(self._link or self.redis)
            except (RedisConnectionError, RedisTimeoutError, OSError, ResponseError) as exc:
                raise SettleError(f"Redis did not answer the fence ({type(exc).__name__}: "
                                  f"{exc}); settle again once it does") from exc
        out: dict[str, str | None] = {}
        for call in error.calls:
            out.update(settled_ids(call, self._fences.outcome(call)))
        return out

    async def _call_adds(self, calls: list[list[Any]]) -> list[Any]:
        if len(calls) == 1:
            call = calls[0]
            if (self._link is not None and call[0] in (1, -1) and call[3] == 0
                    and type(call[6]) is bytes and scripts.uses_functions()):
                try:
                    return [await self._link.execute_packed(self._plain_add(call))]
                except ResponseError as exc:
                    if not scripts.did_not_run(exc):
                        return [await self._fenced(self._link, call, exc)]
                    # Nothing ran: scripts.run loads the library (or turns to scripts, on
                    # a server without functions) and calls again.
            client = self._link or self.redis
            try:
                return [await scripts.run(client, "add", self._add_keys,
                                          (self.keys.job_prefix, *calls[0]))]
            except ResponseError as exc:
                return [await self._fenced(client, calls[0], exc)]
        if getattr(self.redis, "connection_pool", None) is None:
            # Redis Cluster clients refuse scripts in pipelines; in order, one at a time,
            # each refusal fenced before the next call goes (see _fenced).
            replies: list[Any] = []
            for call in calls:
                reply = await self._add_again(self.redis, call)
                if isinstance(reply, ResponseError):
                    reply = await self._fenced(self.redis, call, reply)
                replies.append(reply)
            return replies
        replies = []
        for start in range(0, len(calls), ADD_PIPELINE_DEPTH):
            group = calls[start:start + ADD_PIPELINE_DEPTH]
            async with self.redis.pipeline(transaction=False) as pipe:
                for call in group:
                    scripts.queue_call(pipe, "add", self._add_keys, [self.keys.job_prefix, *call])
                group_replies = await pipe.execute(raise_on_error=False)
            # Calls refused unrun (the library missing) go again, one by one, with their
            # numbers, and refusals are fenced, before the next group: add.lua knows which
            # numbers ran only within its window below the highest.
            for call, reply in zip(group, group_replies, strict=True):
                if isinstance(reply, Exception) and scripts.did_not_run(reply):
                    reply = await self._add_again(self.redis, call)
                if isinstance(reply, ResponseError):
                    reply = await self._fenced(self._link or self.redis, call, reply)
                replies.append(reply)
        return replies

    async def _fenced(self, client: Any, call: list[Any], refusal: ResponseError) -> Any:
        """What became of ``call`` (add.lua's arguments), which Redis refused with
        ``refusal``: an earlier send of it (retried after a timeout or a dropped
        connection, by redis-py or the own link) may have run, its reply lost, or may
        still arrive late. Returns add.lua's answer to a re-send when one ran, else
        ``refusal``; then none ever will (lua/fence_add.lua). Raises what Redis raised when
        it refuses or does not answer this question too (the outcome is unknown then).
        Called before the producer's later calls run 48 numbers ahead (the record is exact
        that far below its top; further down, the fence answers FENCEUNKNOWN)."""
        answer = await scripts.run(client, "fence_add", self._add_keys,
                                   (self.keys.job_prefix, call[1], call[2], "add"))
        if answer is None:
            # A record the fence made anew, where the queue was obliterated meanwhile,
            # hides that from the next call (lua/add.lua): take a fresh block of ids.
            self._id_next = self._id_end = 0
            return refusal
        return answer

    async def _add_again(self, client: Any, call: list[Any]) -> Any:
        """add.lua's reply to ``call`` through ``scripts.run`` (which loads what is missing),
        sent again with its number while Redis refuses it unrun (its functions flushed again
        meanwhile), at most ADD_UNRUN_TRIES times; a refusal is returned, not raised."""
        for attempt in range(ADD_UNRUN_TRIES):
            try:
                return await scripts.run(client, "add", self._add_keys,
                                         (self.keys.job_prefix, *call))
            except ResponseError as exc:
                if attempt == ADD_UNRUN_TRIES - 1 or not scripts.did_not_run(exc):
                    return exc
        raise AssertionError("unreachable")

    def _plain_add(self, call: list[Any]) -> bytes:
        """``call`` (one job, plain options: see _add_call_args) packed for the link; the
        head is packed once per producer (a forked child is a producer of its own)."""
        n, _producer, seq, _nt, job_id, name, data, _tail = call
        if self._plain_head[0] != self._producer:
            self._plain_head = (self._producer, {})
        head = self._plain_head[1].get(n)
        if head is None:  # (1, or -1 for a custom id)
            head = self._plain_head[1][n] = packing.packed_head((
                "FCALL", scripts.library().function("add"), 1, self.keys.meta,
                self.keys.job_prefix, n, self._producer))
        return packing.plain_add(head, seq, job_id, name, data)

    async def _submit_add(self, args: list[Any]) -> tuple[bytes, int, int]:
        """Sends one job's add. While an add is in flight, others wait and then go together
        in one script call, so many concurrent producers cost few round trips."""
        if self._add_inflight:
            future: asyncio.Future[tuple[bytes, int, int]] = (
                asyncio.get_running_loop().create_future())
            self._pending_adds.append((args, future))
            return await future
        self._add_inflight = True
        try:
            reply = (await self._send_adds([[args]]))[0]
        finally:
            self._add_inflight = False
            if self._pending_adds:
                self._add_inflight = True
                self._flusher = asyncio.ensure_future(self._flush_adds())
        return reply[0], reply[1], reply[-1]

    async def _flush_adds(self) -> None:
        try:
            while True:
                if not self._pending_adds:
                    # One loop turn before giving up the flush: producers whose adds the
                    # last call answered add their next job now and go together, rather
                    # than the first of them alone and the rest in the call after.
                    await asyncio.sleep(0)
                    if not self._pending_adds:
                        break
                batch = self._pending_adds[:BULK_CHUNK]
                del self._pending_adds[:BULK_CHUNK]
                self._waiting_sent = False
                try:
                    # An add cancelled before its call goes was never sent: it is dropped
                    # from ``batch`` and adds nothing.
                    reply = (await self._send_adds((), waiting=batch))[0]
                except Exception as exc:
                    for _, future in batch:
                        if not future.done():
                            future.set_exception(exc)
                    continue
                except BaseException:
                    # This task was cancelled (a loop shutting down, a cancel of every task),
                    # not its producers: they are told what became of their adds instead of
                    # a cancel of their own. The call may have reached Redis.
                    ids = [args[0] for args, _ in batch]
                    calls = [c for c in self._fences.pending if set(c.job_ids) & set(ids)]
                    for _, future in batch:
                        if not future.done():
                            future.set_exception(AddOutcomeUnknown(
                                "the task sending this queue's concurrent adds was cancelled "
                                "with their call on the way; whether job(s) "
                                f"{_shown(ids)} were added is unknown: {SETTLE_HINT}",
                                ids, calls) if self._waiting_sent else _not_sent())
                    raise
                for i, (_, future) in enumerate(batch):
                    if not future.done():
                        future.set_result((reply[2 * i], reply[2 * i + 1], reply[-1]))
        finally:
            self._add_inflight = False
            # Adds left waiting were never sent: only a cancel of this task leaves any.
            left, self._pending_adds = self._pending_adds, []
            for _, future in left:
                if not future.done():
                    future.set_exception(_not_sent())

    async def add_bulk(self, jobs: Iterable[BulkItem]) -> list[Job]:
        """Adds many jobs, ``BULK_CHUNK`` per script call, the calls pipelined (``_send_adds``).

        Every item is validated and encoded before anything is written.
        """
        prepared: list[tuple[list[Any], Any, Any]] = []
        carrier = telemetry.current_context()  # one trace context for the whole call
        prepare = self._prepare
        for i, item in enumerate(jobs):
            if (type(item) is not tuple and not isinstance(item, tuple | list)) or len(item) not in (2, 3):
                raise TypeError(f"add_bulk item {i} must be (name, data) or (name, data, options)")
            options = item[2] if len(item) == 3 else _NO_OPTIONS
            if type(options) is not dict and not isinstance(options, Mapping):
                raise TypeError(f"add_bulk item {i}: options must be a dict, got {options!r}")
            args, resolved = prepare(item[0], item[1], options, carrier)
            prepared.append((args, resolved, item[1]))
        if not prepared:
            return []
        chunks = [prepared[i:i + BULK_CHUNK] for i in range(0, len(prepared), BULK_CHUNK)]
        # Each chunk's jobs, made as its reply comes (while Redis runs the next chunk, when
        # _send_adds pipelines them) or after; and its duplicates: (chunk, place, id).
        jobs_of: list[list[Job] | None] = [None] * len(chunks)
        dups: list[tuple[int, int, str]] = []

        def made(n: int, reply: list[Any]) -> None:
            now_ms, jobs = reply[-1], []
            for j, (args, resolved, data) in enumerate(chunks[n]):
                raw = reply[2 * j]
                job_id = raw.decode() if isinstance(raw, bytes) else str(raw)
                if reply[2 * j + 1]:
                    dups.append((n, j, job_id))
                jobs.append(self._made(job_id, args[1], data, args[2], resolved, now_ms))
            jobs_of[n] = jobs

        replies = await self._send_adds([[args for args, _, _ in chunk] for chunk in chunks],
                                        made=made)
        delays = [r.delay for _, r, _ in prepared if r.wire_priority]
        if delays:
            local_controls.notify(self.keys.base, "priority", min(delays))
        out: list[Job] = []
        starts: dict[int, int] = {}  # chunk -> the place of its first job in out
        not_added: list[int] = []
        refusal: Exception | None = None
        for n, (chunk, reply) in enumerate(zip(chunks, replies, strict=True)):
            if isinstance(reply, Exception):
                refusal = refusal or reply
                not_added.extend(range(n * BULK_CHUNK, n * BULK_CHUNK + len(chunk)))
                continue
            if jobs_of[n] is None:
                made(n, reply)
            starts[n] = len(out)
            out.extend(jobs_of[n] or ())
        for n, j, job_id in dups:
            existing = await self.get_job(job_id)
            if existing is None:
                # Removed since (or a dedup id with a ttl that outlives its job): the item
                # added nothing, and that job's fields are gone; as add() says of it.
                args, resolved, _ = chunks[n][j]
                existing = Job(self, job_id, args[1], None, resolved.stored, state="unknown")
            out[starts[n] + j] = existing
        if refusal is not None:
            raise AddBulkIncomplete(
                f"add_bulk: Redis refused {len(not_added)} of {len(prepared)} jobs "
                f"({type(refusal).__name__}: {refusal}) after it had added the other "
                f"{len(out)}; .added has the jobs added, .not_added the positions of the "
                "items to add again (adding the whole list again would add the others "
                "twice)", out, not_added) from refusal
        return out

    # ----- reading -----------------------------------------------------------------------

    async def get_job(self, job_id: str) -> Job | None:
        h = await self.redis.hgetall(self.keys.job(job_id))
        if not h:
            return None
        return Job.from_hash(self, job_id, h)

    async def get_job_attempts(self, job_id: str) -> list[Attempt]:
        """The job's attempts, oldest first: the last ten that failed, were retried or
        stalled, plus the running or completed one (see ``minique.attempts``). Empty for a
        job that does not exist or never started."""
        return attempts_from_hash(await self.redis.hgetall(self.keys.job(job_id)))

    async def get_state(self, job_id: str) -> str:
        async with self.redis.pipeline(transaction=False) as pipe:
            pipe.hget(self.keys.job(job_id), "st")
            pipe.hexists(self.keys.meta, "paused")
            st, paused = await pipe.execute()
        if st is None:
            return "unknown"
        state: str = public_state(st.decode())
        return "paused" if state == "waiting" and paused else state

    async def get_stats(self) -> dict[str, int]:
        """``{waiting, active, completed, failed, delayed, waiting-children, total}``; total
        is their sum.

        One snapshot (MULTI/EXEC; the queue's keys share a slot): read one by one, a job a
        script moves between the reads (delayed -> active, held -> waiting) would be
        counted nowhere, and an idle-looking queue could still have work. Finished jobs
        kept by a retention setting of their own live in sets per setting, listed in
        ``completed_groups``/``failed_groups``: their sizes are read in the same snapshot,
        for the sets the last call found (one more snapshot when those changed)."""
        k = self.keys
        atomic = getattr(self.redis, "connection_pool", None) is not None  # not on Cluster
        for _ in range(STATS_TRIES):
            c_known, f_known = self._keep_sets
            async with self.redis.pipeline(transaction=atomic) as pipe:
                pipe.xlen(k.ready)
                pipe.zcard(k.pri)
                pipe.zcard(k.active)
                pipe.zcard(k.completed)
                pipe.zcard(k.failed)
                pipe.zcard(k.delayed)
                pipe.zcard(k.held)
                pipe.smembers(k.completed_groups)
                pipe.smembers(k.failed_groups)
                pipe.hget(k.meta, "gwn")
                pipe.zcard(k.waiting_children)
                for key in (*c_known, *f_known):
                    pipe.zcard(key)
                (ready, pri, active, completed, failed, delayed, held, c_groups, f_groups,
                 grouped, wc, *sizes) = await pipe.execute()
            c_now, f_now = tuple(sorted(c_groups)), tuple(sorted(f_groups))
            if (c_now, f_now) == (c_known, f_known):
                break
            self._keep_sets = (c_now, f_now)  # a setting came or went: read again
        completed += sum(sizes[:len(c_known)])
        failed += sum(sizes[len(c_known):])
        # Held jobs (a worker's prefetch) have not started: they are waiting.
        # Grouped jobs wait in their groups (lua/includes/groups.lua), counted in meta 'gwn'.
        stats = {"waiting": ready + pri + held + int(grouped or 0), "active": active,
                 "completed": completed, "failed": failed, "delayed": delayed,
                 "waiting-children": wc}
        stats["total"] = sum(stats.values())
        return stats

    async def get_job_counts(self, *states: str) -> dict[str, int]:
        """BullMQ's ``getJobCounts``: ``{state: jobs}`` for the states asked (waiting,
        active, completed, failed, delayed, waiting-children; all of them when none is
        given), from one ``get_stats`` snapshot. ValueError for another state."""
        stats = await self.get_stats()
        unknown = [s for s in states if s == "total" or s not in stats]
        if unknown:
            known = ", ".join(k for k in stats if k != "total")
            raise ValueError(f"get_job_counts: unknown state(s) {unknown}; the states are {known}")
        return {s: stats[s] for s in (states or [k for k in stats if k != "total"])}

    async def get_counts_per_priority(self, priorities: Sequence[int]) -> dict[int, int]:
        """``{priority: waiting jobs}`` for each priority asked, 0 for jobs without one (BullMQ's
        ``getCountsPerPriority``); held and grouped jobs count as waiting, as in
        ``get_stats``. See minique/priority_counts.py."""
        from .priority_counts import counts_per_priority

        return await counts_per_priority(self, priorities)

    async def is_paused(self) -> bool:
        return bool(await self.redis.hexists(self.keys.meta, "paused"))

    async def get_job_ids(self, state: str, start: int = 0, end: int = 49) -> list[str]:
        """Ids of jobs in ``state`` (ranks ``start`` to ``end``, at most 100,001); finished
        jobs newest first, others in run order; waiting jobs in groups come after the
        others, group by group (see ``_waiting_ids``). ValueError/TypeError on bad input."""
        if state not in STATES:
            raise ValueError(f"state must be one of {', '.join(STATES)}, got {state!r}")
        for label, value in (("start", start), ("end", end)):
            if isinstance(value, bool) or not isinstance(value, int):
                raise TypeError(f"{label} must be an integer, got {value!r}")
        if start < 0 or end < start or end - start > 100_000:
            raise ValueError(f"need 0 <= start <= end and at most 100000 jobs per page, "
                             f"got start={start} end={end}")
        k, r = self.keys, self.redis
        raw: Sequence[bytes | str]
        if state in ("completed", "failed"):
            raw = await self._finished_ids(state, start, end)
        elif state == "active":  # scored by negated lease deadline (lua/includes/base.lua)
            raw = await r.zrevrange(k.active, start, end)
        elif state == "delayed":
            raw = await r.zrange(k.delayed, start, end)
        elif state == "waiting-children":
            raw = await r.zrange(k.waiting_children, start, end)
        else:
            raw = await self._waiting_ids(start, end)
        return [x.decode() if isinstance(x, bytes) else x for x in raw]

    async def _waiting_ids(self, start: int, end: int) -> list[bytes | str]:
        """Held jobs first (they start next), then the priority set, then the stream, then
        the jobs waiting in groups (minique/groups.py: group by group, busiest first; the
        round-robin interleaves the groups when it runs them)."""
        from . import groups

        k = self.keys
        # One snapshot of the held set, the priority set and the stream (MULTI/EXEC, as in
        # get_stats): read one by one, a held job handed back in between (it goes to the
        # priority set) was listed twice, and one taken the other way not at all. A page
        # ends by `end`, so the first end + 1 of each is all it can need.
        atomic = getattr(self.redis, "connection_pool", None) is not None  # not on Cluster
        async with self.redis.pipeline(transaction=atomic) as pipe:
            pipe.zrevrange(k.held, 0, -1)
            pipe.zrange(k.pri, 0, end)
            pipe.zcard(k.pri)
            pipe.xrange(k.ready, count=end + 1)
            pipe.xlen(k.ready)
            held, pri, n_pri, entries, n_ready = await pipe.execute()
        ready = [ready_entry_job_id(fields) for _, fields in entries]
        raw: list[bytes | str] = [*held, *pri, *ready][start:end + 1]
        want = end - start + 1
        if len(raw) < want and len(pri) == n_pri and len(ready) == n_ready:
            # (The groups come after: listed from their own sets, not in the snapshot.)
            skip = max(0, start - len(held) - n_pri - n_ready)
            raw += await groups.grouped_waiting_ids(self, skip, want - len(raw))
        return raw

    async def _finished_ids(self, state: str, start: int, end: int) -> list[bytes]:
        """Newest first across the state's sets (one per retention setting)."""
        k = self.keys
        main, registry = (k.completed, k.completed_groups) if state == "completed" else (
            k.failed, k.failed_groups)
        async with self.redis.pipeline(transaction=False) as pipe:
            pipe.smembers(registry)
            pipe.zrevrange(main, start, end)
            groups, page = await pipe.execute()
        if not groups:
            return list(page)
        async with self.redis.pipeline(transaction=False) as pipe:
            for key in (main, *groups):
                pipe.zrevrange(key, 0, end, withscores=True)
            pages = await pipe.execute()
        # Ordered as one sorted set would be: by score, then by member.
        merged = sorted((pair for part in pages for pair in part), key=lambda p: (p[1], p[0]),
                        reverse=True)
        return [member for member, _ in merged[start:end + 1]]

    async def get_jobs(self, state: str, start: int = 0, end: int = 49) -> list[Job]:
        """Jobs in ``state`` (Job objects), in the order of ``get_job_ids``."""
        return await self._jobs_of(await self.get_job_ids(state, start, end))

    async def get_jobs_or_errors(self, state: str, start: int = 0,
                                 end: int = 49) -> list[tuple[str, Job | JobCorrupted]]:
        """As ``get_jobs``, but a job whose stored fields cannot be decoded does not fail the
        whole list: each entry is ``(job id, Job)`` or ``(job id, JobCorrupted)``, so that a
        listing (the dashboard's, ``minique jobs``) can still show it, and offer to remove
        it. Jobs removed between the two reads are left out."""
        ids = await self.get_job_ids(state, start, end)
        async with self.redis.pipeline(transaction=False) as pipe:
            for job_id in ids:
                pipe.hgetall(self.keys.job(job_id))
            hashes = await pipe.execute()
        out: list[tuple[str, Job | JobCorrupted]] = []
        for job_id, h in zip(ids, hashes, strict=True):
            if not h:
                continue
            try:
                out.append((job_id, Job.from_hash(self, job_id, h)))
            except JobCorrupted as exc:
                out.append((job_id, exc))
        return out

    async def _jobs_of(self, ids: Sequence[str]) -> list[Job]:
        async with self.redis.pipeline(transaction=False) as pipe:
            for job_id in ids:
                pipe.hgetall(self.keys.job(job_id))
            hashes = await pipe.execute()
        return [Job.from_hash(self, i, h) for i, h in zip(ids, hashes, strict=True) if h]

    async def get_job_logs(self, job_id: str, start: int = 0, end: int = -1) -> list[str]:
        raw = await self.redis.lrange(self.keys.logs(job_id), start, end)
        return [x.decode(errors="replace") for x in raw]

    async def get_metrics(self, minutes: int = 60) -> dict[str, Any]:
        """Completed and failed counts per minute (oldest first) and running totals."""
        if not 1 <= minutes <= 120:
            raise ValueError("minutes must be between 1 and 120 (two hours are kept)")
        sec, _ = await self.redis.time()  # the counts are kept under Redis' minutes
        now_minute = int(sec) // 60
        first = now_minute - minutes + 1
        async with self.redis.pipeline(transaction=False) as pipe:
            for m in range(first, now_minute + 1):
                pipe.hmget(f"{self.keys.base}:metrics:{m}", "completed", "failed")
            pipe.hgetall(f"{self.keys.base}:metrics:totals")
            replies = await pipe.execute()
        totals = {k.decode(): int(v) for k, v in replies[-1].items()}
        return {
            "minutes": [m * 60 for m in range(first, now_minute + 1)],
            "completed": [int(c or 0) for c, _ in replies[:-1]],
            "failed": [int(f or 0) for _, f in replies[:-1]],
            "totals": {k: totals.get(k, 0) for k in ("completed", "failed", "retried", "stalled")},
        }

    # ----- acting on jobs ---------------------------------------------------------------

    async def update_progress(self, job_id: str, value: int | float | dict[str, Any]) -> None:
        if isinstance(value, bool) or not isinstance(value, int | float | dict):
            raise TypeError(f"progress must be a number from 0 to 100 or a dict, got {value!r}")
        if not isinstance(value, dict) and not 0 <= value <= 100:
            raise ValueError(f"progress must be between 0 and 100, got {value}")
        raw = codec.encode(value, "progress")
        if len(raw) > 8192:
            raise ValueError("progress dicts must encode to at most 8 KiB")
        small = raw if len(raw) <= 256 else b""
        await self._run("progress", [job_id, raw, small, scripts.new_call_id()])

    async def update_job_data(self, job_id: str, data: Any) -> None:
        """Replaces a job's data (BullMQ's ``updateData``), in any state: ``data`` as for
        ``add()`` (anything msgpack encodes, at most 512 MiB encoded; checked against the
        job name's entry in ``payload_types`` when there is one). A waiting or delayed job
        runs with the new data; an active job's processor keeps the data it started with,
        and its next attempt (a retry, a job that stalled) gets the new data, so a processor
        can record its progress through steps in its own data. A job a worker holds ahead is
        handed back first (this waits for that worker's answer, about a round trip) unless
        it had started already, as an active job. Raises JobNotFound if there is no such
        job (or it is being removed). Safe to re-send: a retried call writes its data once,
        never over a newer call's."""
        if self.payload_types:
            name = await self.redis.hget(self.keys.job(job_id), "n")
            if name is not None and name.decode() in self.payload_types:
                codec.check(data, self.payload_types[name.decode()],
                            f"data of job {job_id!r} ({name.decode()})")
        raw = codec.encode(data, f"data of job {job_id!r}")
        if len(raw) > codec.MAX_VALUE_BYTES:
            codec.check_size(raw, f"data of job {job_id!r}")
        reply = await self._run("update_data", [job_id, raw])
        if isinstance(reply, list):
            await holders_answer(self, job_id, reply[2], int(reply[1]))
        elif not reply:
            raise JobNotFound(f"job {job_id} does not exist")

    async def change_priority(self, job_id: str, priority: int, *, lifo: bool = False) -> None:
        """Changes a job's priority (BullMQ's ``changePriority``): an integer from 0 (none)
        to MAX_PRIORITY, 1 first; ``lifo=True`` (priority 0 only) puts it at the head of the
        plain line instead of its end. A waiting job moves to the end of its new priority's line
        at once, as if added now (the same priority leaves it in place); in any other state
        the new priority counts from the job's next time waiting (falling due, a retry).
        A job a worker holds ahead is waiting to everyone else: it is handed back to its new
        place (this waits for that worker's answer, about a round trip), unless the worker
        had started it (then it is active, as above). Raises JobNotFound if
        there is no such job, ValueError for a bad priority. Safe to re-send."""
        if isinstance(priority, bool) or not isinstance(priority, int) or not (
                0 <= priority <= MAX_PRIORITY):
            raise ValueError(f"priority must be an integer from 0 to {MAX_PRIORITY}, "
                             f"got {priority!r}")
        if not isinstance(lifo, bool):
            raise TypeError(f"lifo must be a bool, got {lifo!r}")
        if lifo and priority:
            raise ValueError(f"lifo applies to priority 0 only, got priority {priority}")
        reply = await self._run("change_priority", [job_id, -1 if lifo else priority])
        if isinstance(reply, list):
            # Held: its holder hands it back to its new place, or had started it.
            await holders_answer(self, job_id, reply[2], int(reply[1]))
        elif not reply:
            raise JobNotFound(f"job {job_id} does not exist")
        if priority > 0 or lifo:
            local_controls.notify(self.keys.base, "priority")

    async def change_delay(self, job_id: str, delay: float) -> float:
        """Makes a delayed job fall due ``delay`` seconds from now (BullMQ's
        ``changeDelay``; 0: due at once); returns when (Unix seconds, Redis's clock). Raises
        JobNotFound if there is no such job, InvalidJobState if it is not delayed or is a
        scheduler's firing (change the scheduler instead), ValueError for a bad delay.
        Emits ``delayed``. Safe to re-send: a re-sent call counts from its first send."""
        ms = round(_seconds("delay", delay) * 1000)
        due_ms = int(await self._run("change_delay", [job_id, ms]))
        if not due_ms:
            raise JobNotFound(f"job {job_id} does not exist")
        # Falling due with a priority, it goes ahead of what this process's workers hold
        # (as for an add with a delay); told whatever its priority (one round trip's pause
        # of held starts at most, when it has none).
        local_controls.notify(self.keys.base, "priority", ms / 1000.0)
        return due_ms / 1000.0

    async def add_log(self, job_id: str, line: str, keep: int = 1000) -> int:
        if not isinstance(line, str):
            raise TypeError(f"log lines are strings, got {type(line).__name__}")
        _count("add_log keep (0 keeps every line)", keep, 0)
        return int(await self._run("log", [job_id, line, keep, scripts.new_call_id()]))

    async def clear_job_logs(self, job_id: str, keep: int = 0) -> None:
        """Deletes a job's log lines but the last ``keep`` (BullMQ's ``job.clearLogs``).
        Safe to re-send. ValueError for keep < 0."""
        _count("clear_job_logs keep", keep, 0)
        key = self.keys.logs(job_id)
        if keep:
            await self.redis.ltrim(key, -keep, -1)
        else:
            await self.redis.delete(key)

    async def trim_events(self, max_length: int) -> None:
        """Trims the queue's events stream to about its last ``max_length`` entries
        (BullMQ's ``trimEvents``; ``events_max_len`` caps it as it grows). Safe to re-send.
        ValueError for max_length < 0."""
        _count("trim_events max_length", max_length, 0)
        await self.redis.xtrim(self.keys.events, maxlen=max_length, approximate=False)

    async def get_deduplication_job_id(self, dedup_id: str) -> str | None:
        """The id of the job holding dedup id ``dedup_id`` (BullMQ's
        ``getDeduplicationJobId``), or None when it is free. With a ttl the id is held
        until it expires, and the job named may be gone."""
        raw = await self.redis.get(self._dedup_key(dedup_id))
        return raw.decode() if raw is not None else None

    async def remove_deduplication_key(self, dedup_id: str) -> bool:
        """Frees dedup id ``dedup_id`` at once (BullMQ's ``removeDeduplicationKey``): the
        next add with it adds a job, whatever the job that held it does. True if it was
        held. The job that held it keeps running and frees nothing when it ends; an add kept
        for when it ends (``keep_last_if_active``) is added at once, as it would be if made
        now. Safe to re-send (a re-send answers as the first send did, and frees nothing
        taken since)."""
        self._dedup_key(dedup_id)  # checks it
        return bool(await self._run("remove_dedup", [dedup_id]))

    def _dedup_key(self, dedup_id: str) -> str:
        if not isinstance(dedup_id, str) or not dedup_id:
            raise ValueError(f"a dedup id is a non-empty string, got {dedup_id!r}")
        return f"{self.keys.base}:dedup:{dedup_id}"

    async def retry_job(self, job_id: str, state: str | None = None) -> None:
        """Sends a finished job back to waiting with fresh attempts. JobNotFound if it does
        not exist; InvalidJobState if it is not finished, or not in ``state`` ("failed" or
        "completed") when one is given."""
        if state not in (None, "failed", "completed"):
            raise ValueError(f"retry_job takes state 'failed', 'completed' or None, got {state!r}")
        if not await self._run("requeue", [state or "", job_id, 1]):
            raise JobNotFound(f"job {job_id} does not exist")
        local_controls.notify(self.keys.base, "priority")

    async def promote_job(self, job_id: str) -> None:
        await self._run("promote", [job_id, 1])
        local_controls.notify(self.keys.base, "priority")

    async def remove_job(self, job_id: str) -> bool:
        """Removes a job that is not active; False if there is no such job.

        A job a worker holds ahead (waiting, to everyone else) is handed back and deleted:
        remove() waits for that answer (about a round trip). If the worker had started it
        already, it raises ``InvalidJobState`` and the job runs on: a removed job never runs.
        """
        return await self._remove(job_id, unfinished=False)

    async def abort(self, job_id: str, timeout: float | None = None) -> bool:
        """Stops a job wherever it is (arq's ``Job.abort``, Celery's ``revoke``): one that
        has not started (waiting, delayed, held ahead by a worker, a flow parent waiting for
        its children, with them) is removed, as by ``remove_job``; a running one is
        cancelled, as by ``cancel``, and this waits for its end (as arq's does): True if it
        failed as "cancelled", False if it ended otherwise first (its worker had decided
        its outcome before the cancel reached it). False too for a job that had finished
        (it is left as it is) or does not exist. A job that starts while this runs is
        cancelled, and one whose attempt ended meanwhile and that went back to the queue
        for another is removed. ``timeout``: seconds to wait for a running job's end
        (None: as long as it takes; a dead worker's job ends when its lease runs out);
        TimeoutError past it, the cancel still asked."""
        for _ in range(ABORT_ROUNDS):
            try:
                return await self._remove(job_id, unfinished=True)
            except InvalidJobState:
                pass  # active, or held and started before the removal reached its worker
            if await self.cancel(job_id):
                return await self._ended_cancelled(job_id, timeout)
            # It left active before the cancel reached it: finished, or back in the queue
            # for another attempt (a retry, Delayed, a rate limit), to remove in turn.
            if await self.get_state(job_id) not in ("waiting", "delayed", "paused", "active"):
                return False
        return False

    async def _ended_cancelled(self, job_id: str, timeout: float | None) -> bool:
        """Waits for the end of a job asked to cancel: whether it failed as cancelled (a
        retry that crossed the cancel fails so too: lua/finish.lua). From its outcome
        event when retention deleted it as it ended (minique/waiter.py)."""
        from . import waiter

        try:
            await waiter.wait_until_finished(self, job_id, 0.0, timeout)
        except JobFailed as exc:
            return exc.reason == "cancelled"
        except JobNotFound:
            return False
        return False

    async def _remove(self, job_id: str, *, unfinished: bool) -> bool:
        reply = await self._run("remove", [job_id, "1" if unfinished else ""])
        if not isinstance(reply, list):
            return bool(reply)
        if int(reply[0]) == 3:
            # Removed; a flow child of it that a worker held was marked for deletion: its
            # hold runs out before this returns, so it cannot start afterwards.
            await self._wait_out_holds(reply[1])
            return True
        if not await self._held_removals([job_id], int(reply[1])):
            raise InvalidJobState(f"job {job_id} had started before remove() reached its "
                                  f"worker; it was not removed")
        return True

    async def _held_removals(self, marked: list[str], wait_ms: int) -> list[str]:
        """Of held jobs marked for deletion (remove.lua, clean.lua), those removed: handed
        back by their holder and deleted, or whose holder did not answer within its hold
        (``wait_ms``, what was left of it) and HELD_REMOVE_WAIT, which cannot start them
        any more, so their removal completes here (lua/remove.lua). One its holder had
        started runs on, as an active job would, and is left out. Polls every 5 ms, one
        pipeline of reads per poll."""
        removed: list[str] = []
        loop = asyncio.get_running_loop()
        deadline = loop.time() + max(0, wait_ms) / 1000.0 + HELD_REMOVE_WAIT
        while marked and loop.time() < deadline:
            async with self.redis.pipeline(transaction=False) as pipe:
                for job_id in marked:
                    pipe.hget(self.keys.job(job_id), "st")
                states = await pipe.execute()
            removed += [j for j, st in zip(marked, states, strict=True) if st is None]
            marked = [j for j, st in zip(marked, states, strict=True) if st == b"removed"]
            if marked:
                await asyncio.sleep(0.005)
        for job_id in marked:
            await self._run("remove", [job_id, "1"])
            removed.append(job_id)
        return removed

    async def cancel(self, job_id: str) -> bool:
        """Asks the worker running ``job_id`` to cancel it; False if it is not active.

        A job a worker holds ahead is waiting to everyone else, and a cancel does not reach
        a waiting job: cancel() asks that worker and waits for the answer (about a round
        trip). True if the worker had started the job already (it is cancelled), False if
        not (it goes back to its place and runs in its turn). A holder that does not answer
        within its hold and HELD_REMOVE_WAIT (frozen or gone) may have started it: True,
        and the cancel holds whatever it did (resumed, it hands the job back and the job
        fails as cancelled; gone, the job fails so when its lease runs out). True does not
        promise the outcome: a processor that returned before the cancel reached its worker
        keeps its result (``abort()`` waits for the end and says which)."""
        reply = await self._run("cancel", [job_id])
        if not isinstance(reply, list):
            return bool(reply)
        loop = asyncio.get_running_loop()
        deadline = loop.time() + int(reply[1]) / 1000.0 + HELD_REMOVE_WAIT
        decided = False
        while True:
            st, cx, reason = await self.redis.hmget(self.keys.job(job_id), "st", "cx", "fr")
            if st not in (b"held", b"removed") or decided:
                # Started and cancelled there already (failed as such), or running with
                # the request on its way: True. Handed back (the flag gone), or finished
                # before the request reached it: False.
                # A held job that started and finished between two calls of its worker
                # (its start came with its result) was running when asked, as an active
                # job one taken at a time would have been: True. (A hand-back clears the
                # flag, lua/finish.lua: the job ran since is not that one.)
                return (st == b"active" and cx is not None) or (
                    st == b"failed" and reason == b"cancelled") or (
                    st in (b"completed", b"failed") and cx is not None)
            if loop.time() >= deadline:
                # The holder is frozen or gone. True, and the cancel now holds whatever
                # it did: handed back later, the job fails as cancelled (lua/cancel.lua).
                if await self._run("cancel", [job_id, "decide"]):
                    return True
                decided = True  # it answered meanwhile: what became of the job says
                continue
            await asyncio.sleep(0.005)

    # ----- acting on the queue ----------------------------------------------------------

    async def _wait_out_holds(self, ms: Any) -> None:
        """Sleeps until the longest hold a worker was granted has run out (the script that
        changed a control returned how long that is, by the Redis clock): from then on no
        job held before the change starts. Bounded by the hold a worker may ask for."""
        if int(ms) > 0:
            await asyncio.sleep(int(ms) / 1000.0 + 0.001)

    async def pause(self) -> None:
        """Stops every worker taking jobs. When it returns, no worker starts another job:
        jobs held ahead by workers have been handed back (or their hold has run out)."""
        await self._wait_out_holds(await self._run("set_paused", ["1"]))

    async def resume(self) -> None:
        await self._run("set_paused", ["0"])

    async def drain(self, delayed: bool = False) -> int:
        """Removes every waiting job (and delayed ones if asked); returns how many. Jobs
        that workers hold ahead count as waiting: they are removed too, and none of them
        starts after drain() returns; one that had started already (its worker's note on
        the way) runs on and is not counted, as an active job."""
        total = 0
        marked: list[Any] = []
        # Held jobs are marked before the waiting ones go, and again after: a job its worker
        # hands back in between (its hold ran out) is then either marked or waiting when
        # the waiting phase passes (lua/drain.lua).
        while True:
            reply = await self._run("drain", ["0", BATCH, "mark"])
            marked.extend(reply[2:])
            if len(reply) - 2 < BATCH:
                break
        while True:
            n, _ = await self._run("drain", ["1" if delayed else "0", BATCH, ""])
            total += int(n)
            if int(n) < BATCH:
                break
        while True:
            reply = await self._run("drain", ["0", BATCH, "held"])
            marked.extend(reply[2:])
            if int(reply[1]) >= 0:
                await self._wait_out_holds(reply[1])
                # Held jobs whose workers have not handed them back go now, page by page.
                kept = 0
                while True:
                    seen, left = await self._run("drain", [str(kept), BATCH, "gone"])
                    kept += int(left)
                    if int(seen) < BATCH:
                        break
                return total + await self._held_drained(marked)

    async def _held_drained(self, marked: list[Any]) -> int:
        """How many of the held jobs drain() marked were removed: gone, or still marked
        (their hold is over, so they cannot start). One that had started already (its
        start note was on the way) runs on, and a worker taking one job at a time would
        have had it active: it is not counted."""
        if not marked:
            return 0
        async with self.redis.pipeline(transaction=False) as pipe:
            for job_id in marked:
                pipe.hget(self.keys.job_prefix + _text_id(job_id), "st")
            states = await pipe.execute()
        return sum(1 for st in states if st is None or st == b"removed")

    async def clean(self, grace: float, state: str = "completed", limit: int = 1000) -> list[str]:
        """Removes up to ``limit`` jobs of ``state`` older than ``grace`` seconds by Redis'
        clock (finished before, or for waiting and delayed jobs created before); returns
        their ids. Waiting
        jobs include those waiting in groups. Every script call does bounded work."""
        if state not in ("completed", "failed", "waiting", "delayed"):
            raise ValueError(f"clean takes state completed, failed, waiting or delayed, got {state!r}")
        _seconds("grace", grace)
        if isinstance(limit, bool) or not isinstance(limit, int) or limit < 1:
            raise ValueError(f"clean needs limit >= 1, got {limit!r}")
        # By Redis' clock, which stamped the jobs (a caller's may be off by minutes): each
        # call takes as old what was stamped ``grace`` before its own now (lua/clean.lua).
        cutoff = f"g{round(grace * 1000)}"
        removed: list[str] = []
        if state == "waiting":
            # Held jobs before the others and again after (as drain() marks them): one
            # handed back between would otherwise be behind the waiting phase's cursor.
            removed += await self._clean_held(cutoff, limit)
        cursor: bytes | str = ""  # waiting, delayed: where the last call stopped
        while len(removed) < limit:
            batch = min(BATCH, limit - len(removed))
            if state in ("waiting", "delayed"):
                cursor, *ids = await self._run("clean", [state, cutoff, batch, cursor])
                removed.extend(x.decode() for x in ids)
                if not cursor:
                    break
                continue
            ids = await self._run("clean", [state, cutoff, batch])
            removed.extend(x.decode() for x in ids)
            if len(ids) < batch:
                break
        if state == "waiting" and len(removed) < limit:
            removed += await self._clean_held(cutoff, limit - len(removed))
        if state == "waiting" and len(removed) < limit:
            from . import groups

            removed += await groups.clean_grouped(self, cutoff, limit - len(removed))
        return removed

    async def _clean_held(self, cutoff: str, limit: int) -> list[str]:
        """clean()'s waiting jobs that workers hold ahead: marked for deletion (lua/clean.lua,
        'held'); each counts as removed once its holder has handed it back, or once its hold
        has run out unanswered (then it cannot start); one its holder had started runs on,
        as an active job would, and is not counted."""
        removed: list[str] = []
        cursor: bytes | str = ""
        while len(removed) < limit:
            cursor, wait, *raw = await self._run(
                "clean", ["held", cutoff, min(BATCH, limit - len(removed)), cursor])
            removed += await self._held_removals([x.decode() for x in raw], int(wait))
            if not cursor:
                break
        return removed

    async def retry_jobs(self, state: str = "failed", count: int | None = None) -> int:
        """Sends failed (or completed) jobs back to waiting with fresh attempts."""
        if state not in ("failed", "completed"):
            raise ValueError(f"retry_jobs takes state 'failed' or 'completed', got {state!r}")
        if count is not None:
            _count("count (or None)", count)
        total = 0
        while count is None or total < count:
            batch = BATCH if count is None else min(BATCH, count - total)
            n = int(await self._run("requeue", [state, "", batch]))
            total += n
            if n:
                local_controls.notify(self.keys.base, "priority")
            if n < batch:
                break
        return total

    async def promote_jobs(self, count: int | None = None) -> int:
        """Moves delayed jobs (the first ``count`` by due time, or all) to waiting now;
        returns how many. ValueError for a count that is no integer >= 1."""
        if count is not None:
            _count("count (or None)", count)
        total = 0
        while count is None or total < count:
            batch = BATCH if count is None else min(BATCH, count - total)
            n = int(await self._run("promote", ["", batch]))
            total += n
            if n:
                local_controls.notify(self.keys.base, "priority")
            if n < batch:
                break
        return total

    async def obliterate(self, force: bool = False) -> None:
        """Deletes the queue and every job in it, in bounded batches, and leaves no key of
        the queue behind (workers still running write their heartbeat again at their next
        beat). Raises InvalidJobState while jobs are active, unless ``force``. Jobs workers
        hold ahead count as waiting: their holders are asked to hand them back first (this
        waits out their hold, at most 50 ms), and one a holder had started is active."""
        from . import scheduler

        self._id_next = self._id_end = 0  # the id counter goes: ids reserved are void
        flag = "1" if force else "0"
        waited = "0"

        async def delete_all() -> None:
            nonlocal waited
            while True:
                reply = await self._run("obliterate", [BATCH, flag, waited])
                if isinstance(reply, list):
                    # Only held jobs stood in the way: their holders hand them back (or had
                    # started them: then they are active, and the next call refuses).
                    await self._wait_out_holds(reply[1])
                    waited = "1"
                elif int(reply) <= 0:
                    return

        await delete_all()
        # Removing the schedulers writes events and may meet a firing made meanwhile: the
        # last pass deletes what they left.
        if await scheduler.remove_all_job_schedulers(self):
            await delete_all()

    async def sweep(self, budget: int = 1000) -> int:
        """Applies retention now, with the policy that finishing jobs last applied (workers
        also do this periodically, for queues that have gone quiet), and drops the re-send
        records of producers and workers quiet for 30 minutes. Returns jobs removed.
        One script call of bounded work (lua/sweep.lua), more while its samples of
        producers' records come back half spent, at most SWEEP_CALLS_MAX (20)."""
        total = 0
        for _ in range(SWEEP_CALLS_MAX):
            removed, more = await self._run("sweep", [budget])
            total += int(removed)
            if not int(more):
                break
        return total

    async def rate_limit(self, delay: float) -> None:
        """Stops every worker of the queue taking jobs for ``delay`` seconds."""
        _seconds("rate_limit delay", delay)
        if delay <= 0:
            raise ValueError(f"rate_limit delay must be > 0, got {delay}")
        await self._wait_out_holds(
            await self._run("rate_limit", [max(1, round(delay * 1000))]))

    async def get_rate_limit_ttl(self) -> float:
        """Seconds until the queue takes jobs again after ``rate_limit`` (0 if it does)."""
        return max(0, int(await self.redis.pttl(self.keys.pause_until))) / 1000.0

    async def set_global_concurrency(self, limit: int | None) -> None:
        """At most ``limit`` jobs of this queue active at once, across every worker."""
        if limit is not None and (isinstance(limit, bool) or not isinstance(limit, int) or limit < 1):
            raise ValueError(f"global concurrency must be an integer >= 1, got {limit!r}")
        await self._wait_out_holds(
            await self._run("set_global_concurrency", ["" if limit is None else limit]))

    async def get_global_concurrency(self) -> int | None:
        """The queue's global concurrency (set_global_concurrency), or None."""
        raw = await self.redis.hget(self.keys.meta, "gconc")
        return int(raw) if raw else None

    async def remove_global_concurrency(self) -> None:
        """Removes the queue's global concurrency (BullMQ's ``removeGlobalConcurrency``)."""
        await self.set_global_concurrency(None)

    async def set_global_rate_limit(self, max: int, duration: float) -> None:
        """At most ``max`` jobs of this queue start in any ``duration`` seconds, across
        every worker (BullMQ's ``setGlobalRateLimit``; a sliding-window log, as a worker's
        ``limiter``). It wins over the workers' own limiters while it is set. Workers hold
        no job ahead under it: they hand back what they hold, and this returns once the
        holds granted before it have run out. ValueError for max < 1 or a duration outside
        (0, 10 years]."""
        _count("global rate limit max", max)
        ms = round(_seconds("global rate limit duration", duration) * 1000)
        if ms < 1:
            raise ValueError(f"global rate limit duration must be at least 1 ms, got {duration!r}")
        await self._wait_out_holds(await self._run("set_global_rate_limit", [f"{max}:{ms}"]))

    async def get_global_rate_limit(self) -> dict[str, float] | None:
        """``{"max": n, "duration": s}`` of set_global_rate_limit, or None."""
        raw = await self.redis.hget(self.keys.meta, "glim")
        if not raw:
            return None
        n, ms = raw.decode().split(":")
        return {"max": int(n), "duration": int(ms) / 1000.0}

    async def remove_global_rate_limit(self) -> None:
        """Removes the queue's global rate limit: the workers' own limiters apply again."""
        await self._run("set_global_rate_limit", [""])

    async def get_workers(self) -> list[WorkerInfo]:
        """The live workers of this queue (from their heartbeats), as WorkerInfo structs."""
        names = await self.redis.zrange(self.keys.workers, 0, -1)
        if not names:
            return []
        async with self.redis.pipeline(transaction=False) as pipe:
            for n in names:
                pipe.get(f"{self.keys.base}:worker:{n.decode()}")
            raw = await pipe.execute()
        return [msgspec.msgpack.decode(r, type=WorkerInfo) for r in raw if r]

    # ----- groups (minique/groups.py) ---------------------------------------------------

    async def set_group_options(self, group: str, *, concurrency: int | None = None,
                                limiter: Mapping[str, Any] | None = None) -> None:
        """The group's own limits: at most ``concurrency`` jobs active, at most
        ``limiter["max"]`` starts per ``limiter["duration"]`` s (sliding window), across
        every worker. None falls back to the group defaults. ValueError/TypeError on bad input."""
        from . import groups

        await groups.set_group_options(self, group, concurrency=concurrency, limiter=limiter)

    async def set_group_defaults(self, *, concurrency: int | None = None,
                                 limiter: Mapping[str, Any] | None = None) -> None:
        """Limits of every group without settings of its own (None: no limit)."""
        from . import groups

        await groups.set_group_defaults(self, concurrency=concurrency, limiter=limiter)

    async def pause_group(self, group: str) -> None:
        """The group starts no job until ``resume_group``; other groups go on."""
        from . import groups

        await groups.pause_group(self, group)

    async def resume_group(self, group: str) -> None:
        from . import groups

        await groups.resume_group(self, group)

    async def get_groups(self, start: int = 0, end: int = 99, *,
                         by: str = "waiting") -> list[GroupInfo]:
        """A page of the queue's groups (GroupInfo): ``by="waiting"`` (every group, most
        waiting jobs first), ``"active"`` (most running jobs first), ``"paused"`` (latest
        paused first) or ``"throttled"`` (asleep until a time, latest to wake first). At
        most 10,000 per page; ValueError/TypeError on bad input."""
        from . import groups

        return await groups.get_groups(self, start, end, by=by)

    async def get_group(self, group: str) -> GroupInfo | None:
        """One group's GroupInfo, or None if the queue does not know the group."""
        from . import groups

        return await groups.get_group(self, group)

    async def get_group_counts(self) -> GroupCounts:
        """How many groups there are in all, running jobs, paused, throttled, ready."""
        from . import groups

        return await groups.get_group_counts(self)

    async def get_group_defaults(self) -> GroupDefaults:
        """The limits set by ``set_group_defaults`` (None: no limit)."""
        from . import groups

        return await groups.get_group_defaults(self)

    async def get_group_job_ids(self, group: str, start: int = 0, end: int = 49) -> list[str]:
        """Ids of the group's waiting jobs, in the order the group starts them."""
        from . import groups

        return await groups.get_group_job_ids(self, group, start, end)

    async def get_group_jobs(self, group: str, start: int = 0, end: int = 49) -> list[Job]:
        """The group's waiting jobs (ranks ``start`` to ``end``, at most 100,000), in the
        order the group starts them; its running jobs are among ``get_jobs("active")``."""
        from . import groups

        return await groups.get_group_jobs(self, group, start, end)

    # ----- job schedulers (minique/scheduler.py) ----------------------------------------

    async def upsert_job_scheduler(self, scheduler_id: str, **options: Any) -> JobScheduler:
        """Creates or updates a recurring job (cron or every-N); see minique/scheduler.py."""
        from . import scheduler

        return await scheduler.upsert_job_scheduler(self, scheduler_id, **options)

    async def get_job_schedulers(self) -> list[JobScheduler]:
        from . import scheduler

        return await scheduler.get_job_schedulers(self)

    async def get_job_scheduler(self, scheduler_id: str) -> JobScheduler | None:
        """One scheduler (BullMQ's ``getJobScheduler``), or None if there is none."""
        from . import scheduler

        return await scheduler.get_job_scheduler(self, scheduler_id)

    async def remove_job_scheduler(self, scheduler_id: str) -> bool:
        from . import scheduler

        return await scheduler.remove_job_scheduler(self, scheduler_id)

    async def close(self) -> None:
        """Stops the events reader, settles the calls whose outcome is unknown where Redis
        answers (so that no late copy of them adds anything after the producer is gone),
        and gives back its connections (the client's too when the Queue made it)."""
        if self._event_hub is not None:
            await self._event_hub.stop()
        if self._fences and os.getpid() == self._producer_pid:
            with contextlib.suppress(RedisError, OSError):
                await self._fences.fence(self._link or self.redis)
        if self._link is not None:
            await self._link.release()
        if self._own:
            await self.redis.aclose()

    async def __aenter__(self) -> Queue:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()


__all__ = ["MAX_PRIORITY", "Queue"]
