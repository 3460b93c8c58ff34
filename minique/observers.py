"""The worker's observer hooks: a typed protocol for metrics, tracing and error reporting.

``Worker(..., observers=[obs])`` calls each observer on the worker's event loop, in the
order given, right where a job starts and where its attempt's result is recorded. Hooks
must be quick and must not block (hand slow work to a thread or a queue of your own); an
exception in a hook is logged and never affects the job. ``WorkerMetrics``
(``minique.metrics``) is one observer; see the docs' "Observers" guide for an example that
sends failures to an error tracker and timings to a metrics system.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Literal, Protocol, runtime_checkable

if TYPE_CHECKING:
    from .job import Job

Outcome = Literal["completed", "failed", "retried", "requeued", "delayed"]


@runtime_checkable
class WorkerObserver(Protocol):
    """What a worker calls. Subclass it to inherit no-op hooks and override the ones you need,
    or write any class with these three methods.

    ``queue`` is the queue's name; ``job`` is the job as the worker took it (``job.id``,
    ``job.name``, ``job.attempts_made`` before this attempt, ``job.data``...).
    """

    def job_started(self, queue: str, job: Job) -> None:
        """A job's attempt is starting (after any time it was held by prefetch)."""

    def job_finished(self, queue: str, job: Job, outcome: Outcome, seconds: float) -> None:
        """An attempt ended. ``outcome``: ``completed``; ``failed`` (for good); ``retried``
        (failed, will run again); ``requeued`` (back to waiting without using an attempt:
        shutdown, ``RateLimited``, ``GroupRateLimited``, a batch handed back unstarted);
        ``delayed`` (``Delayed``). ``seconds``: its run time."""

    def job_failed(self, queue: str, job: Job, reason: str, stacktrace: str, final: bool) -> None:
        """An attempt raised. ``reason`` is ``"ExceptionType: message"`` as stored with the
        job, ``stacktrace`` the formatted traceback (at most 8,000 characters), ``final``
        True when the job failed for good (no attempt left, or ``UnrecoverableError``).
        Called before ``job_finished`` of the same attempt."""
