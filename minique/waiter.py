"""Waiting for one job's outcome (``Job.wait_until_finished``).

The outcome comes from the job itself while it exists, and from the queue's events stream
once it is gone: ``completed`` events carry the return value (up to 16 KiB; a larger one
only when retention removes the job as it finishes) and ``failed`` events the reason. So
a job that retention removed, by count, by age or at once, still answers a waiter that
was waiting for it, or that came shortly after (as long as the capped stream still holds
the event). A job removed by hand answers with JobNotFound as soon as its ``removed``
event passes, however busy the queue.
"""

from __future__ import annotations

import asyncio
import contextlib
from typing import TYPE_CHECKING, Any

from . import codec
from .errors import JobFailed, JobNotFound
from .events import Event, entry_order, last_event_id, read_events, read_events_back

if TYPE_CHECKING:
    from .queue import Queue

OUTCOMES = frozenset({"completed", "failed", "removed"})
STATE_CHECK = 1.0  # seconds between reads of the job itself, in case an event was missed
LOOKBACK = 20_000  # events read back at most for a job that is already gone
PAGE = 500
READS_AT_ONCE = 20
_PENDING: Any = object()


class _Watch:
    """One waiter's interest in one job, fed by its queue's _EventHub."""

    __slots__ = ("error", "job_id", "outcomes", "poke", "recheck", "since")

    def __init__(self, job_id: str) -> None:
        self.job_id = job_id
        self.poke = asyncio.Event()
        # Outcome events of the job id that the reader met, in stream order. The reader may
        # lag behind the stream: those at or before ``since`` (the stream's last entry when
        # the waiter first read its job) are older than that read, e.g. of an earlier job
        # with the same id, and do not answer.
        self.outcomes: list[Event] = []
        self.since: tuple[int, int] | None = None
        self.recheck = False
        self.error: BaseException | None = None

    def outcome(self) -> Event | None:
        """The first outcome event newer than the waiter's first read of its job."""
        since = self.since
        if since is None:
            return None
        for event in self.outcomes:
            if entry_order(event.event_id) > since:
                return event
        self.outcomes.clear()
        return None


class _EventHub:
    """One reader of a queue's events stream for every waiter of that Queue object.

    A reader per waiter held a connection each on a blocking XREAD: a few hundred waiters
    (BullMQ's waitUntilFinished on each job of a batch) ran the Queue's connection pool dry
    (MaxConnectionsError), and each read every event of the queue. The hub reads each
    event once, with one connection, and hands outcomes to the waiters of their job. It
    runs while someone waits, and takes its cursor before a new waiter reads its job, so
    an outcome in between is never missed."""

    def __init__(self, queue: Queue) -> None:
        self._queue = queue
        self._loop = asyncio.get_running_loop()
        self._by_job: dict[str, set[_Watch]] = {}
        self._count = 0
        self._task: asyncio.Task[None] | None = None
        self._ready: asyncio.Future[None] | None = None
        # Waiters' own reads of their jobs, at most this many at once, so that they leave
        # connections of the Queue's pool (redis-py's holds 100, and raises when they are
        # all taken) to everything else.
        self.reads = asyncio.Semaphore(READS_AT_ONCE)

    @staticmethod
    def of(queue: Queue) -> _EventHub:
        hub: _EventHub | None = getattr(queue, "_event_hub", None)
        if hub is None or hub._loop is not asyncio.get_running_loop():
            hub = _EventHub(queue)
            queue._event_hub = hub
        return hub

    async def watch(self, job_id: str) -> _Watch:
        """Registers a waiter; returns once the reader's cursor is taken. Raises the
        reader's error if it could not take one."""
        w = _Watch(job_id)
        self._by_job.setdefault(job_id, set()).add(w)
        self._count += 1
        if self._task is None or self._task.done():
            self._ready = self._loop.create_future()
            self._task = asyncio.create_task(self._run(self._ready))
        assert self._ready is not None
        try:
            await asyncio.shield(self._ready)
        except BaseException:
            self.unwatch(w)
            raise
        return w

    def unwatch(self, w: _Watch) -> None:
        mine = self._by_job.get(w.job_id)
        if mine is not None and w in mine:
            mine.discard(w)
            self._count -= 1
            if not mine:
                del self._by_job[w.job_id]

    async def stop(self) -> None:
        """Stops the reader (Queue.close); its waiters raise ConnectionError."""
        task = self._task
        if task is None or task.done() or self._loop is not asyncio.get_running_loop():
            return
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task

    def _everyone(self) -> list[_Watch]:
        return [w for ws in self._by_job.values() for w in ws]

    async def _run(self, ready: asyncio.Future[None]) -> None:
        queue = self._queue
        try:
            cursor = await last_event_id(queue.redis, queue.keys)
        except Exception as exc:
            ready.set_exception(exc)
            return
        ready.set_result(None)
        try:
            while self._count > 0:
                events = await read_events(queue.redis, queue.keys, cursor, STATE_CHECK,
                                           count=PAGE)
                for event in events:
                    if event.name in OUTCOMES and event.job_id is not None:
                        for w in self._by_job.get(event.job_id, ()):
                            w.outcomes.append(event)
                            w.poke.set()
                    elif event.name == "drained":
                        # A drain removes waiting jobs without an event per job.
                        for w in self._everyone():
                            w.recheck = True
                            w.poke.set()
                if events:
                    cursor = events[-1].event_id
        except BaseException as exc:
            # The waiters raise what the reader met (their own reads used to raise it).
            for w in self._everyone():
                w.error = exc if isinstance(exc, Exception) else ConnectionError(
                    "the events reader was stopped")
                w.poke.set()
            if not isinstance(exc, Exception):
                raise


