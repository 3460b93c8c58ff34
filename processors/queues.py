"""The application's queues (the seed's ``config/queue``): names, defaults, shared handles.

    queue = get_queue(QueueName.MANUAL_SYNC)
    await queue.add("manual-sync", {"amazon_account_id": "acme-us", "user_id": "u1",
                                    "sync_type": "orders"})
    await get_queue_stats(QueueName.DATA_SYNC)   # {waiting, active, completed, failed, delayed, total}
"""

from __future__ import annotations

import asyncio
import os
from enum import StrEnum
from typing import Any

from minique import Queue
from minique.connection import resolve_url
from processors.settings import ENV_QUEUE_PREFIX


class QueueName(StrEnum):
    DATA_SYNC = "data-sync"
    REPORTS = "reports"
    ALERTS = "alerts"
    MANUAL_SYNC = "manual-sync"
    # Webhook delivery is a job of its own, so a slow receiver never holds up a sync.
    WEBHOOKS = "webhooks"


# Job names: one per queue, the same as the queue's name (the seed's "manual-sync").
JOB_NAMES: dict[QueueName, str] = {name: name.value for name in QueueName}

# The seed's defaults: 3 attempts, exponential backoff from 2 s, failed jobs kept 7 days,
# completed jobs 24 h and at most the last 1000.
DEFAULT_JOB_OPTIONS: dict[str, Any] = {
    "attempts": 3,
    "backoff": {"type": "exponential", "delay": 2.0},
    "remove_on_complete": {"age": 24 * 3600, "count": 1000},
    "remove_on_fail": {"age": 7 * 24 * 3600},
}

# A receiver that is down for a while should still get its events: more, longer retries.
WEBHOOK_JOB_OPTIONS: dict[str, Any] = {
    "attempts": 8,
    "backoff": {"type": "exponential", "delay": 2.0, "jitter": 0.2, "max_delay": 600.0},
}

# Per worker and queue: 5 jobs at once, and at most 10 jobs started per second.
WORKER_OPTIONS: dict[str, Any] = {
    "concurrency": 5,
    "limiter": {"max": 10, "duration": 1.0},
}

# Amazon's quotas are per selling account, so the sync queues group their jobs by account
# (docs/guide/groups.md): accounts take turns (one seller's backlog does not hold up the
# others), one job per account runs at a time (two syncs of one account never overlap), and
# an Amazon 429 throttles that account's group alone (processors/jobs.py).
ACCOUNT_GROUPED_QUEUES = frozenset({QueueName.DATA_SYNC, QueueName.MANUAL_SYNC})
ACCOUNT_GROUP_DEFAULTS: dict[str, Any] = {"concurrency": 1}


def account_group(name: QueueName | str, account_id: str) -> dict[str, Any]:
    """Job options that put a job of queue ``name`` in its account's group ({} for queues
    that are not grouped): ``queue.add(name, data, **account_group(name, account_id))``."""
    return {"group": account_id} if QueueName(name) in ACCOUNT_GROUPED_QUEUES else {}


async def apply_group_defaults() -> None:
    """Stores the account groups' limits in Redis (idempotent; the worker start applies it)."""
    for name in sorted(ACCOUNT_GROUPED_QUEUES):
        await get_queue(name).set_group_defaults(**ACCOUNT_GROUP_DEFAULTS)


_override: dict[str, str | None] = {"url": None, "prefix": None}
# (id(loop), queue name) -> (loop, url, prefix, Queue). A Queue's connection belongs to the
# event loop that made it, so each loop gets its own.
_queues: dict[tuple[int, str], tuple[asyncio.AbstractEventLoop, str, str, Queue]] = {}


def configure(*, url: str | None = None, prefix: str | None = None) -> None:
    """Overrides $MINIQUE_REDIS_URL / $MINIQUE_PREFIX (the worker's startup hook and the demo
    use it so the app's queues follow ``minique worker --url``). None keeps the current value."""
    if url is not None:
        _override["url"] = url
    if prefix is not None:
        _override["prefix"] = prefix


def reset_configuration() -> None:
    """Back to the environment's values."""
    _override["url"] = _override["prefix"] = None


def redis_url() -> str:
    return _override["url"] or resolve_url(None)


def queue_prefix() -> str:
    return _override["prefix"] or os.environ.get(ENV_QUEUE_PREFIX) or "minique"


def make_queue(name: QueueName | str, *, url: str | None = None, prefix: str | None = None) -> Queue:
    """A new Queue with the app's defaults and payload checks (the caller closes it)."""
    from processors.jobs import registry  # the registry's processors import this module

    queue_name = QueueName(name).value
    return Queue(
        queue_name,
        url=url or redis_url(),
        prefix=prefix or queue_prefix(),
        default_job_options=WEBHOOK_JOB_OPTIONS if queue_name == QueueName.WEBHOOKS else DEFAULT_JOB_OPTIONS,
        payload_types=registry.payload_types(queue_name),
    )


def get_queue(name: QueueName | str) -> Queue:
    """The shared Queue for ``name`` in the running event loop (created on first use)."""
    queue_name = QueueName(name).value
    loop = asyncio.get_running_loop()
    url, prefix = redis_url(), queue_prefix()
    key = (id(loop), queue_name)
    found = _queues.get(key)
    if found is not None and found[0] is loop and found[1:3] == (url, prefix):
        return found[3]
    queue = make_queue(queue_name, url=url, prefix=prefix)
    _queues[key] = (loop, url, prefix, queue)
    return queue


async def get_queue_stats(name: QueueName | str) -> dict[str, int]:
    """``{waiting, active, completed, failed, delayed, total}``."""
    return await get_queue(name).get_stats()


async def close_queues() -> None:
    """Closes the shared queues of the running loop (call before the loop ends)."""
    loop = asyncio.get_running_loop()
    for key, (owner, _, _, queue) in list(_queues.items()):
        if owner is loop or owner.is_closed():
            del _queues[key]
            if owner is loop:
                await queue.close()
