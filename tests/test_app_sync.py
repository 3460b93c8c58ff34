"""data-sync and manual-sync through real minique Workers against the fake Amazon."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from amazon.expected import campaign_rows, product_rows
from app_support import App, running_app, snapshot
from helpers import wait_until

from minique import JobFailed
from processors.queues import QueueName
from processors.storage import schema


@pytest.fixture
async def app(redis_url: str, tmp_path: Path) -> AsyncIterator[App]:
    async with running_app(redis_url, tmp_path) as running:
        yield running


async def test_data_sync_stores_every_stream_and_reports_progress(app: App) -> None:
    job, result = await app.run(QueueName.DATA_SYNC, {"amazon_account_id": "acct-0"})
    data = app.fake.data[0]
    assert result["written"]["orders"] == len(data.orders)
    count = app.storage.count
    assert count(schema.orders, "acct-0") == len(data.orders)
    assert count(schema.order_items, "acct-0") == sum(len(o["orderItems"]) for o in data.orders)
    assert count(schema.financial_transactions, "acct-0") == len(data.transactions)
    assert count(schema.inventory_snapshots, "acct-0") == len(data.inventory)
    assert count(schema.listings, "acct-0") == len(data.listings)
    assert count(schema.ad_performance, "acct-0") == len(campaign_rows(data))
    assert count(schema.ad_products, "acct-0") == len(product_rows(data))
    assert count(schema.orders, "acct-1") == 0
    assert job.progress == 100 and job.attempts_made == 1
    steps = await app.progress_steps(QueueName.DATA_SYNC, job.id)
    assert steps[0] == 0 and steps[-1] == 100 and steps == sorted(steps) and len(steps) >= 5


async def test_same_sync_twice_gives_the_same_rows(app: App) -> None:
    await app.run(QueueName.DATA_SYNC, {"amazon_account_id": "acct-0"})
    first = snapshot(app.storage, "acct-0")
    await app.run(QueueName.DATA_SYNC, {"amazon_account_id": "acct-0"})
    assert snapshot(app.storage, "acct-0") == first


async def test_manual_sync_runs_one_type_and_records_the_user(app: App) -> None:
    job, result = await app.run(QueueName.MANUAL_SYNC, {
        "amazon_account_id": "acct-1", "user_id": "user-42", "sync_type": "listings"})
    assert result["user_id"] == "user-42" and result["sync_type"] == "listings"
    assert result["written"] == {"listings": app.storage.count(schema.listings, "acct-1")}
    assert app.storage.count(schema.listings, "acct-1") == len(app.fake.data[1].listings)
    assert app.storage.count(schema.orders, "acct-1") == 0
    logs = await app.queue(QueueName.MANUAL_SYNC).get_job_logs(job.id)
    assert any("user-42" in line for line in logs)
    assert job.progress == 100


async def test_429_storm_delays_the_job_without_burning_attempts(app: App) -> None:
    """Each 429 delays the job (the worker holds nothing while it waits out the delay) and
    the sync resumes from its saved page token."""
    app.fake.inventory_page_size = 3
    app.fake.inject("getInventorySummaries", "throttle", times=3, skip=1)
    job, _ = await app.run(QueueName.DATA_SYNC, {"amazon_account_id": "acct-0",
                                                 "sync_types": ["inventory"]})
    assert app.storage.count(schema.inventory_snapshots, "acct-0") == len(app.fake.data[0].inventory)
    events = await app.events(QueueName.DATA_SYNC, job.id)
    throttled = [e for e in events if e.name in ("delayed", "waiting")
                 and "getInventorySummaries throttled for account acct-0" in e.fields.get("reason", "")]
    assert len(throttled) == 3
    assert not [e for e in events if e.name in ("retrying", "failed")]
    assert job.attempts_made == 1  # only the run that completed counts
    pages = -(-len(app.fake.data[0].inventory) // 3)
    # Resumed where it stopped: every page once, plus the three refused calls.
    assert app.fake.calls("getInventorySummaries") == pages + 3


async def test_503_html_body_is_retried_with_backoff(app: App) -> None:
    app.fake.inject("listTransactions", "html_5xx", status=503)
    job, _ = await app.run(QueueName.DATA_SYNC, {"amazon_account_id": "acct-0", "sync_types": ["fees"]})
    assert app.storage.count(schema.financial_transactions, "acct-0") == len(app.fake.data[0].transactions)
    retrying = [e for e in await app.events(QueueName.DATA_SYNC, job.id) if e.name == "retrying"]
    assert len(retrying) == 1 and "503" in retrying[0].fields["reason"]
    assert float(retrying[0].fields["delay"]) == 2000  # the seed's backoff: from 2 s
    assert job.attempts_made == 2


async def test_revoked_token_fails_without_retry(app: App) -> None:
    app.fake.revoke(0)
    job = await app.queue(QueueName.DATA_SYNC).add("data-sync", {"amazon_account_id": "acct-0"})
    with pytest.raises(JobFailed, match="account disconnected"):
        await job.wait_until_finished(timeout=15)
    job = await job.refresh()
    assert job.attempts_made == 1 and await job.get_state() == "failed"
    assert not [e for e in await app.events(QueueName.DATA_SYNC, job.id) if e.name == "retrying"]
    # Credentials never reach the job's record.
    secret = app.fake.sellers[0].refresh_token
    assert secret not in (job.failed_reason or "") and secret not in (job.stacktrace or "")


async def test_unknown_account_fails_without_retry(app: App) -> None:
    job = await app.queue(QueueName.MANUAL_SYNC).add(
        "manual-sync", {"amazon_account_id": "nope", "user_id": "u", "sync_type": "orders"})
    with pytest.raises(JobFailed, match="no Amazon account 'nope'"):
        await job.wait_until_finished(timeout=15)
    assert (await job.refresh()).attempts_made == 1


async def test_ads_retry_after_parks_the_job_and_other_accounts_go_on(app: App) -> None:
    """During the Retry-After delay the throttled account's job waits in Redis (no worker
    holds it or sleeps on it); another account's job runs meanwhile, since the queue is not
    paused for one seller's quota. Then the PPC sync completes with every row."""
    app.fake.inject("createAdsReport", "throttle", retry_after=3, times=1)
    queue = app.queue(QueueName.DATA_SYNC)
    job = await queue.add("data-sync", {"amazon_account_id": "acct-0", "sync_types": ["ppc"]})

    async def parked() -> bool:
        return await job.get_state() == "delayed"

    await wait_until(parked, timeout=10, message="job delayed during Retry-After")
    assert (await queue.get_stats())["active"] == 0
    assert await queue.get_rate_limit_ttl() == 0
    other = await queue.add("data-sync", {"amazon_account_id": "acct-1", "sync_types": ["listings"]})
    await other.wait_until_finished(timeout=10)
    assert await job.get_state() == "delayed"  # acct-1 finished inside acct-0's wait
    await job.wait_until_finished(timeout=20)
    assert (await job.refresh()).attempts_made == 1
    data = app.fake.data[0]
    assert app.storage.count(schema.ad_performance, "acct-0") == len(campaign_rows(data))
    assert app.storage.count(schema.ad_products, "acct-0") == len(product_rows(data))
    assert app.storage.count(schema.listings, "acct-1") == len(app.fake.data[1].listings)
