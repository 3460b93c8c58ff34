"""Totals computed straight from the fake's seed fixtures, independent of client and storage."""

from __future__ import annotations

from collections import defaultdict
from datetime import date, timedelta
from decimal import Decimal

from processors.fake_amazon import SellerData


def dec(value: object) -> Decimal:
    return Decimal(str(value))


def day_totals(data: SellerData, day: date) -> dict[str, Decimal | int]:
    iso = day.isoformat()
    units = 0
    orders = 0
    revenue = Decimal(0)
    for order in data.orders:
        if order["createdTime"][:10] != iso or order["fulfillment"]["fulfillmentStatus"] == "CANCELLED":
            continue
        orders += 1
        for item in order["orderItems"]:
            units += item["quantityOrdered"]
            revenue += dec(item["product"]["price"]["unitPrice"]["amount"]) * item["quantityOrdered"]
    fees = Decimal(0)
    refunds = Decimal(0)
    for tx in data.transactions:
        if tx["postedDate"][:10] != iso:
            continue
        for breakdown in tx["breakdowns"]:
            amount = dec(breakdown["breakdownAmount"]["currencyAmount"])
            if breakdown["breakdownType"] == "Expenses":
                fees -= amount
            if breakdown["breakdownType"] == "Sales" and tx["transactionType"] == "Refund":
                refunds -= amount
    spend = sum((dec(r["cost"]) for r in data.ad_rows if r["date"] == iso), Decimal(0))
    ad_sales = sum((dec(r["sales7d"]) for r in data.ad_rows if r["date"] == iso), Decimal(0))
    return {
        "orders": orders,
        "units": units,
        "revenue": revenue,
        "fees": fees,
        "refunds": refunds,
        "ad_spend": spend,
        "ad_sales7d": ad_sales,
    }


def expected_alerts(
    data: SellerData, today: date, *, low_stock_days: int, acos_target: float, min_spend: Decimal
) -> set[tuple[str, str]]:
    sold: dict[str, int] = defaultdict(int)
    first = (today - timedelta(days=14)).isoformat()
    for order in data.orders:
        created = order["createdTime"][:10]
        if not first <= created < today.isoformat():
            continue
        if order["fulfillment"]["fulfillmentStatus"] == "CANCELLED":
            continue
        for item in order["orderItems"]:
            sold[item["product"]["sellerSku"]] += item["quantityOrdered"]
    alerts = set()
    for summary in data.inventory:
        rate = Decimal(sold[summary["sellerSku"]]) / 14
        details = summary["inventoryDetails"]
        available = (
            details["fulfillableQuantity"]
            + details["inboundWorkingQuantity"]
            + details["inboundShippedQuantity"]
            + details["inboundReceivingQuantity"]
        )
        if rate > 0 and Decimal(available) / rate < low_stock_days:
            alerts.add(("low_stock", summary["sellerSku"]))
    start, end = (today - timedelta(days=7)).isoformat(), (today - timedelta(days=1)).isoformat()
    cost: dict[int, Decimal] = defaultdict(Decimal)
    sales: dict[int, Decimal] = defaultdict(Decimal)
    for row in data.ad_rows:
        if start <= row["date"] <= end:
            cost[row["campaignId"]] += dec(row["cost"])
            sales[row["campaignId"]] += dec(row["sales7d"])
    for campaign, spent in cost.items():
        if sales[campaign] > 0 and spent / sales[campaign] > Decimal(str(acos_target)):
            alerts.add(("high_acos", str(campaign)))
        elif sales[campaign] == 0 and spent >= min_spend:
            alerts.add(("spend_no_sales", str(campaign)))
    return alerts
