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
from typing import TYPE_CHECKING, Any

from . import codec
from .errors import JobFailed, JobNotFound
from .events import Event, last_event_id, read_events, read_events_back

if TYPE_CHECKING:
    from .queue import Queue

OUTCOMES = frozenset({"completed", "failed", "removed"})
STATE_CHECK = 1.0  # seconds between reads of the job itself, in case an event was missed
LOOKBACK = 20_000  # events read back at most for a job that is already gone
PAGE = 500
_PENDING: Any = object()


async def wait_until_finished(queue: Queue, job_id: str, added_at: float,
                              timeout: float | None) -> Any:
    """The job's return value; raises JobFailed(reason) if it failed, JobNotFound if it was
    removed or never existed, TimeoutError after ``timeout`` seconds (None: no limit).
    ``added_at`` (seconds, 0 if unknown) bounds how far back the events are searched."""
    loop = asyncio.get_running_loop()
    deadline = None if timeout is None else loop.time() + timeout
    # The cursor is taken before the job is read, so an outcome in between is still seen.
    cursor = await last_event_id(queue.redis, queue.keys)
    outcome = await _job_outcome(queue, job_id, added_at)
    if outcome is not _PENDING:
        return outcome
    next_check = loop.time() + STATE_CHECK
    while True:
        remaining = STATE_CHECK if deadline is None else min(STATE_CHECK, deadline - loop.time())
        if remaining <= 0:
            raise TimeoutError(f"job {job_id} did not finish within {timeout}s")
        events = await read_events(queue.redis, queue.keys, cursor, remaining)
        recheck = loop.time() >= next_check
        for event in events:
            if event.job_id == job_id and event.name in OUTCOMES:
                return await _settle(queue, job_id, event)
            # A drain removes waiting jobs without an event per job.
            recheck = recheck or event.name == "drained"
        if events:
            cursor = events[-1].event_id
        if recheck:
            outcome = await _job_outcome(queue, job_id, added_at)
            if outcome is not _PENDING:
                return outcome
            next_check = loop.time() + STATE_CHECK


async def _job_outcome(queue: Queue, job_id: str, added_at: float) -> Any:
    """The return value of a finished job, _PENDING if it has not finished; raises the
    failure, or JobNotFound. A job that is gone is looked for in the events."""
    # Only the fields needed: a job whose other fields are corrupt still reports.
    state, rv, reason = await queue.redis.hmget(queue.keys.job(job_id), "st", "rv", "fr")
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
