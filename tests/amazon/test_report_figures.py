"""The figures issue #16 found wrong, each fed as Amazon's documented wire shapes (Orders
2026-01-01, Finances 2024-06-19, Ads reporting v3) through the fake, the client's decoders,
the storage and the report, and checked to the cent.

One day of seller 0 is emptied of the seeded data and given exactly the records below.
"""

from __future__ import annotations

import csv
import io
from datetime import UTC, date, datetime, time, timedelta
from decimal import Decimal
from typing import Any

import pytest

from processors.fake_amazon import FakeAmazon
from processors.storage import schema
from processors.sync_logic import (
    SyncContext,
    build_daily_report,
    check_alerts,
    incomplete_report_alerts,
    no_progress,
    sync_account,
)

from .expected import local_day, zone_of

US = "ATVPDKIKX0DER"
Json = dict[str, Any]


def money(amount: str) -> Json:
    """Orders 2026-01-01 / Listings money: the amount is a decimal string."""
    return {"amount": amount, "currencyCode": "USD"}


def currency(amount: str) -> Json:
    """Finances 2024-06-19 money: the amount is a JSON number."""
    return {"currencyCode": "USD", "currencyAmount": float(amount)}


def breakdown(kind: str, amount: str, *children: Json) -> Json:
    node: Json = {"breakdownType": kind, "breakdownAmount": currency(amount)}
    if children:
        node["breakdowns"] = list(children)
    return node


def at(day: date, hour: int) -> str:
    """``hour`` o'clock of the marketplace's ``day`` (Los Angeles), as Amazon's UTC ISO string."""
    moment = datetime.combine(day, time(hour), zone_of(US)).astimezone(UTC)
    return moment.strftime("%Y-%m-%dT%H:%M:%SZ")


def order(order_id: str, day: date, status: str, lines: list[tuple[int, str | None]]) -> Json:
    """A searchOrders order with PROCEEDS and FULFILLMENT; a None price is a pending order's."""
    items = []
    for n, (quantity, price) in enumerate(lines):
        product: Json = {"asin": "B0TEST0000", "sellerSku": f"SKU-{n}", "title": "Test product"}
        if price is not None:
            product["price"] = {"unitPrice": money(price)}
        items.append({"orderItemId": f"{order_id}-{n}", "quantityOrdered": quantity, "product": product})
    return {
        "orderId": order_id,
        "createdTime": at(day, 10),
        "lastUpdatedTime": at(day, 11),
        "salesChannel": {"channelName": "AMAZON", "marketplaceId": US, "marketplaceName": "Amazon.com"},
        "fulfillment": {"fulfillmentStatus": status, "fulfilledBy": "AMAZON"},
        "orderItems": items,
    }


def transaction(tx_id: str, kind: str, day: date, total: str, breakdowns: list[Json],
                order_id: str | None = None) -> Json:
    """A listTransactions transaction, shaped as the Finances 2024-06-19 model documents it."""
    return {
        "sellingPartnerMetadata": {"sellingPartnerId": "A07FAKESELLER000", "accountType": "Standard Orders",
                                   "marketplaceId": US},
        "transactionId": tx_id,
        "transactionType": kind,
        "transactionStatus": "RELEASED",
        "description": kind,
        "postedDate": at(day, 12),
        "totalAmount": currency(total),
        "marketplaceDetails": {"marketplaceId": US, "marketplaceName": "Amazon.com"},
        "relatedIdentifiers": ([{"relatedIdentifierName": "ORDER_ID", "relatedIdentifierValue": order_id}]
                               if order_id else []),
        "breakdowns": breakdowns,
    }


def sp_campaign(profile: int, day: date, campaign_id: int, cost: str, sales7d: str) -> Json:
    """An spCampaigns row (reporting v3 columns)."""
    return {"_report": "spCampaigns", "_profile": profile, "date": day.isoformat(), "campaignId": campaign_id,
            "campaignName": f"Campaign {campaign_id}", "campaignStatus": "ENABLED", "impressions": 1000,
            "clicks": 40, "cost": float(cost), "purchases7d": 3, "sales7d": float(sales7d),
            "purchases14d": 3, "sales14d": float(sales7d)}


def sp_product(profile: int, day: date, ad_id: int, sku: str, cost: str, sales7d: str) -> Json:
    """An spAdvertisedProduct row (reporting v3 columns)."""
    return {"_report": "spAdvertisedProduct", "_profile": profile, "date": day.isoformat(), "campaignId": 1,
            "adGroupId": 2, "adId": ad_id, "advertisedSku": sku, "advertisedAsin": "B0TEST0000",
            "impressions": 500, "clicks": 20, "cost": float(cost), "spend": float(cost), "purchases7d": 1,
            "sales7d": float(sales7d), "unitsSoldClicks7d": 1}


