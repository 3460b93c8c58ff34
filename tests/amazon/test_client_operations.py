"""Each client operation against the fake, decoded into the client's Structs."""

from __future__ import annotations

import asyncio
import dataclasses
from datetime import date, timedelta
from decimal import Decimal

import httpx
import pytest

from processors.amazon import AccountDisconnected, AmazonAccount, AmazonClient, AmazonRateLimited
from processors.amazon.models.ads import CAMPAIGN_DAY_COLUMNS, REPORT_SPECS, AdsReportSpec
from processors.amazon.report_documents import parse_tsv
from processors.amazon.tokens import TokenProvider
from processors.fake_amazon import FakeAmazon, FakeAmazonServer


async def test_search_orders_pages_through_everything(
    client: AmazonClient, account: AmazonAccount, fake: FakeAmazon
) -> None:
    now = fake.clock.now()
    seen: list[str] = []
    token = None
    pages = 0
    while True:
        page = await client.sp.search_orders(
            account,
            last_updated_after=now - timedelta(days=120),
            last_updated_before=now - timedelta(minutes=3),
            page_size=100,
            pagination_token=token,
        )
        pages += 1
        seen.extend(o.order_id for o in page.orders)
        token = page.next_token
        if token is None:
            break
    expected = {o["orderId"] for o in fake.data[0].orders}
    assert pages >= 3
    assert len(seen) == len(set(seen)) == len(expected)
    assert set(seen) == expected
    assert page.last_updated_before is not None


async def test_search_orders_embeds_items_with_prices(
    client: AmazonClient, account: AmazonAccount, fake: FakeAmazon
) -> None:
    now = fake.clock.now()
    page = await client.sp.search_orders(
        account, created_after=now - timedelta(days=3), created_before=now - timedelta(minutes=3)
    )
    shipped = [o for o in page.orders if o.fulfillment and o.fulfillment.fulfillment_status == "SHIPPED"]
    assert shipped
    order = shipped[0]
    assert order.order_items
    item = order.order_items[0]
    assert item.product.seller_sku and item.product.price and item.product.price.unit_price
    assert isinstance(item.product.price.unit_price.amount, Decimal)
    assert item.proceeds and item.proceeds.proceeds_total


async def test_list_transactions_breaks_out_fees_and_refunds(
    client: AmazonClient, account: AmazonAccount, fake: FakeAmazon
) -> None:
    now = fake.clock.now()
    collected = []
    token = None
    while True:
        page = await client.sp.list_transactions(
            account,
            posted_after=now - timedelta(days=120),
            posted_before=now - timedelta(minutes=3),
            next_token=token,
        )
        collected.extend(page.transactions)
        token = page.next_token
        if token is None:
            break
    assert len(collected) == len(fake.data[0].transactions)
    refunds = [t for t in collected if t.transaction_type == "Refund"]
    shipments = [t for t in collected if t.transaction_type == "Shipment"]
    assert refunds and shipments
    assert shipments[0].breakdown_total("Expenses") < 0
    assert refunds[0].breakdown_total("Sales") < 0
    assert shipments[0].related("ORDER_ID")


async def test_inventory_summaries_with_details_across_pages(
    client: AmazonClient, account: AmazonAccount, fake: FakeAmazon
) -> None:
    fake.inventory_page_size = 3
    skus = []
    token = None
    throttled = 0
    while True:
        try:
            page = await client.sp.get_inventory_summaries(account, next_token=token)
        except AmazonRateLimited as exc:
            # The client paces itself by Amazon's usage plan (2/s, burst 2), but on a loaded
            # machine two requests sent 0.5 s apart can reach the fake closer together and
            # meet a 429, which a job answers by resuming later: the same page again.
            throttled += 1
            assert throttled <= 3, "throttled again and again"
            await asyncio.sleep(exc.delay)
            continue
        for summary in page.payload.inventory_summaries:
            assert summary.inventory_details is not None
            skus.append(summary.seller_sku)
        token = page.next_token
        if token is None:
            break
    assert skus == [s["sellerSku"] for s in fake.data[0].inventory]


async def test_search_listings_items(client: AmazonClient, account: AmazonAccount, fake: FakeAmazon) -> None:
    first = await client.sp.search_listings_items(account, page_size=5)
    assert first.number_of_results == len(fake.data[0].listings)
    assert first.next_token
    second = await client.sp.search_listings_items(account, page_size=5, page_token=first.next_token)
    items = first.items + second.items
    assert [i.sku for i in items] == [s["sku"] for s in fake.data[0].listings]
    assert items[0].offers[0].price.amount > 0
    assert items[0].summaries[0].status == ["BUYABLE", "DISCOVERABLE"]