async def wait_until_finished(queue: Queue, job_id: str, added_at: float,
                              timeout: float | None) -> Any:
    """The job's return value; raises JobFailed(reason) if it failed, JobNotFound if it was
    removed or never existed, TimeoutError after ``timeout`` seconds (None: no limit).
    ``added_at`` (seconds, 0 if unknown) bounds how far back the events are searched."""
    loop = asyncio.get_running_loop()
    deadline = None if timeout is None else loop.time() + timeout
    hub = _EventHub.of(queue)
    # The hub's cursor is taken before the job is read, so an outcome in between is seen.
    watch = await hub.watch(job_id)
    try:
        async with hub.reads:
            outcome = await _job_outcome(queue, job_id, added_at, watch)
        if outcome is not _PENDING:
            return outcome
        next_check = loop.time() + STATE_CHECK
        while True:
            remaining = STATE_CHECK if deadline is None else min(STATE_CHECK,
                                                                 deadline - loop.time())
            if remaining <= 0:
                raise TimeoutError(f"job {job_id} did not finish within {timeout}s")
            # asyncio.timeout: wait_for can swallow a cancel on Python 3.11.
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(remaining):
                    await watch.poke.wait()
            watch.poke.clear()
            if watch.error is not None:
                raise watch.error
            event = watch.outcome()
            if event is not None:
                async with hub.reads:
                    return await _settle(queue, job_id, event)
            if watch.recheck or loop.time() >= next_check:
                watch.recheck = False
                async with hub.reads:
                    outcome = await _job_outcome(queue, job_id, added_at)
                if outcome is not _PENDING:
                    return outcome
                next_check = loop.time() + STATE_CHECK
    finally:
        hub.unwatch(watch)


async def _job_outcome(queue: Queue, job_id: str, added_at: float,
                       first: _Watch | None = None) -> Any:
    """The return value of a finished job, _PENDING if it has not finished; raises the
    failure, or JobNotFound. A job that is gone is looked for in the events. ``first``:
    the waiter's first read, which also takes the stream's last entry (its ``since``),
    before the job, in the same round trip."""
    # Only the fields needed: a job whose other fields are corrupt still reports.
    if first is None:
        state, rv, reason = await queue.redis.hmget(queue.keys.job(job_id), "st", "rv", "fr")
    else:
        async with queue.redis.pipeline(transaction=False) as pipe:
            pipe.xrevrange(queue.keys.events, "+", "-", count=1)
            pipe.hmget(queue.keys.job(job_id), "st", "rv", "fr")
            last, (state, rv, reason) = await pipe.execute()
        first.since = entry_order(last[0][0]) if last else (0, 0)
    if state == b"completed":
        return None if not rv else codec.decode(rv, job_id, "return value")
    if state == b"failed":
        raise JobFailed(job_id, _text(reason) or "unknown reason")
    if state is None:
        event = await _find_outcome(queue, job_id, added_at)
        if event is None:
            raise JobNotFound(f"job {job_id} does not exist")
        return await _settle(queue, job_id, event)
    return _PENDING


async def _settle(queue: Queue, job_id: str, event: Event) -> Any:
    if event.name == "failed":
        raise JobFailed(job_id, event.fields.get("reason") or "unknown reason")
    if event.name == "removed":
        raise JobNotFound(f"job {job_id} was removed")
    if event.value is not None:
        return event.return_value
    # A value too large for the event stays with the job, which retention may have removed.
    state, rv = await queue.redis.hmget(queue.keys.job(job_id), "st", "rv")
    if state != b"completed":
        raise JobNotFound(f"job {job_id} completed, but retention removed it before its "
                          f"return value (over 16 KiB, so not in the event) was read")
    return None if not rv else codec.decode(rv, job_id, "return value")


async def _find_outcome(queue: Queue, job_id: str, added_at: float) -> Event | None:
    """The newest outcome event of the job, searched back to its ``added`` event, to the
    time it was added (less a second for clock skew), or LOOKBACK events at most."""
    before, scanned = "+", 0
    oldest = added_at - 1.0 if added_at > 0 else 0.0
    while scanned < LOOKBACK:
        page = await read_events_back(queue.redis, queue.keys, before, PAGE)
        for event in page:
            if event.job_id == job_id:
                if event.name in OUTCOMES:
                    return event
                if event.name == "added":
                    return None
            if event.time < oldest:
                return None
        if len(page) < PAGE:
            return None
        before, scanned = page[-1].event_id, scanned + len(page)
    return None


def _text(raw: bytes | None) -> str | None:
    return None if raw is None else raw.decode(errors="replace")