def only_these_on(fake: FakeAmazon, day: date, *, orders: list[Json] = (),  # type: ignore[assignment]
                  transactions: list[Json] = (), ad_rows: list[Json] = ()) -> None:  # type: ignore[assignment]
    """Seller 0's ``day`` holds exactly these records (the seeded ones are taken out)."""
    data = fake.data[0]
    fake.set_records(
        0,
        orders=[o for o in data.orders if local_day(o["createdTime"], US) != day] + list(orders),
        transactions=[t for t in data.transactions if local_day(t["postedDate"], US) != day]
        + list(transactions),
        ad_rows=[r for r in data.ad_rows if r["date"] != day.isoformat()] + list(ad_rows),
    )


def a_past_day(fake: FakeAmazon) -> date:
    return fake.clock.now().astimezone(zone_of(US)).date() - timedelta(days=5)


# The example: 166.24 of fees on orders, and a 356.73 weekly ad bill that was added
# to them (522.97). The ad bill is the Ads reports' spend, already in ad spend.
SHIPMENT = [
    breakdown("Sales", "800.00", breakdown("ProductCharges", "800.00")),
    breakdown("Expenses", "-166.24", breakdown("AmazonFees", "-166.24", breakdown("Commission", "-120.00"),
                                               breakdown("FBAPerUnitFulfillmentFee", "-46.24"))),
]
AD_BILL = [breakdown("Expenses", "-356.73", breakdown("Advertising", "-356.73",
                                                      breakdown("CostOfAdvertising", "-356.73")))]
def sold_800(day: date, order_id: str, *more: Json) -> dict[str, list[Json]]:
    """A shipped order of 2 x 400.00 with its Shipment transaction (fees 166.24), and ``more``
    transactions that day."""
    return {"orders": [order(order_id, day, "SHIPPED", [(2, "400.00")])],
            "transactions": [transaction("T-SHIP", "Shipment", day, "633.76", SHIPMENT, order_id), *more]}


SUBSCRIPTION = [breakdown("Expenses", "-39.99", breakdown("AmazonFees", "-39.99",
                                                          breakdown("Subscription", "-39.99")))]


async def test_ad_billing_is_not_a_fee_and_ad_spend_is_deducted_once(
    ctx: SyncContext, fake: FakeAmazon
) -> None:
    day = a_past_day(fake)
    profile = fake.sellers[0].profile_id
    only_these_on(fake, day, **sold_800(day, "111-0000001-0000001",
                                        transaction("T-ADS", "ProductAdsPayment", day, "-356.73", AD_BILL)),
                  ad_rows=[sp_campaign(profile, day, 1, "50.00", "200.00")])
    await sync_account(ctx, "acct-0", ["orders", "fees", "ppc"], no_progress)
    [report] = await build_daily_report(ctx, "acct-0", day)
    assert (report.revenue, report.fees, report.ad_spend) == (Decimal("800.00"), Decimal("166.24"),
                                                              Decimal("50.00"))
    assert report.net_proceeds == Decimal("583.76")  # 800.00 - 166.24 - 50.00, ad spend once
    stored = {r["transaction_id"]: r for r in ctx.storage.rows(schema.financial_transactions, "acct-0")}
    assert (stored["T-ADS"]["fees"], stored["T-ADS"]["ad_billing"]) == (Decimal("0.00"), Decimal("-356.73"))


async def test_service_fees_are_their_own_line_and_come_off_net_proceeds(
    ctx: SyncContext, fake: FakeAmazon
) -> None:
    day = a_past_day(fake)
    only_these_on(fake, day, **sold_800(day, "111-0000002-0000001",
                                        transaction("T-SUB", "ServiceFee", day, "-39.99", SUBSCRIPTION)))
    await sync_account(ctx, "acct-0", ["orders", "fees", "ppc"], no_progress)
    [report] = await build_daily_report(ctx, "acct-0", day)
    assert (report.fees, report.service_fees, report.ad_spend) == (Decimal("166.24"), Decimal("39.99"),
                                                                   Decimal("0.00"))
    assert report.net_proceeds == Decimal("593.77")  # 800.00 - 166.24 - 39.99
    row = list(csv.DictReader(io.StringIO(report.csv_path.read_text())))[-1]
    assert (row["amazon_fees"], row["service_fees"], row["net_proceeds"]) == ("166.24", "39.99", "593.77")
    html = report.html_path.read_text()
    assert "<th>Service fees</th><td>39.99 USD</td>" in html
    assert "<th>Amazon fees</th><td>166.24 USD</td>" in html
    [stored] = ctx.storage.rows(schema.reports, "acct-0")
    assert (stored["service_fees"], stored["fees"]) == (Decimal("39.99"), Decimal("166.24"))


