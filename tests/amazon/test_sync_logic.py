"""sync_account against the fake: counts, idempotency, throttling, failures, progress."""

from __future__ import annotations

from collections import Counter
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest
import redis.asyncio as aioredis

from processors.amazon import (
    AccountDisconnected,
    AmazonClient,
    AmazonRateLimited,
    AmazonServerError,
    AmazonTransientError,
    RedisQuota,
)
from processors.fake_amazon import FakeAmazon, FakeAmazonServer, build_dataset
from processors.fake_amazon.clock import FakeClock
from processors.storage import Storage, schema
from processors.storage.records import SyncState
from processors.sync_logic import (
    SYNC_KINDS,
    SyncContext,
    SyncSettings,
    UnknownSyncKind,
    no_progress,
    sync_account,
)
from processors.sync_logic.sync_finances import SAFETY as FINANCES_SAFETY
from processors.sync_logic.sync_orders import SAFETY as ORDERS_SAFETY
from processors.sync_logic.windows import resume_window

from .expected import campaign_rows, product_rows
from .helpers import make_ctx, settings_for

REPORT_TYPES = ["spCampaigns", "spAdvertisedProduct", "sbCampaigns", "sdCampaigns"]

ALL_TABLES = [
    schema.orders,
    schema.order_items,
    schema.financial_transactions,
    schema.inventory_snapshots,
    schema.listings,
    schema.ad_performance,
    schema.ad_products,
]


# When a snapshot was taken is not part of what was synced.
VOLATILE = {"captured_at"}


def snapshot(storage: Storage, account_id: str) -> dict[str, list[dict[str, object]]]:
    result = {}
    for table in ALL_TABLES:
        rows = [{k: v for k, v in r.items() if k not in VOLATILE} for r in storage.rows(table, account_id)]
        keys = [c.name for c in table.primary_key.columns]
        result[table.name] = sorted(rows, key=lambda r: tuple(str(r[k]) for k in keys))
    return result


async def test_full_sync_stores_everything(ctx: SyncContext, fake: FakeAmazon) -> None:
    seen: list[int] = []

    async def progress(pct: int) -> None:
        seen.append(pct)

    written = await sync_account(ctx, "acct-0", SYNC_KINDS, progress)
    data = fake.data[0]
    assert written["orders"] == len(data.orders)
    assert written["transactions"] == len(data.transactions)
    storage = ctx.storage
    assert storage.count(schema.orders, "acct-0") == len(data.orders)
    assert storage.count(schema.order_items, "acct-0") == sum(len(o["orderItems"]) for o in data.orders)
    assert storage.count(schema.financial_transactions, "acct-0") == len(data.transactions)
    assert storage.count(schema.inventory_snapshots, "acct-0") == len(data.inventory)
    assert storage.count(schema.listings, "acct-0") == len(data.listings)
    assert storage.count(schema.ad_performance, "acct-0") == len(campaign_rows(data))
    assert storage.count(schema.ad_products, "acct-0") == len(product_rows(data))
    assert seen[0] == 0 and seen[-1] == 100 and seen == sorted(seen)
    assert storage.count(schema.orders, "acct-1") == 0


async def test_same_sync_twice_gives_same_rows(
    client: AmazonClient, storage: Storage, fake: FakeAmazon, tmp_path: Path
) -> None:
    ctx = make_ctx(client, storage, fake, tmp_path)
    await sync_account(ctx, "acct-0", SYNC_KINDS, no_progress)
    first = snapshot(storage, "acct-0")
    # Incremental re-run (overlapping windows), then a full re-pull from scratch.
    await sync_account(ctx, "acct-0", SYNC_KINDS, no_progress)
    assert snapshot(storage, "acct-0") == first
    with storage.engine.begin() as conn:
        conn.execute(schema.sync_watermarks.delete())
    fake.plans.reset()
    await ctx.client.caller.quota._redis.flushdb()  # type: ignore[union-attr]
    await sync_account(ctx, "acct-0", SYNC_KINDS, no_progress)
    assert snapshot(storage, "acct-0") == first


