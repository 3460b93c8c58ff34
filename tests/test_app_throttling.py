"""Throttling through real workers: a resumed job continues exactly where it stopped (per
stream, page token and report id), a 429 on one operation costs no call to another, and a
storm of scattered 429s on two accounts recovers in the time Amazon's quotas force.

The storm runs with every usage plan's rate scaled up, the fake's and the client's alike (a
fast clock for the quotas): the waits keep their proportions and the test takes seconds.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
from amazon.expected import campaign_rows, product_rows
from app_support import App, running_app

from minique import Job
from processors.amazon.usage_plans import plan_for
from processors.queues import QueueName
from processors.storage import schema

SCALE = 100.0


@pytest.fixture
async def app(redis_url: str, tmp_path: Path) -> AsyncIterator[App]:
    async with running_app(redis_url, tmp_path, quota_scale=SCALE) as running:
        yield running


async def _delays(app: App, job: Job) -> list[tuple[str, float]]:
    """(operation, seconds) of every time the job was delayed by a throttle."""
    found = []
    for event in await app.events(QueueName.DATA_SYNC, job.id):
        reason = event.fields.get("reason", "")
        if event.name in ("delayed", "waiting") and " throttled for account " in reason:
            found.append((reason.split()[0], float(event.fields.get("delay", "0")) / 1000))
    return found


def _pages(total: int, size: int) -> int:
    return -(-total // size)


async def test_a_429_on_transactions_costs_no_new_orders_call(app: App) -> None:
    """The issue's case: one 429 on listTransactions after the orders stream had finished.
    The job resumes at that page of transactions; searchOrders (one call per 3 minutes once
    its burst is spent) is not called again."""
    app.fake.transactions_page_size = 100
    app.fake.inject("listTransactions", "throttle", times=1, skip=2, seller=0)
    job, _ = await app.run(QueueName.DATA_SYNC, {"amazon_account_id": "acct-0",
                                                 "sync_types": ["orders", "fees"]})
    data = app.fake.data[0]
    assert app.fake.calls("searchOrders") == _pages(len(data.orders), 100)
    assert app.fake.calls("listTransactions") == _pages(len(data.transactions), 100) + 1
    assert [op for op, _ in await _delays(app, job)] == ["listTransactions"]
    assert job.attempts_made == 1 and job.progress == 100
    assert app.storage.count(schema.financial_transactions, "acct-0") == len(data.transactions)


async def test_a_429_while_polling_a_report_polls_the_same_report(app: App) -> None:
    app.fake.inject("getAdsReport", "throttle", times=2, skip=3, seller=0, retry_after=1)
    job, _ = await app.run(QueueName.DATA_SYNC, {"amazon_account_id": "acct-0", "sync_types": ["ppc"]})
    reports = [r for r in app.fake.reports.values() if r.kind == "ads"]
    # Each report asked for once: 90 days of SP campaigns and products (3 + 3), SB (2), SD (3).
    assert app.fake.calls("createAdsReport") == len(reports) == 11
    assert app.fake.calls("listProfiles") == 1
    assert [op for op, _ in await _delays(app, job)] == ["getAdsReport", "getAdsReport"]
    assert job.attempts_made == 1
    assert app.storage.count(schema.ad_performance, "acct-0") == len(campaign_rows(app.fake.data[0]))


# 9 scattered 429s per account, 18 in all, on every operation of a sync.
STORM: list[tuple[str, int, int]] = [  # (operation, times, skip)
    ("searchOrders", 1, 2),
    ("listTransactions", 1, 1),
    ("listTransactions", 1, 4),
    ("getInventorySummaries", 1, 1),
    ("searchListingsItems", 1, 0),
    ("listProfiles", 1, 0),
    ("createAdsReport", 1, 3),
    ("getAdsReport", 1, 2),
    ("getAdsReport", 1, 9),
]


ADS_OPERATIONS = ("listProfiles", "createAdsReport", "getAdsReport")


def _forced_by_quotas(app: App, seller: int) -> float:
    """The least time Amazon's quotas force on the seller's sync after its 429s: the Ads API's
    Retry-After (1 s) per 429, and for an SP-API operation, once a 429 said its bucket is
    empty, one refill (1/rate of Amazon's plan, scaled) for each later call of it."""
    statuses: dict[str, list[int]] = {}
    for entry in app.fake.log:
        if entry.seller == seller:
            statuses.setdefault(entry.operation, []).append(entry.status)
    forced = 0.0
    for operation, answers in statuses.items():
        throttled = [n for n, status in enumerate(answers) if status == 429]
        if not throttled:
            continue
        if operation in ADS_OPERATIONS:
            forced += 1.0 * len(throttled)
        else:
            plan = app.fake.plans.plan(operation)
            assert plan is not None
            forced += (len(answers) - throttled[0] - 1) / (plan[0] * SCALE)
    return forced


async def _sync_both(app: App) -> tuple[dict[str, float], dict[str, Job]]:
    """Syncs both accounts at once from scratch (no watermarks); seconds from add to done per
    account, and the jobs."""
    with app.storage.engine.begin() as conn:
        conn.execute(schema.sync_watermarks.delete())
    started = time.monotonic()
    queue = app.queue(QueueName.DATA_SYNC)
    jobs = {account: await queue.add("data-sync", {"amazon_account_id": account})
            for account in ("acct-0", "acct-1")}

    async def finish(job: Job) -> float:
        await job.wait_until_finished(timeout=120)
        return time.monotonic() - started

    times = await asyncio.gather(*(finish(j) for j in jobs.values()))
    return dict(zip(jobs, times, strict=True)), jobs


@pytest.mark.slow  # opt-in (--run-slow): the default run stays under 10 minutes
async def test_storm_of_429s_recovers_in_the_time_the_quotas_force(app: App) -> None:
    app.fake.inventory_page_size = 3
    baseline, _ = await _sync_both(app)
    calls_without_faults = {op: app.fake.calls(op) for op, _, _ in STORM}
    # Same data, same quotas, from scratch again: now with the storm.
    app.fake.plans.reset()
    app.fake.log.clear()
    await app.forget_quota()
    for seller in (0, 1):
        for operation, times, skip in STORM:
            app.fake.inject(operation, "throttle", times=times, skip=skip, seller=seller, retry_after=1)
    storm, jobs = await _sync_both(app)

    forced: dict[str, float] = {}
    for account, job in jobs.items():
        job = await job.refresh()
        assert job.attempts_made == 1, account  # a throttle never uses an attempt
        delays = await _delays(app, job)
        assert sorted(op for op, _ in delays) == sorted(op for op, times, _ in STORM for _ in range(times))
        # Each delay is what the quota forces: one token's refill (SP-API, no Retry-After), or
        # the Retry-After the Ads API sent; never more.
        for operation, delay in delays:
            rate, _ = plan_for(operation, SCALE)
            limit = 1.0 if operation in ("listProfiles", "createAdsReport", "getAdsReport") else 1 / rate
            assert delay <= limit + 0.001, (operation, delay, limit)
        forced[account] = _forced_by_quotas(app, int(account[-1]))
    # A throttle costs exactly one more call of its own operation, and nothing of any other.
    for operation, _, _ in STORM:
        extra = sum(t for op, t, _ in STORM if op == operation) * 2
        assert app.fake.calls(operation) == calls_without_faults[operation] + extra, operation
    for n, account in enumerate(("acct-0", "acct-1")):
        data = app.fake.data[n]
        assert app.storage.count(schema.orders, account) == len(data.orders)
        assert app.storage.count(schema.financial_transactions, account) == len(data.transactions)
        assert app.storage.count(schema.ad_performance, account) == len(campaign_rows(data))
        assert app.storage.count(schema.ad_products, account) == len(product_rows(data))
    report: dict[str, Any] = {
        account: {"baseline_s": round(baseline[account], 2), "storm_s": round(storm[account], 2),
                  "recovery_s": round(storm[account] - baseline[account], 2),
                  "forced_s": round(forced[account], 2)}
        for account in jobs
    }
    # e.g. {'acct-0': {'baseline_s': 6.1, 'storm_s': 17.6, 'recovery_s': 11.4, 'forced_s': ...}}
    print(f"\n429 storm (18 throttles, quotas x{SCALE:g}): {report}")