async def test_units_and_revenue_cover_the_same_orders(ctx: SyncContext, fake: FakeAmazon) -> None:
    """Shipped, partially shipped and unshipped orders count; pending (no price yet),
    unfulfillable and cancelled ones count in neither units nor revenue."""
    day = a_past_day(fake)
    only_these_on(fake, day, orders=[
        order("111-0000003-0000001", day, "SHIPPED", [(2, "400.00")]),
        order("111-0000003-0000002", day, "UNSHIPPED", [(1, "25.00")]),
        order("111-0000003-0000003", day, "PARTIALLY_SHIPPED", [(1, "10.00"), (2, "5.50")]),
        order("111-0000003-0000004", day, "PENDING", [(3, None)]),
        order("111-0000003-0000005", day, "UNFULFILLABLE", [(1, "99.00")]),
        order("111-0000003-0000006", day, "CANCELLED", [(1, "50.00")]),
    ])
    await sync_account(ctx, "acct-0", ["orders"], no_progress)
    [report] = await build_daily_report(ctx, "acct-0", day)
    assert (report.orders, report.units, report.revenue) == (3, 6, Decimal("846.00"))
    stored = {r["order_id"]: r["status"] for r in ctx.storage.rows(schema.orders, "acct-0")}
    assert stored["111-0000003-0000004"] == "PENDING"  # stored, only not counted


def _window_rows(fake: FakeAmazon, today: date) -> list[Json]:
    """Campaign A: 200.00 for 300.00 of sales over 4 days (66.7 %); B: 50.00 for 400.00
    (12.5 %); C: 8.00 with no sales. The account: 258.00 / 700.00 = 36.9 %."""
    profile = fake.sellers[0].profile_id
    rows = [sp_campaign(profile, today - timedelta(days=d), 901, "50.00", "75.00") for d in (1, 2, 3, 4)]
    rows.append(sp_campaign(profile, today - timedelta(days=5), 902, "50.00", "400.00"))
    rows.append(sp_campaign(profile, today - timedelta(days=6), 903, "8.00", "0.00"))
    return rows


async def _alerts_for(ctx: SyncContext, fake: FakeAmazon, **settings: Any) -> dict[tuple[str, str], Any]:
    today = fake.clock.now().astimezone(zone_of(US)).date()
    data = fake.data[0]
    recent = (today - timedelta(days=10)).isoformat()
    fake.set_records(0, ad_rows=[r for r in data.ad_rows if r["date"] < recent] + _window_rows(fake, today))
    if settings:
        ctx.storage.update_account("acct-0", **settings)
    await sync_account(ctx, "acct-0", ["ppc"], no_progress)
    return {(a.kind, a.subject): a for a in await check_alerts(ctx, "acct-0", fake.clock.now())
            if a.kind != "low_stock"}


async def test_account_level_acos_alert(ctx: SyncContext, fake: FakeAmazon) -> None:
    alerts = await _alerts_for(ctx, fake)
    # Only campaign A is over 30 %, but the account as a whole is too (and C spent under 10.00).
    assert set(alerts) == {("high_acos", "901"), ("high_acos_account", US)}
    account = alerts[("high_acos_account", US)]
    assert account.value == pytest.approx(258 / 700, abs=1e-4) and account.threshold == 0.30
    assert alerts[("high_acos", "901")].value == pytest.approx(200 / 300, abs=1e-4)


async def test_alert_thresholds_and_windows_are_per_account(ctx: SyncContext, fake: FakeAmazon) -> None:
    # Three days: only A's last three (150.00 / 225.00); spend with no sales alerts above 5.00.
    alerts = await _alerts_for(ctx, fake, acos_window_days=3, no_sales_min_spend=Decimal("5.00"),
                               acos_target=0.70)
    assert alerts == {}  # 66.7 % < 70 %, and C (day 6) is outside the window
    ctx.storage.update_account("acct-0", acos_window_days=7, acos_target=0.50)
    tomorrow = fake.clock.now() + timedelta(days=1)  # a new day: alerts may be raised again
    found = {(a.kind, a.subject) for a in await check_alerts(ctx, "acct-0", tomorrow)
             if a.kind != "low_stock"}
    # Seen from tomorrow, the 7 days hold all of A (66.7 % > 50 %), B and C (8.00 > 5.00);
    # the account (36.9 %) is under 50 %.
    assert found == {("high_acos", "901"), ("spend_no_sales", "903")}


