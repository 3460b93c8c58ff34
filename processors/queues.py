"""The application's queues (the seed's ``config/queue``): names, defaults, shared handles.

    queue = get_queue(QueueName.MANUAL_SYNC)
    await queue.add("manual-sync", {"amazon_account_id": "acme-us", "user_id": "u1",
                                    "sync_type": "orders"})
    await get_queue_stats(QueueName.DATA_SYNC)   # {waiting, active, completed, failed, delayed, total}
"""

from __future__ import annotations

import asyncio
import os
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from minique import Queue
from minique.connection import resolve_url

# Re-exported: the app's code and its users import these from here.
from processors.queue_config import (
    DEFAULT_JOB_OPTIONS,
    JOB_NAMES,
    PAYLOAD_TYPES,
    WEBHOOK_JOB_OPTIONS,
    WORKER_OPTIONS,
    QueueName,
    job_options,
)
from processors.settings import ENV_QUEUE_PREFIX

__all__ = [
    "DEFAULT_JOB_OPTIONS",
    "JOB_NAMES",
    "WEBHOOK_JOB_OPTIONS",
    "WORKER_OPTIONS",
    "QueueName",
    "close_queues",
    "configure",
    "configured",
    "get_queue",
    "get_queue_stats",
    "make_queue",
]


# Amazon's quotas are per selling account, so the sync queues group their jobs by account
# (docs/guide/groups.md): accounts take turns (one seller's backlog does not hold up the
# others), one job per account runs at a time in each queue, and an Amazon 429 throttles that
# account's group alone (processors/jobs.py). Across queues the account's sync lease keeps
# syncs apart: processors/account_lease.py.
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


@contextmanager
def configured(*, url: str | None = None, prefix: str | None = None) -> Iterator[None]:
    """``configure`` for a block; the previous values come back after it."""
    saved = dict(_override)
    configure(url=url, prefix=prefix)
    try:
        yield
    finally:
        _override.update(saved)


def redis_url() -> str:
    return _override["url"] or resolve_url(None)


def queue_prefix() -> str:
    return _override["prefix"] or os.environ.get(ENV_QUEUE_PREFIX) or "minique"


def make_queue(name: QueueName | str, *, url: str | None = None, prefix: str | None = None) -> Queue:
    """A new Queue with the app's defaults and payload checks (the caller closes it)."""
    queue = QueueName(name)
    return Queue(
        queue.value,
        url=url or redis_url(),
        prefix=prefix or queue_prefix(),
        default_job_options=job_options(queue),
        payload_types={JOB_NAMES[queue]: PAYLOAD_TYPES[queue]},
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
