"""Exceptions that user code raises or catches."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

# The longest delay a processor may ask for (10 years, as for every delay of minique):
# the worker sends it to Lua in ms, where inf cannot be converted and a huge float wraps.
_MAX_DELAY = 10 * 365 * 86400.0


def _delay(kind: str, delay: Any) -> float:
    if isinstance(delay, bool) or not isinstance(delay, int | float):
        raise TypeError(f"{kind} delay must be a number of seconds, got {delay!r}")
    if not 0 <= delay <= _MAX_DELAY:
        raise ValueError(f"{kind} delay must be >= 0 and at most {_MAX_DELAY:.0f} s (10 years), "
                         f"got {delay!r}")
    return float(delay)


class MiniqueError(Exception):
    """Base class of every error minique raises on purpose."""


class UnrecoverableError(MiniqueError):
    """Raised by a processor: fail the job now, whatever attempts remain."""


class RateLimited(MiniqueError):
    """Raised by a processor when an upstream says "slow down" (HTTP 429).

    The job goes back to waiting without using up an attempt, and the queue
    takes no new jobs for ``delay`` seconds. With ``group=True`` only the job's group
    (docs/guide/groups.md) sleeps for ``delay`` and every other group goes on; for a job
    without a group that is a ``Delayed(delay)`` of this job alone.

    ``delay`` is seconds from 0 to 10 years: ValueError outside, TypeError if not a number.
    """

    def __init__(self, delay: float, message: str = "rate limited", group: bool = False) -> None:
        delay = _delay("RateLimited", delay)
        super().__init__(f"{message} (retry in {delay:.3f}s)")
        self.delay = delay
        self.message = message
        self.group = group

    def __reduce__(self) -> tuple[Any, ...]:
        # Rebuilt from its own arguments, so it crosses back from a processes=N child.
        if self.group:
            return RateLimited, (self.delay, self.message, True)
        return type(self), (self.delay, self.message)


class GroupRateLimited(RateLimited):
    """Raised by a processor: the job's group takes no jobs for ``delay`` seconds.

    ``RateLimited(delay, group=True)``: the job goes back to the front of its group
    without using an attempt; other groups go on.
    """

    def __init__(self, delay: float, message: str = "group rate limited") -> None:
        super().__init__(delay, message, group=True)

    def __reduce__(self) -> tuple[Any, ...]:
        return GroupRateLimited, (self.delay, self.message)


class Delayed(MiniqueError):
    """Raised by a processor: run this job again in ``delay`` seconds.

    The job moves to delayed without using up an attempt (BullMQ's ``DelayedError``).
    Unlike ``RateLimited``, the queue goes on taking other jobs: the wait is this job's
    alone, e.g. one account's quota among many. ``delay``: as for ``RateLimited``.
    """

    def __init__(self, delay: float, message: str = "delayed") -> None:
        delay = _delay("Delayed", delay)
        super().__init__(f"{message} (again in {delay:.3f}s)")
        self.delay = delay
        self.message = message

    def __reduce__(self) -> tuple[Any, ...]:
        return type(self), (self.delay, self.message)


class WaitingChildren(MiniqueError):
    """Raised by a processor that added children to its own job (``queue.add(...,
    parent=job)`` while it runs) and waits for them (BullMQ's ``moveToWaitingChildren``
    with ``WaitingChildrenError``): the job moves to ``waiting-children`` without using up
    an attempt, and runs again, from the start, once every child is done (at once if they
    are done already). A child that failed it meanwhile (``on_failure="fail_parent"``)
    fails it instead. docs/guide/flows.md, "Step jobs"."""

    def __init__(self, message: str = "waiting for its children") -> None:
        super().__init__(message)
        self.message = message

    def __reduce__(self) -> tuple[Any, ...]:
        return type(self), (self.message,)


class ProcessorError(MiniqueError):
    """Stands for a processor's exception that could not be pickled back from its child
    process (``processes=N``, minique/pool.py): its message is the original's
    "Type: message", which becomes the attempt's reason as it is."""


class UnrecoverableProcessorError(ProcessorError, UnrecoverableError):
    """Stands for an ``UnrecoverableError`` (a subclass of one's own) that could not be
    pickled back from its child process: the job fails at once, as the original would."""


class PayloadError(TypeError, MiniqueError):
    """A payload or return value that cannot be encoded; names the offending field."""


class JobCorrupted(MiniqueError):
    """A job's stored fields cannot be decoded."""


class JobNotFound(MiniqueError):
    """The job does not exist (removed, or never added)."""


class LockLost(MiniqueError):
    """The worker's lease on a job has expired and another owner (or none) holds it.

    Raised when a worker tries to finish a job with a stale fencing token.
    """


class JobFailed(MiniqueError):
    """``wait_until_finished`` on a job that ended in the failed state."""

    def __init__(self, job_id: str, reason: str) -> None:
        super().__init__(f"job {job_id} failed: {reason}")
        self.job_id = job_id
        self.reason = reason


class InvalidJobState(MiniqueError):
    """An operation that the job's current state does not allow (e.g. remove an active job)."""


class AddOutcomeUnknown(ConnectionError, MiniqueError):
    """Redis never answered an add, so whether the jobs were added is unknown; or it
    refused the add and then refused or did not answer the question whether an earlier
    send of the call had run (lua/fence_add.lua).

    ``job_ids`` are the ids the add gave them (chosen before the first send). The call may
    still run later: a copy of it held in the network can reach Redis minutes after the
    error, so ``get_job()`` finding nothing does not settle it. ``await
    queue.settle(error)`` (``FlowProducer.settle`` for add_flow) does: it makes sure no
    copy of the call runs any more and says which jobs were added. The producer settles
    such calls itself before its next add goes, so adding again through the same Queue
    is safe too, as is adding again with the same ``job_id``.
    """

    def __init__(self, message: str, job_ids: list[str], calls: Sequence[Any] = ()) -> None:
        super().__init__(message)
        self.job_ids = job_ids
        # The producer's calls in question (minique/unsettled.py UnsettledCall).
        self.calls = tuple(calls)


class SettleError(MiniqueError):
    """``settle`` could not tell what became of a call: Redis did not answer the fence,
    or the call is too old (its producer made more than 48 calls since, or its outcome is
    no longer kept). Adding its jobs again may add them twice."""


class AddBulkIncomplete(MiniqueError):
    """Redis refused some of an ``add_bulk``'s calls (250 jobs each) after it had run
    others: out of memory (``maxmemory`` with ``noeviction``), a replica turned read-only
    after a failover, writes stopped after a failed RDB save.

    ``added`` are the jobs that were added, ``not_added`` the positions (from 0) of the
    items that were not, and never will be: a refused call whose earlier send may have
    run is asked about and fenced off first (lua/fence_add.lua), so that a late copy of
    it adds nothing; ``__cause__`` is Redis' refusal. Adding the items of
    ``not_added`` again is safe; adding the whole list again would add the others twice
    (their automatic ids are new ones).
    """

    def __init__(self, message: str, added: list[Any], not_added: list[int]) -> None:
        super().__init__(message)
        self.added = added
        self.not_added = not_added


class AddNotSent(MiniqueError):
    """An add that never reached Redis, so nothing was added: it waited to go with other
    concurrent adds, and the task sending them was cancelled first (a loop shutting down).
    Adding again is safe."""


def wire_text(text: str) -> str:
    """``text`` if it encodes as UTF-8; else with what does not (lone surrogates, which
    os.fsdecode makes of a file name that is not UTF-8) written as backslash escapes
    ("caf\\udce9"): text a processor hands over (an exception's message, a stack trace)
    must not break the call, the log line or the log handler that carries it."""
    if text.isascii():
        return text
    try:
        text.encode()
    except UnicodeEncodeError:
        return text.encode("utf-8", "backslashreplace").decode()
    return text


def failure_summary(exc: BaseException) -> str:
    """"Type: message" of a processor's exception, or "Type" when its message is empty
    (wire_text: always UTF-8). An exception whose ``__str__`` raises is summed up as
    "Type: <str() failed>": a library's broken error class must fail the job, not what
    reports it."""
    try:
        text = wire_text(str(exc))
    except Exception:
        text = "<str() failed>"
    if isinstance(exc, ProcessorError):
        return text  # the original's summary, made in its process
    return f"{type(exc).__name__}: {text}" if text else type(exc).__name__
