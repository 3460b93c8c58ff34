"""What a job does when its work raises: the app's errors mapped to the queue's outcomes.

The Amazon client and the business logic know nothing of queues; this is the one place
that decides, for each of their errors, what the worker does with the job:

* ``AmazonRateLimited`` (a 429, or our shared quota bucket is empty) -> ``Delayed``: that
  job alone waits out the quota, without using an attempt. Amazon's quotas are per selling
  account and operation, so the queue goes on with other accounts' jobs meanwhile.
* ``AmazonReportNotReady`` (Amazon is still generating a report) -> ``Delayed`` by the poll
  interval: waiting for Amazon is not a failure.
* ``AccountDisconnected``, ``AmazonClientError`` (a 4xx that retrying cannot fix),
  ``AccountUnavailable`` (removed or disabled) and ``WebhookRejected`` ->
  ``UnrecoverableError``: failed at once.
* Anything else (5xx, timeouts, undecodable bodies, failed reports) is raised unchanged and
  retried with the queue's backoff.

Queue groups (per-account concurrency and rate limits, another issue) will plug in where
jobs are added (``processors/schedules.py``, ``processors/cli.py``): one group per account.
"""

from __future__ import annotations

import functools
from collections.abc import Awaitable, Callable
from typing import Any

from minique import Delayed, Job, UnrecoverableError
from processors.amazon import (
    AccountDisconnected,
    AmazonClientError,
    AmazonRateLimited,
    AmazonReportNotReady,
)
from processors.sync_logic import AccountUnavailable, WebhookRejected

Processor = Callable[[Job], Awaitable[dict[str, Any]]]

_UNRECOVERABLE = (AccountDisconnected, AmazonClientError, AccountUnavailable, WebhookRejected)


def queue_outcome(exc: BaseException) -> BaseException | None:
    """The minique exception to raise instead of ``exc``; None keeps ``exc`` (retried)."""
    if isinstance(exc, AmazonRateLimited):
        return Delayed(exc.delay, str(exc))
    if isinstance(exc, AmazonReportNotReady):
        return Delayed(exc.poll_after, f"waiting for Amazon: {exc}")
    if isinstance(exc, _UNRECOVERABLE):
        return UnrecoverableError(f"{type(exc).__name__}: {exc}")
    return None


def maps_outcomes(fn: Processor) -> Processor:
    """Wraps a processor so that its errors become the outcomes above."""

    @functools.wraps(fn)
    async def run(job: Job) -> dict[str, Any]:
        try:
            return await fn(job)
        except Exception as exc:
            outcome = queue_outcome(exc)
            if outcome is None:
                raise
            raise outcome from exc

    return run
