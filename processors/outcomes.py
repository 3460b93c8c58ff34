"""What a job does when its work raises: the app's errors mapped to the queue's outcomes.

The Amazon client and the business logic know nothing of queues; this is the one place
that decides, for each of their errors, what the worker does with the job:

* ``AmazonRateLimited`` (a 429, or our shared quota bucket is empty) -> ``GroupRateLimited``:
  Amazon's quotas are per selling account, and the sync jobs are grouped by account
  (``processors/queues.py``), so that account's group sleeps for the delay without using an
  attempt while the queue goes on with other accounts' jobs. A job without a group waits
  alone, as with ``Delayed``.
* ``AccountBusy`` (another job is syncing the account, ``processors.account_lease``) ->
  ``GroupRateLimited`` too: the account's group sleeps briefly and tries again, no attempt
  used.
* ``WebhookDeliveryError`` with a ``retry_after`` (a webhook receiver answered 429 or 503
  with ``Retry-After``) -> ``GroupRateLimited``: the receiver's group sleeps that long (at
  most 180 s), no attempt used.
* ``AmazonReportNotReady`` (Amazon is still generating a report) -> ``Delayed`` by the poll
  interval: waiting for Amazon is not a failure.
* ``AccountDisconnected``, ``AmazonClientError`` (a 4xx that retrying cannot fix),
  ``AccountUnavailable`` (removed or disabled) and ``WebhookRejected`` ->
  ``UnrecoverableError``: failed at once.
* Anything else (5xx, timeouts, undecodable bodies, failed reports) is raised unchanged and
  retried with the queue's backoff.

Queue groups: one group per account for data-sync and manual-sync, at concurrency 1
(``processors/queues.py``), given where jobs are added and by the schedulers.
"""

from __future__ import annotations

import functools
from collections.abc import Awaitable, Callable
from typing import Any

from minique import Delayed, GroupRateLimited, Job, UnrecoverableError
from processors.account_lease import AccountBusy
from processors.amazon import (
    AccountDisconnected,
    AmazonClientError,
    AmazonRateLimited,
    AmazonReportNotReady,
)
from processors.sync_logic import AccountUnavailable, WebhookDeliveryError, WebhookRejected

Processor = Callable[[Job], Awaitable[dict[str, Any]]]

_UNRECOVERABLE = (AccountDisconnected, AmazonClientError, AccountUnavailable, WebhookRejected)


def queue_outcome(exc: BaseException) -> BaseException | None:
    """The minique exception to raise instead of ``exc``; None keeps ``exc`` (retried)."""
    if isinstance(exc, AmazonRateLimited):
        return GroupRateLimited(exc.delay, str(exc))
    if isinstance(exc, AccountBusy):
        return GroupRateLimited(exc.delay, str(exc))
    if isinstance(exc, WebhookDeliveryError) and exc.retry_after is not None:
        # The receiver asked to wait (429/503 with Retry-After): its group sleeps that long.
        return GroupRateLimited(exc.retry_after, str(exc))
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
