"""Queue configuration and payload checks: at add (nothing queued) and in the worker."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from pathlib import Path
from typing import get_args

import pytest
from app_support import App, running_app

from minique import JobFailed, PayloadError, Queue
from processors.jobs import registry
from processors.payloads import ALL_SYNC_TYPES, ManualSyncPayload, SyncType
from processors.queue_config import JOB_NAMES, PAYLOAD_TYPES
from processors.queues import (
    DEFAULT_JOB_OPTIONS,
    WORKER_OPTIONS,
    QueueName,
    get_queue,
    get_queue_stats,
)
from processors.sync_logic import SYNC_KINDS


@pytest.fixture
async def app(redis_url: str, tmp_path: Path) -> AsyncIterator[App]:
    async with running_app(redis_url, tmp_path) as running:
        yield running


def test_names_and_defaults_follow_the_seed() -> None:
    assert [q.value for q in QueueName][:4] == ["data-sync", "reports", "alerts", "manual-sync"]
    assert DEFAULT_JOB_OPTIONS["attempts"] == 3
    assert DEFAULT_JOB_OPTIONS["backoff"] == {"type": "exponential", "delay": 2.0}
    assert DEFAULT_JOB_OPTIONS["remove_on_fail"] == {"age": 7 * 86400}
    assert DEFAULT_JOB_OPTIONS["remove_on_complete"] == {"age": 86400, "count": 1000}
    assert WORKER_OPTIONS == {"concurrency": 5, "limiter": {"max": 10, "duration": 1.0}}
    assert get_args(SyncType) == ALL_SYNC_TYPES == SYNC_KINDS
    assert set(registry.queues()) == {q.value for q in QueueName}
    # The queues check payloads with the same types the registry decodes them into.
    for name in QueueName:
        assert registry.payload_types(name.value) == {JOB_NAMES[name]: PAYLOAD_TYPES[name]}


async def test_get_queue_is_shared_per_loop_and_carries_the_defaults(app: App) -> None:
    queue = get_queue(QueueName.MANUAL_SYNC)
    assert get_queue("manual-sync") is queue
    assert queue.payload_types == {"manual-sync": ManualSyncPayload}
    assert queue.default_job_options == DEFAULT_JOB_OPTIONS
    assert queue.prefix == app.prefix
    assert await get_queue_stats(QueueName.MANUAL_SYNC) == {
        "waiting": 0, "active": 0, "completed": 0, "failed": 0, "delayed": 0,
        "waiting-children": 0, "total": 0}
    with pytest.raises(ValueError):
        get_queue("no-such-queue")
    # Another event loop (another thread here) gets a Queue of its own: connections are per loop.
    assert await asyncio.to_thread(asyncio.run, _same_queue_in_new_loop(queue)) is False


async def _same_queue_in_new_loop(queue: Queue) -> bool:
    other = get_queue(QueueName.MANUAL_SYNC)
    try:
        return other is queue
    finally:
        await other.close()


async def test_unknown_sync_type_is_rejected_at_add(app: App) -> None:
    queue = get_queue(QueueName.MANUAL_SYNC)
    with pytest.raises(PayloadError, match=r"sync_type") as caught:
        await queue.add("manual-sync", {"amazon_account_id": "acct-0", "user_id": "u", "sync_type": "sales"})
    assert "ManualSyncPayload" in str(caught.value)
    with pytest.raises(PayloadError, match=r"user_id"):
        await queue.add("manual-sync", {"amazon_account_id": "acct-0", "sync_type": "orders"})
    with pytest.raises(PayloadError, match=r"refresh_token"):  # credentials have no place here
        await queue.add("manual-sync", {"amazon_account_id": "acct-0", "user_id": "u",
                                        "sync_type": "orders", "refresh_token": "x"})
    assert (await get_queue_stats(QueueName.MANUAL_SYNC))["total"] == 0


async def test_worker_rejects_a_bad_payload_that_got_in_anyway(app: App) -> None:
    # A producer without the payload types (another service, an old deploy) adds it.
    raw = Queue("manual-sync", url=app.redis_url, prefix=app.prefix)
    try:
        job = await raw.add("manual-sync", {"amazon_account_id": "acct-0", "user_id": "u",
                                            "sync_type": "sales"})
        with pytest.raises(JobFailed, match="does not match ManualSyncPayload"):
            await job.wait_until_finished(timeout=15)
        assert (await job.refresh()).attempts_made == 1  # unrecoverable: no retry
    finally:
        await raw.close()
