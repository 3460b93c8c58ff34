"""Figures computed straight from the fake's wire-shaped data, independent of the client, the
storage and the report code: the rules a seller expects, written out once more.

* a marketplace's day is its day in its time zone, in its own currency;
* units and revenue count shipped, partially shipped and unshipped orders only;
* fees are Amazon's fees on orders; service fees (``ServiceFee``) are apart; ad billing
  (``ProductAdsPayment``) is the Ads reports' spend and counts nowhere else;
* ad spend and attributed sales: SP campaigns (7-day), SB and SD campaigns (14-day).
"""

from __future__ import annotations

from collections import defaultdict
from datetime import date, datetime, timedelta
from decimal import Decimal
from zoneinfo import ZoneInfo

from processors.fake_amazon import SellerData
from processors.fake_amazon.dataset import MARKETPLACES

SOLD = {"SHIPPED", "PARTIALLY_SHIPPED", "UNSHIPPED"}
CAMPAIGN_REPORTS = {"spCampaigns": "sales7d", "sbCampaigns": "sales", "sdCampaigns": "sales"}


def dec(value: object) -> Decimal:
    return Decimal(str(value))


def zone_of(marketplace_id: str) -> ZoneInfo:
    return ZoneInfo(MARKETPLACES[marketplace_id][4])


def local_day(timestamp: str, marketplace_id: str) -> date:
    return datetime.fromisoformat(timestamp.replace("Z", "+00:00")).astimezone(zone_of(marketplace_id)).date()


def profile_of(data: SellerData, marketplace_id: str) -> int:
    return data.seller.profile_ids[data.seller.marketplace_ids.index(marketplace_id)]


def _breakdown(tx: dict[str, object], kind: str) -> Decimal:
    return sum((dec(b["breakdownAmount"]["currencyAmount"]) for b in tx["breakdowns"]  # type: ignore[attr-defined,index]
                if b["breakdownType"] == kind), Decimal(0))


def day_totals(data: SellerData, day: date, marketplace_id: str | None = None) -> dict[str, Decimal | int]:
    m = marketplace_id or data.seller.marketplace_id
    units = 0
    orders = 0
    revenue = Decimal(0)
    for order in data.orders:
        if order["salesChannel"]["marketplaceId"] != m or local_day(order["createdTime"], m) != day:
            continue
        if order["fulfillment"]["fulfillmentStatus"] not in SOLD:
            continue
        orders += 1
        for item in order["orderItems"]:
            units += item["quantityOrdered"]
            revenue += dec(item["product"]["price"]["unitPrice"]["amount"]) * item["quantityOrdered"]
    fees = service_fees = refunds = Decimal(0)
    for tx in data.transactions:
        if tx["marketplaceDetails"]["marketplaceId"] != m or local_day(tx["postedDate"], m) != day:
            continue
        if tx["transactionType"] == "ProductAdsPayment":
            continue  # the Ads reports' spend, billed
        if tx["transactionType"] == "ServiceFee":
            service_fees -= _breakdown(tx, "Expenses")
            continue
        fees -= _breakdown(tx, "Expenses")
        if tx["transactionType"] == "Refund":
            refunds -= _breakdown(tx, "Sales")
    spend = ad_sales = Decimal(0)
    profile = profile_of(data, m)
    for row in data.ad_rows:
        if row["_profile"] == profile and row["_report"] in CAMPAIGN_REPORTS \
                and row["date"] == day.isoformat():
            spend += dec(row["cost"])
            ad_sales += dec(row[CAMPAIGN_REPORTS[row["_report"]]])
    return {
        "orders": orders,
        "units": units,
        "revenue": revenue,
        "fees": fees,
        "service_fees": service_fees,
        "refunds": refunds,
        "ad_spend": spend,
        "ad_sales": ad_sales,
    }


def net(want: dict[str, Decimal | int]) -> Decimal:
    return (want["revenue"] - want["fees"] - want["service_fees"] - want["refunds"]  # type: ignore[operator,return-value]
            - want["ad_spend"])


def expected_alerts(
    data: SellerData, now: datetime, *, low_stock_days: int = 14, acos_target: float = 0.30,
    min_spend: Decimal = Decimal("10.00"), acos_days: int = 7, sales_days: int = 14,
) -> set[tuple[str, str]]:
    home = data.seller.marketplace_id
    today = now.astimezone(zone_of(home)).date()
    sold: dict[str, int] = defaultdict(int)
    for order in data.orders:
        if not today - timedelta(days=sales_days) <= local_day(order["createdTime"], home) < today:
            continue
        if order["fulfillment"]["fulfillmentStatus"] not in SOLD:
            continue
        for item in order["orderItems"]:
            sold[item["product"]["sellerSku"]] += item["quantityOrdered"]
    alerts = set()
    for summary in data.inventory:
        rate = Decimal(sold[summary["sellerSku"]]) / sales_days
        details = summary["inventoryDetails"]
        available = (
            details["fulfillableQuantity"]
            + details["inboundWorkingQuantity"]
            + details["inboundShippedQuantity"]
            + details["inboundReceivingQuantity"]
        )
        if rate > 0 and Decimal(available) / rate < low_stock_days:
            alerts.add(("low_stock", summary["sellerSku"]))
    target = Decimal(str(acos_target))
    for m in data.seller.marketplace_ids:
        local_today = now.astimezone(zone_of(m)).date()
        start = (local_today - timedelta(days=acos_days)).isoformat()
        end = (local_today - timedelta(days=1)).isoformat()
        cost: dict[int, Decimal] = defaultdict(Decimal)
        sales: dict[int, Decimal] = defaultdict(Decimal)
        for row in data.ad_rows:
            if row["_profile"] == profile_of(data, m) and row["_report"] in CAMPAIGN_REPORTS \
                    and start <= row["date"] <= end:
                cost[row["campaignId"]] += dec(row["cost"])
                sales[row["campaignId"]] += dec(row[CAMPAIGN_REPORTS[row["_report"]]])
        for campaign, spent in cost.items():
            if sales[campaign] > 0 and spent / sales[campaign] > target:
                alerts.add(("high_acos", str(campaign)))
            elif sales[campaign] == 0 and spent > min_spend:
                alerts.add(("spend_no_sales", str(campaign)))
        total_cost, total_sales = sum(cost.values(), Decimal(0)), sum(sales.values(), Decimal(0))
        if total_sales > 0 and total_cost / total_sales > target:
            alerts.add(("high_acos_account", m))
    return alerts


def campaign_rows(data: SellerData) -> list[dict[str, object]]:
    """Every campaign-day row of every ad product (what ``ad_performance`` holds after a sync)."""
    return [r for r in data.ad_rows if r["_report"] in CAMPAIGN_REPORTS]


def product_rows(data: SellerData) -> list[dict[str, object]]:
    """Every Sponsored Products advertised-product row (``ad_products``)."""
    return [r for r in data.ad_rows if r["_report"] == "spAdvertisedProduct"]
