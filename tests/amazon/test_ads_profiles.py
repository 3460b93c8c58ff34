"""Ads profiles come from listProfiles (one per marketplace, with its currency and time zone);
an account may pin one, and an account without an Ads grant syncs everything else."""

from __future__ import annotations

import dataclasses
from datetime import timedelta

from processors.fake_amazon import FakeAmazon
from processors.storage import AdsProfileRecord, schema
from processors.sync_logic import SYNC_KINDS, SyncContext, build_daily_report, no_progress, sync_account

from .expected import zone_of

LOS_ANGELES = "America/Los_Angeles"


async def test_profiles_are_discovered_per_marketplace(ctx: SyncContext, fake: FakeAmazon) -> None:
    written = await sync_account(ctx, "acct-1", ["ppc"], no_progress)
    seller = fake.sellers[1]
    assert ctx.storage.ads_profiles("acct-1") == [
        AdsProfileRecord("acct-1", str(seller.profile_ids[0]), "ATVPDKIKX0DER", "US", "USD", LOS_ANGELES),
        AdsProfileRecord("acct-1", str(seller.profile_ids[1]), "A2EUQ1WTGCTBG2", "CA", "CAD", LOS_ANGELES),
    ]
    assert written["ads"] == len(fake.data[1].ad_rows) and fake.calls("listProfiles") == 1


async def test_a_pinned_profile_is_the_only_one_synced(ctx: SyncContext, fake: FakeAmazon) -> None:
    canada = str(fake.sellers[1].profile_ids[1])
    ctx.storage.update_account("acct-1", ads_profile_id=canada)
    await sync_account(ctx, "acct-1", ["ppc"], no_progress)
    assert [p.profile_id for p in ctx.storage.ads_profiles("acct-1")] == [canada]
    assert {r["profile_id"] for r in ctx.storage.rows(schema.ad_performance, "acct-1")} == {canada}
    requested = {r.request["_profile"] for r in fake.reports.values() if r.kind == "ads"}
    assert requested == {int(canada)}


async def test_an_account_without_an_ads_grant_syncs_the_rest(ctx: SyncContext, fake: FakeAmazon) -> None:
    record = ctx.storage.get_account("acct-0")
    ctx.storage.save_account(dataclasses.replace(record, ads_refresh_token=None))
    written = await sync_account(ctx, "acct-0", SYNC_KINDS, no_progress)
    assert written["ads"] == 0 and written["orders"] > 0
    assert fake.calls("listProfiles") == 0 and fake.calls("createAdsReport") == 0
    # Its reports are complete without ad data sets (there is no Ads data to wait for).
    day = fake.clock.now().astimezone(zone_of("ATVPDKIKX0DER")).date() - timedelta(days=1)
    [report] = await build_daily_report(ctx, "acct-0", day)
    assert report.complete and report.ad_spend == 0
