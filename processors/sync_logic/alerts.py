"""``check_alerts``: low stock, high ACOS (per campaign and per account), spend without sales,
and incomplete reports; each raised once per condition and day.

Thresholds and windows are the account's settings: ``acos_target`` over the last
``acos_window_days`` days (campaigns and the whole account, per marketplace), spend above
``no_sales_min_spend`` with no attributed sales over the same days, and ``low_stock_days`` of
cover at the rate sold over the last ``sales_window_days`` days. Days are the marketplace's.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import date, datetime, timedelta
from decimal import Decimal
from typing import TYPE_CHECKING

from processors.storage import schema
from processors.storage.records import AccountRecord
from processors.storage.store import day_start
from processors.sync_logic.context import SyncContext
from processors.sync_logic.metrics import ratio
from processors.sync_logic.scopes import MarketplaceScope, marketplace_scopes

if TYPE_CHECKING:
    from processors.sync_logic.daily_report import DailyReport

LOW_STOCK = "low_stock"
HIGH_ACOS = "high_acos"
HIGH_ACOS_ACCOUNT = "high_acos_account"
SPEND_NO_SALES = "spend_no_sales"
DATA_INCOMPLETE = "data_incomplete"


@dataclass(frozen=True)
class Alert:
    account_id: str
    kind: str
    subject: str
    day: date
    severity: str
    message: str
    value: float | None
    threshold: float | None


async def check_alerts(ctx: SyncContext, account_id: str, now: datetime) -> list[Alert]:
    """Evaluate every condition; store and return only the alerts not already raised today."""
    record = await ctx.db(ctx.storage.get_account, account_id)
    profiles = await ctx.db(ctx.storage.ads_profiles, account_id)
    scopes = marketplace_scopes(record, profiles)
    candidates = await ctx.db(_low_stock, ctx, record, scopes[0], now)
    for scope in scopes:
        candidates += await ctx.db(_ad_alerts, ctx, record, scope, scope.today(now))
    return await store_new_alerts(ctx, candidates, now)


async def incomplete_report_alerts(
    ctx: SyncContext, reports: Sequence[DailyReport], now: datetime
) -> list[Alert]:
    """A "data incomplete" alert per report built on data not synced through its day (stored
    once per marketplace and day; rebuilding the report later gives the full figures)."""
    candidates = [
        Alert(r.account_id, DATA_INCOMPLETE, r.marketplace_id, r.day, "warning",
              f"report {r.day.isoformat()} ({r.country}) built on incomplete data: "
              f"{', '.join(r.missing)} not synced through the end of the day",
              float(len(r.missing)), 0.0)
        for r in reports if not r.complete
    ]
    return await store_new_alerts(ctx, candidates, now)


async def store_new_alerts(ctx: SyncContext, candidates: Sequence[Alert], now: datetime) -> list[Alert]:
    """Stores each alert unless the same (account, kind, subject, day) is there; returns the new."""
    raised = []
    for alert in candidates:
        row = {
            "account_id": alert.account_id,
            "kind": alert.kind,
            "subject": alert.subject,
            "day": alert.day,
            "severity": alert.severity,
            "message": alert.message,
            "value": alert.value,
            "threshold": alert.threshold,
            "created_at": now,
        }
        if await ctx.db(ctx.storage.insert_if_absent, schema.alerts, row):
            raised.append(alert)
    return raised


def _low_stock(ctx: SyncContext, record: AccountRecord, home: MarketplaceScope, now: datetime) -> list[Alert]:
    today = home.today(now)
    window = record.sales_window_days
    threshold_days = record.low_stock_days
    sold = ctx.storage.units_by_sku(record.id, day_start(today - timedelta(days=window), home.zone),
                                    day_start(today, home.zone))
    alerts = []
    for item in ctx.storage.latest_inventory(record.id):
        per_day = Decimal(sold.get(item["sku"], 0)) / window
        if per_day <= 0:
            continue  # Nothing sells, so nothing runs out.
        available = item["fulfillable"] + item["inbound"]
        cover = float(Decimal(available) / per_day)
        if cover < threshold_days:
            alerts.append(
                Alert(
                    record.id,
                    LOW_STOCK,
                    item["sku"],
                    today,
                    "critical" if available == 0 else "warning",
                    f"{item['sku']}: {cover:.1f} days of cover ({available} units, "
                    f"{float(per_day):.2f}/day over {window} days) < {threshold_days} days",
                    round(cover, 3),
                    float(threshold_days),
                )
            )
    return alerts


def _ad_alerts(ctx: SyncContext, record: AccountRecord, scope: MarketplaceScope, today: date) -> list[Alert]:
    if not scope.profile_ids:
        return []
    window = record.acos_window_days
    target = record.acos_target
    min_spend: Decimal = record.no_sales_min_spend
    first, last = today - timedelta(days=window), today - timedelta(days=1)
    alerts = []
    total_cost, total_sales = Decimal(0), Decimal(0)
    for campaign in ctx.storage.campaign_totals(record.id, scope.profile_ids, first, last):
        cost: Decimal = campaign["cost"] or Decimal(0)
        sales: Decimal = campaign["attributed_sales"] or Decimal(0)
        total_cost += cost
        total_sales += sales
        subject = str(campaign["campaign_id"])
        name = campaign["campaign_name"] or subject
        acos = ratio(cost, sales)
        if acos is not None and acos > target:
            alerts.append(
                Alert(
                    record.id,
                    HIGH_ACOS,
                    subject,
                    today,
                    "warning",
                    f"{name}: ACOS {acos:.1%} over {window} days > target {target:.1%}",
                    round(acos, 4),
                    target,
                )
            )
        elif acos is None and cost > min_spend:
            alerts.append(
                Alert(
                    record.id,
                    SPEND_NO_SALES,
                    subject,
                    today,
                    "warning",
                    f"{name}: spent {cost} {scope.currency} over {window} days with no attributed sales "
                    f"(alert above {min_spend})",
                    float(cost),
                    float(min_spend),
                )
            )
    # The account as a whole can be over target while only some campaigns are, or none.
    account_acos = ratio(total_cost, total_sales)
    if account_acos is not None and account_acos > target:
        alerts.append(
            Alert(
                record.id,
                HIGH_ACOS_ACCOUNT,
                scope.marketplace_id,
                today,
                "warning",
                f"account ACOS in {scope.country} {account_acos:.1%} over {window} days (spend "
                f"{total_cost} {scope.currency}, attributed sales {total_sales}) > target {target:.1%}",
                round(account_acos, 4),
                target,
            )
        )
    return alerts
