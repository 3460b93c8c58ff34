"""Daily report numbers and alerts, checked against sums taken from the seed fixtures."""

from __future__ import annotations

import time
from datetime import UTC, date, datetime, timedelta
from decimal import Decimal
from pathlib import Path

import pytest
import redis.asyncio as aioredis

from processors.amazon import AmazonClient, RedisQuota
from processors.fake_amazon import DAY_ZONES, FakeAmazon, FakeAmazonServer, FakeClock
from processors.storage import Storage, schema
from processors.sync_logic import (
    SYNC_KINDS,
    SyncContext,
    build_daily_report,
    check_alerts,
    no_progress,
    sync_account,
)

from .expected import day_totals, expected_alerts, net, zone_of
from .helpers import make_ctx, settings_for

FIGURES = ("orders", "units", "revenue", "fees", "service_fees", "refunds", "ad_spend", "ad_sales")


async def test_daily_report_matches_seed_sums(
    client: AmazonClient, storage: Storage, fake: FakeAmazon, tmp_path: Path
) -> None:
    ctx = make_ctx(client, storage, fake, tmp_path)
    await sync_account(ctx, "acct-0", SYNC_KINDS, no_progress)
    today = fake.clock.now().astimezone(zone_of("ATVPDKIKX0DER")).date()
    for day in (today - timedelta(days=1), today - timedelta(days=20)):
        [report] = await build_daily_report(ctx, "acct-0", day)
        want = day_totals(fake.data[0], day)
        got = {k: getattr(report, k) for k in want}
        assert got == want, day
        assert report.revenue > 0 and report.fees > 0 and report.ad_spend > 0
        assert report.acos == pytest.approx(float(report.ad_spend / report.ad_sales))
        assert report.tacos == pytest.approx(float(report.ad_spend / report.revenue))
        assert report.net_proceeds == net(want)
        assert (report.currency, report.timezone, report.complete) == ("USD", "America/Los_Angeles", True)
        csv_text = report.csv_path.read_text()
        assert csv_text.splitlines()[-1].startswith(day.isoformat())
        html = report.html_path.read_text()
        assert (
            "<svg" in html
            and "<script" not in html
            and "http://" not in html.replace('xmlns="http://www.w3.org/2000/svg"', "")
        )
    stored = storage.rows(schema.reports, "acct-0")
    assert len(stored) == 2
    # Rebuilding a day replaces its row.
    await build_daily_report(ctx, "acct-0", today - timedelta(days=1))
    assert storage.count(schema.reports, "acct-0") == 2


@pytest.mark.parametrize("seconds", [-20, 30, 90])
async def test_a_test_started_at_a_marketplace_midnight_still_sees_a_complete_yesterday(
    seconds: int, redis_client: aioredis.Redis, sqlite_storage: Storage, tmp_path: Path
) -> None:
    """The suite's fake starts clear of midnights (CI once ran through 08:00 UTC). Started
    right after the US midnight, orders could only be read up to 2 minutes before now, short
    of yesterday's end; started right before, "yesterday" changed between sync and report."""
    midnight = datetime(2026, 12, 5, 8, 0, 0, tzinfo=UTC)  # 00:00 in America/Los_Angeles
    shift = (midnight + timedelta(seconds=seconds)).timestamp() - time.time()
    clock = FakeClock(clear_of=DAY_ZONES, wall=lambda: time.time() + shift)
    fake = FakeAmazon(seed=7, clock=clock)
    with FakeAmazonServer(fake) as server:
        async with AmazonClient(settings_for(server.url), quota=RedisQuota(redis_client)) as client:
            ctx = make_ctx(client, sqlite_storage, fake, tmp_path)
            await sync_account(ctx, "acct-0", SYNC_KINDS, no_progress)
            [report] = await build_daily_report(ctx, "acct-0")
    day = date.fromisoformat("2026-12-04")
    assert (report.day, report.complete, report.missing) == (day, True, [])
    assert {k: getattr(report, k) for k in FIGURES} == day_totals(fake.data[0], day)


async def test_each_marketplace_is_reported_in_its_own_currency(ctx: SyncContext, fake: FakeAmazon) -> None:
    """Seller 1 sells in the US (USD) and Canada (CAD): two reports, never one sum."""
    await sync_account(ctx, "acct-1", SYNC_KINDS, no_progress)
    day = fake.clock.now().astimezone(zone_of("ATVPDKIKX0DER")).date() - timedelta(days=3)
    reports = await build_daily_report(ctx, "acct-1", day)
    assert [(r.marketplace_id, r.currency) for r in reports] == [("ATVPDKIKX0DER", "USD"),
                                                                 ("A2EUQ1WTGCTBG2", "CAD")]
    for report in reports:
        want = day_totals(fake.data[1], day, report.marketplace_id)
        assert {k: getattr(report, k) for k in FIGURES} == want, report.marketplace_id
        assert report.revenue > 0 and report.ad_spend > 0
        assert report.csv_path.parent.name == report.country
    [canada] = await build_daily_report(ctx, "acct-1", day, "A2EUQ1WTGCTBG2")
    assert canada.revenue == reports[1].revenue
    with pytest.raises(ValueError, match="does not sell in marketplace"):
        await build_daily_report(ctx, "acct-1", day, "A1F83G8C2ARO7P")


async def test_refund_totals_over_the_whole_history(ctx: SyncContext, fake: FakeAmazon) -> None:
    await sync_account(ctx, "acct-0", ["refunds"], no_progress)
    today = fake.clock.now().date()
    history = ctx.storage.daily_totals("acct-0", "ATVPDKIKX0DER", "USD", today - timedelta(days=95), today,
                                       zone=zone_of("ATVPDKIKX0DER"), unattributed=True)
    want = sum((day_totals(fake.data[0], d.day)["refunds"] for d in history if d.refunds), Decimal(0))
    assert sum(d.refunds for d in history) == want > 0


async def test_alerts_fire_once_per_condition_and_day(ctx: SyncContext, fake: FakeAmazon) -> None:
    await sync_account(ctx, "acct-0", ["orders", "inventory", "ppc"], no_progress)
    now = fake.clock.now()
    raised = await check_alerts(ctx, "acct-0", now)
    got = {(a.kind, a.subject) for a in raised}
    want = expected_alerts(fake.data[0], now)
    assert got == want
    kinds = {kind for kind, _ in got}
    assert kinds >= {"low_stock", "high_acos", "spend_no_sales"}
    assert await check_alerts(ctx, "acct-0", now) == []
    assert ctx.storage.count(schema.alerts, "acct-0") == len(want)
    # A new day is a new condition-day.
    tomorrow = await check_alerts(ctx, "acct-0", now + timedelta(days=1))
    assert {a.kind for a in tomorrow} >= {"low_stock"}