async def test_429_storm_mid_pagination_resumes_from_checkpoint(ctx: SyncContext, fake: FakeAmazon) -> None:
    fake.inject("searchOrders", "throttle", times=4, skip=2)
    redis = ctx.client.caller.quota._redis  # type: ignore[union-attr]
    raised = []
    for _ in range(20):
        try:
            await sync_account(ctx, "acct-0", ["orders"], no_progress)
            break
        except AmazonRateLimited as exc:
            raised.append(exc)
            state = ctx.storage.sync_state("acct-0", "orders")
            assert state.cursor is not None and state.cursor["token"] == exc.resume_token
            # The queue would re-enqueue with exc.delay; here the delay "passes" at once.
            await redis.flushdb()
    else:
        raise AssertionError("sync never finished")
    assert len(raised) == 4
    assert all(e.resume_token for e in raised)
    assert ctx.storage.count(schema.orders, "acct-0") == len(fake.data[0].orders)
    # Resumed pages were not fetched again from the start: 6 pages + 4 refused calls.
    pages = -(-len(fake.data[0].orders) // 100)
    assert fake.calls("searchOrders") == pages + 4
    assert ctx.storage.sync_state("acct-0", "orders").cursor is None


async def test_503_html_fails_transiently_and_retry_completes(ctx: SyncContext, fake: FakeAmazon) -> None:
    fake.inject("listTransactions", "html_5xx", status=503, skip=1)
    with pytest.raises(AmazonServerError) as caught:
        await sync_account(ctx, "acct-0", ["fees"], no_progress)
    assert isinstance(caught.value, AmazonTransientError)
    await sync_account(ctx, "acct-0", ["fees"], no_progress)
    assert ctx.storage.count(schema.financial_transactions, "acct-0") == len(fake.data[0].transactions)


async def test_revoked_account_fails_unrecoverably(ctx: SyncContext, fake: FakeAmazon) -> None:
    fake.revoke(0)
    with pytest.raises(AccountDisconnected):
        await sync_account(ctx, "acct-0", ["orders"], no_progress)


async def test_unknown_kind_is_rejected(ctx: SyncContext) -> None:
    with pytest.raises(UnknownSyncKind, match="unknown sync kind 'sales'"):
        await sync_account(ctx, "acct-0", ["orders", "sales"], no_progress)


async def test_ppc_rerun_pulls_trailing_14_days(ctx: SyncContext, fake: FakeAmazon) -> None:
    await sync_account(ctx, "acct-0", ["ppc"], no_progress)
    first = [r.request["configuration"]["reportTypeId"] for r in fake.reports.values() if r.kind == "ads"]
    # 90 days in reports of at most 31 days, within each type's retention (SB 60, SD 65 days).
    assert Counter(first) == {"spCampaigns": 3, "spAdvertisedProduct": 3, "sbCampaigns": 2, "sdCampaigns": 3}
    await sync_account(ctx, "acct-0", ["ppc"], no_progress)
    reruns = [r for r in fake.reports.values() if r.kind == "ads"][len(first):]
    assert sorted(r.request["configuration"]["reportTypeId"] for r in reruns) == sorted(REPORT_TYPES)
    # The profile's yesterday: Ads dates are days in its time zone.
    yesterday = fake.clock.now().astimezone(ZoneInfo("America/Los_Angeles")).date() - timedelta(days=1)
    for report in reruns:
        start = date.fromisoformat(report.request["startDate"])
        end = date.fromisoformat(report.request["endDate"])
        assert end == yesterday
        assert (end - start).days + 1 >= 14


async def test_expired_inventory_checkpoint_restarts_the_pass(ctx: SyncContext, fake: FakeAmazon) -> None:
    fake.inventory_page_size = 3
    ctx.storage.save_sync_state("acct-0", "inventory", None, {"token": "stale.token", "saved_at": 0})
    await sync_account(ctx, "acct-0", ["inventory"], no_progress)
    assert ctx.storage.count(schema.inventory_snapshots, "acct-0") == len(fake.data[0].inventory)


# Times of day around the first sync's start boundary: just after midnight (the window's end,
# three minutes earlier, is still on the previous day), 04:00 (a transaction was posted at 03:16
# on the data's first day: a lookback of exactly 90 * 24 h from 03:57 skipped it), and late.
PINNED = [
    datetime(2026, 11, 29, 0, 0, 0, tzinfo=UTC),
    datetime(2026, 11, 29, 0, 2, 59, tzinfo=UTC),
    datetime(2026, 11, 29, 0, 3, 1, tzinfo=UTC),
    datetime(2026, 11, 29, 4, 0, 0, tzinfo=UTC),
    datetime(2026, 11, 29, 12, 0, 0, tzinfo=UTC),
    datetime(2026, 11, 29, 23, 59, 59, tzinfo=UTC),
]


@pytest.mark.parametrize("now", PINNED, ids=lambda moment: moment.strftime("%H:%M:%S"))
def test_first_window_covers_the_fakes_whole_history(now: datetime) -> None:
    """The fake's history is 90 whole UTC days; a first sync at any time of day asks for all of
    it (postedAfter inclusive, postedBefore exclusive, as listTransactions documents)."""
    lookback = SyncSettings().initial_lookback_days
    for data in build_dataset(7, days=lookback, generated_at=now):
        for stream, overlap, safety, records, key in (
            ("transactions", SyncSettings().finances_overlap, FINANCES_SAFETY, data.transactions,
             "postedDate"),
            ("orders", SyncSettings().orders_overlap, ORDERS_SAFETY, data.orders, "lastUpdatedTime"),
        ):
            window = resume_window(SyncState(None, None), now - safety, lookback, overlap)
            outside = [
                r[key] for r in records
                if not window.start <= datetime.fromisoformat(r[key].replace("Z", "+00:00")) < window.end
            ]
            assert not outside, f"{stream} outside {window}"


@pytest.mark.parametrize("now", [PINNED[2], PINNED[3], PINNED[5]], ids=["00:03", "04:00", "23:59"])
async def test_full_sync_at_a_pinned_time_of_day_stores_everything(
    now: datetime, redis_client: aioredis.Redis, sqlite_storage: Storage, tmp_path: Path
) -> None:
    clock = FakeClock()
    clock.advance(now.timestamp() - clock.time())
    fake = FakeAmazon(seed=7, clock=clock)
    with FakeAmazonServer(fake) as server:
        async with AmazonClient(settings_for(server.url), quota=RedisQuota(redis_client)) as client:
            ctx = make_ctx(client, sqlite_storage, fake, tmp_path)
            written = await sync_account(ctx, "acct-0", ["orders", "fees"], no_progress)
    data = fake.data[0]
    assert written == {"orders": len(data.orders), "transactions": len(data.transactions)}
