"""Break run, through real minique Workers: what Amazon's failures become as job outcomes."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from app_support import App, running_app

from minique import JobFailed
from processors.queues import QueueName
from processors.storage import schema


@pytest.fixture
async def app(redis_url: str, tmp_path: Path) -> AsyncIterator[App]:
    async with running_app(redis_url, tmp_path) as running:
        yield running


async def test_a_pagination_loop_fails_the_job_with_its_reason(app: App) -> None:
    """searchOrders hands page two's token back for ever. Before: the job never ended (the
    quota's 429 delayed it, then it resumed into the same loop, again and again)."""
    app.fake.inject("searchOrders", "repeat_token", times=10_000)
    job = await app.queue(QueueName.DATA_SYNC).add(
        "data-sync", {"amazon_account_id": "acct-0", "sync_types": ["orders"]}, attempts=1)
    with pytest.raises(JobFailed, match="searchOrders: Amazon sent a nextToken already followed"):
        await job.wait_until_finished(timeout=20)
    assert app.fake.calls("searchOrders") == 2


async def test_an_expired_token_with_a_failing_token_endpoint_retries_then_completes(app: App) -> None:
    """The access token dies mid-pagination (403) and LWA answers 503 twice: two attempts fail
    with the token endpoint's reason, the third finishes, with every order stored once."""
    app.fake.inject("searchOrders", "expire_token", skip=2)
    app.fake.inject("lwaToken", "html_5xx", status=503, times=2)
    job, _ = await app.run(QueueName.DATA_SYNC, {"amazon_account_id": "acct-0", "sync_types": ["orders"]},
                           backoff={"type": "fixed", "delay": 0.05})
    retrying = [e for e in await app.events(QueueName.DATA_SYNC, job.id) if e.name == "retrying"]
    reason = "AmazonServerError: lwaToken: Amazon answered HTTP 503"
    assert [e.fields["reason"] for e in retrying] == [reason] * 2
    assert job.attempts_made == 3
    orders = app.fake.data[0].orders
    assert app.storage.count(schema.orders, "acct-0") == len(orders)
    assert app.storage.count(schema.order_items, "acct-0") == sum(len(o["orderItems"]) for o in orders)