async def test_a_report_on_incomplete_data_says_so_and_a_rebuild_gives_the_full_figures(
    ctx: SyncContext, fake: FakeAmazon
) -> None:
    day = fake.clock.now().astimezone(zone_of(US)).date() - timedelta(days=1)
    await sync_account(ctx, "acct-0", ["orders", "fees"], no_progress)  # the Ads sync did not run
    [partial] = await build_daily_report(ctx, "acct-0", day)
    assert not partial.complete and partial.ad_spend == 0
    assert partial.missing == ["ads-profiles"]
    row = list(csv.DictReader(io.StringIO(partial.csv_path.read_text())))[-1]
    assert (row["complete"], row["missing"]) == ("no", "ads-profiles")
    assert "Data incomplete: ads-profiles" in partial.html_path.read_text()
    [stored] = ctx.storage.rows(schema.reports, "acct-0")
    assert (stored["complete"], stored["missing"]) == (False, ["ads-profiles"])
    now = fake.clock.now()
    raised = await incomplete_report_alerts(ctx, [partial], now)
    assert [(a.kind, a.subject, a.day) for a in raised] == [("data_incomplete", US, day)]
    assert await incomplete_report_alerts(ctx, [partial], now) == []  # once per day
    await sync_account(ctx, "acct-0", ["ppc"], no_progress)
    [full] = await build_daily_report(ctx, "acct-0", day)
    assert full.complete and full.missing == [] and full.ad_spend > 0
    assert full.revenue == partial.revenue
    [stored] = ctx.storage.rows(schema.reports, "acct-0")
    assert stored["complete"] is True and stored["ad_spend"] == full.ad_spend


async def test_a_day_is_the_marketplaces_day(ctx: SyncContext, fake: FakeAmazon) -> None:
    """An order placed at 23:30 in Los Angeles is that day's sale, though it is the next day
    in UTC; the same for a transaction posted then."""
    day = a_past_day(fake)
    late = order("111-0000004-0000001", day, "SHIPPED", [(1, "30.00")])
    late["createdTime"] = late["lastUpdatedTime"] = at(day, 23).replace(":00:00Z", ":30:00Z")
    fee = transaction("T-LATE", "Shipment", day, "25.50", [
        breakdown("Sales", "30.00"), breakdown("Expenses", "-4.50", breakdown("Commission", "-4.50"))],
        "111-0000004-0000001")
    fee["postedDate"] = late["createdTime"]
    assert fee["postedDate"][:10] == (day + timedelta(days=1)).isoformat()  # UTC: the next day
    only_these_on(fake, day, orders=[late], transactions=[fee])
    await sync_account(ctx, "acct-0", ["orders", "fees"], no_progress)
    [report] = await build_daily_report(ctx, "acct-0", day)
    assert (report.orders, report.units, report.revenue, report.fees) == (1, 1, Decimal("30.00"),
                                                                          Decimal("4.50"))
    assert report.timezone == "America/Los_Angeles"


async def test_the_html_report_has_two_axes_and_marks_what_is_over_target(
    ctx: SyncContext, fake: FakeAmazon
) -> None:
    day = a_past_day(fake)
    profile = fake.sellers[0].profile_id
    only_these_on(fake, day, **sold_800(day, "111-0000005-0000001",
                                        transaction("T-SUB", "ServiceFee", day, "-39.99", SUBSCRIPTION)),
                  # ACOS 60.7 % against 30 %; one SKU over target, one under.
                  ad_rows=[sp_campaign(profile, day, 1, "60.70", "100.00"),
                           sp_product(profile, day, 11, "SKU-HOT", "50.00", "60.00"),
                           sp_product(profile, day, 12, "SKU-OK", "10.70", "40.00")])
    await sync_account(ctx, "acct-0", ["orders", "fees", "ppc"], no_progress)
    [report] = await build_daily_report(ctx, "acct-0", day)
    html = report.html_path.read_text()
    assert 'Revenue (USD)</text>' in html and 'Ad spend (USD)</text>' in html  # a second axis
    assert 'aria-label="ACOS against target"' in html and "target 30.0 %" in html
    assert '<td class="over">60.7 % over target</td>' in html
    assert html.count('class="over"><title>' + day.isoformat()) == 1  # the day's dot, in red
    assert "<th>Service fees</th><td>39.99 USD</td>" in html
    assert "Data complete" in html
    # Per-SKU Sponsored Products for the day (from spAdvertisedProduct), by spend.
    assert [s["sku"] for s in report.top_skus] == ["SKU-HOT", "SKU-OK"]
    assert "<th>SKU-HOT</th><td>B0TEST0000</td><td>50.00 USD</td><td>60.00 USD</td>" \
           '<td class="over">83.3 %</td>' in html
    assert '<td>26.8 %</td>' in html