async def test_reports_create_poll_document_download(
    client: AmazonClient, account: AmazonAccount, fake: FakeAmazon
) -> None:
    report_id = await client.sp.create_report(account, "GET_MERCHANT_LISTINGS_ALL_DATA")
    statuses = []
    for _ in range(10):
        report = await client.sp.get_report(account, report_id)
        statuses.append(report.processing_status)
        if report.processing_status == "DONE":
            break
    assert statuses[-1] == "DONE" and statuses[0] != "DONE"
    assert report.report_document_id
    document = await client.sp.get_report_document(account, report.report_document_id)
    assert document.compression_algorithm == "GZIP"
    rows = parse_tsv(await client.sp.download_report_document(document))
    assert [r["seller-sku"] for r in rows] == [s["sku"] for s in fake.data[0].skus]
    assert "\u2013" in rows[0]["item-description"]


async def test_marketplace_participations(client: AmazonClient, account: AmazonAccount) -> None:
    participations = await client.sp.get_marketplace_participations(account)
    assert participations[0].marketplace.id == "ATVPDKIKX0DER"
    assert participations[0].participation.is_participating


async def test_ads_profiles_and_campaign_report(
    client: AmazonClient, account: AmazonAccount, fake: FakeAmazon
) -> None:
    profiles = await client.ads.list_profiles(account)
    assert [p.profile_id for p in profiles] == list(fake.sellers[0].profile_ids)
    assert (profiles[0].timezone, profiles[0].currency_code) == ("America/Los_Angeles", "USD")
    profile = str(profiles[0].profile_id)
    end = fake.clock.now().date() - timedelta(days=2)
    start = end - timedelta(days=6)
    report = await client.ads.create_campaign_report(account, start=start, end=end, profile_id=profile)
    duplicate = await client.ads.create_campaign_report(account, start=start, end=end, profile_id=profile)
    assert duplicate.report_id == report.report_id
    while report.status != "COMPLETED":
        report = await client.ads.get_report(account, report.report_id, profile)
    rows = await client.ads.download_campaign_report(report)
    expected = [r for r in fake.data[0].ad_report_rows("spCampaigns")
                if start.isoformat() <= r["date"] <= end.isoformat()]
    assert len(rows) == len(expected)
    assert sum(r.cost for r in rows) == sum(Decimal(str(r["cost"])) for r in expected)
    assert all(isinstance(r.date, date) for r in rows)
    assert len(CAMPAIGN_DAY_COLUMNS) == 11


@pytest.mark.parametrize("spec", REPORT_SPECS, ids=lambda s: s.report_type_id)
async def test_every_ads_report_type_decodes_amazons_documented_rows(
    client: AmazonClient, account: AmazonAccount, fake: FakeAmazon, spec: AdsReportSpec
) -> None:
    profile = str(fake.sellers[0].profile_id)
    end = fake.clock.now().date() - timedelta(days=2)
    start = end - timedelta(days=2)
    report = await client.ads.create_report(account, profile, spec, start=start, end=end)
    while report.status != "COMPLETED":
        report = await client.ads.get_report(account, report.report_id, profile)
    rows = await client.ads.download_report(report, spec)
    expected = [r for r in fake.data[0].ad_report_rows(spec.report_type_id, int(profile))
                if start.isoformat() <= r["date"] <= end.isoformat()]
    assert len(rows) == len(expected) > 0
    assert all(isinstance(r, spec.row) for r in rows)
    assert sum(r.cost for r in rows) == sum(Decimal(str(r["cost"])) for r in expected)


async def test_ads_calls_use_the_ads_grant_and_sp_calls_the_sp_one(
    client: AmazonClient, account: AmazonAccount, fake: FakeAmazon
) -> None:
    await client.sp.get_marketplace_participations(account)
    await client.ads.list_profiles(account)
    assert fake.lwa_calls == 2  # one token per grant
    # An account whose one refresh token is the SP-API grant cannot read Ads.
    sp_only = dataclasses.replace(account, ads_refresh_token=None)
    with pytest.raises(AccountDisconnected, match="after a refresh"):
        await client.ads.list_profiles(sp_only)


async def test_token_is_cached_and_fetched_single_flight(
    client: AmazonClient, account: AmazonAccount, fake: FakeAmazon
) -> None:
    await asyncio.gather(*(client.sp.search_listings_items(account, page_size=2) for _ in range(5)))
    await client.sp.get_marketplace_participations(account)
    assert fake.lwa_calls == 1
    assert client.tokens.fetches == 1


async def test_expired_token_is_refreshed_once(
    client: AmazonClient, account: AmazonAccount, fake: FakeAmazon
) -> None:
    await client.sp.get_marketplace_participations(account)
    fake.inject("getMarketplaceParticipations", "expire_token")
    participations = await client.sp.get_marketplace_participations(account)
    assert participations
    assert fake.lwa_calls == 2


async def test_token_is_refreshed_shortly_before_expiry(
    fake_server: FakeAmazonServer, account: AmazonAccount
) -> None:
    now = [1000.0]
    async with httpx.AsyncClient() as http:
        tokens = TokenProvider(http, timeout=httpx.Timeout(5.0), refresh_margin=60, clock=lambda: now[0])
        url = fake_server.url + "/auth/o2/token"
        first = await tokens.access_token(account, url)
        now[0] += 3600 - 61
        assert await tokens.access_token(account, url) == first
        now[0] += 2
        assert await tokens.access_token(account, url) != first
        assert tokens.fetches == 2
