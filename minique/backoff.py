"""How long a failed job waits before its next attempt."""

from __future__ import annotations

import math
import random
from collections.abc import Callable, Mapping
from typing import TYPE_CHECKING

from .options import MAX_SECONDS, Backoff

if TYPE_CHECKING:
    from .job import Job

# A custom strategy gets (attempts_made, error, job) and returns seconds, or None to fail now.
BackoffStrategy = Callable[[int, BaseException, "Job"], float | None]


def retry_delay(
    backoff: Backoff | None,
    attempts_made: int,
    error: BaseException,
    job: Job,
    strategies: Mapping[str, BackoffStrategy],
) -> float | None:
    """Seconds to wait before the next attempt (``attempts_made`` counts this failure),
    at most ``MAX_SECONDS`` (10 years, the bound of every time minique takes).

    None means "do not retry" (a custom strategy may decide so). ``BackoffFailed`` when a
    custom strategy raises or returns no number of seconds; LookupError when it is not
    registered.
    """
    if backoff is None:
        return 0.0
    if backoff.type == "fixed":
        delay = backoff.delay
    elif backoff.type == "exponential":
        # A float power: an int one overflows the float product past attempt 1025, and
        # the product may be inf, which the cap below brings back.
        delay = backoff.delay * 2.0 ** min(max(0, attempts_made - 1), 1000)
    else:
        strategy = strategies.get(backoff.type)
        if strategy is None:
            raise LookupError(
                f"backoff strategy {backoff.type!r} is not registered on this worker "
                f"(known: fixed, exponential{''.join(', ' + s for s in sorted(strategies))})"
            )
        try:
            custom = strategy(attempts_made, error, job)
        except Exception as exc:
            raise BackoffFailed(f"backoff strategy {backoff.type!r} raised "
                                f"{type(exc).__name__}: {exc}") from exc
        if custom is None:
            return None
        if (isinstance(custom, bool) or not isinstance(custom, int | float)
                or not math.isfinite(custom)):
            raise BackoffFailed(f"backoff strategy {backoff.type!r} returned {custom!r}, "
                                "not a finite number of seconds or None")
        delay = float(custom)
    if backoff.jitter:
        # Spread retries of jobs that failed together, so they do not come back together.
        delay *= 1.0 - backoff.jitter * random.random()
    if backoff.max_delay is not None:
        delay = min(delay, backoff.max_delay)
    return min(max(0.0, delay), MAX_SECONDS)


class BackoffFailed(Exception):
    """A custom backoff strategy raised, or returned no number of seconds: the worker fails
    the job for good with this reason added to the job's own."""


def check_strategies(strategies: Mapping[str, BackoffStrategy] | None) -> dict[str, BackoffStrategy]:
    """``strategies`` as a dict, once each is a plain function of (attempts_made, error,
    job). TypeError for an ``async def`` one (BullMQ's may return a Promise; here the delay
    is decided inside the worker's finish path, which does not await: each failure would
    fail its job for good with "returned <coroutine ...>"), or for a value not callable."""
    import inspect

    checked = dict(strategies or {})
    for name, strategy in checked.items():
        is_async = inspect.iscoroutinefunction(strategy)
        if is_async or not callable(strategy):
            raise TypeError(f"backoff strategy {name!r} must be a plain function "
                            f"(attempts_made, error, job) -> seconds or None, got {strategy!r}"
                            + (" (an async def: make it a def)" if is_async else ""))
    return checked
