"""How long a failed job waits before its next attempt."""

from __future__ import annotations

import random
from collections.abc import Callable, Mapping
from typing import TYPE_CHECKING

from .options import Backoff

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
    """Seconds to wait before the next attempt (``attempts_made`` counts this failure).

    None means "do not retry" (a custom strategy may decide so).
    """
    if backoff is None:
        return 0.0
    if backoff.type == "fixed":
        delay = backoff.delay
    elif backoff.type == "exponential":
        delay = backoff.delay * 2 ** max(0, attempts_made - 1)
    else:
        strategy = strategies.get(backoff.type)
        if strategy is None:
            raise LookupError(
                f"backoff strategy {backoff.type!r} is not registered on this worker "
                f"(known: fixed, exponential{''.join(', ' + s for s in sorted(strategies))})"
            )
        custom = strategy(attempts_made, error, job)
        if custom is None:
            return None
        delay = float(custom)
    if backoff.jitter:
        # Spread retries of jobs that failed together, so they do not come back together.
        delay *= 1.0 - backoff.jitter * random.random()
    if backoff.max_delay is not None:
        delay = min(delay, backoff.max_delay)
    return max(0.0, delay)
