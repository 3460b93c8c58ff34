"""``check_alerts``: low stock, high ACOS and spend without sales, once per condition and day."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date, datetime, timedelta
from decimal import Decimal

from processors.storage import schema
from processors.storage.store import day_start
from processors.sync_logic.context import SyncContext
from processors.sync_logic.metrics import ratio

LOW_STOCK = "low_stock"
HIGH_ACOS = "high_acos"
SPEND_NO_SALES = "spend_no_sales"


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
    today = now.date()
    candidates = await ctx.db(_low_stock, ctx, account_id, today, record.low_stock_days)
    candidates += await ctx.db(_ad_alerts, ctx, account_id, today, record.acos_target)
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


def _low_stock(ctx: SyncContext, account_id: str, today: date, threshold_days: int) -> list[Alert]:
    window = ctx.settings.low_stock_sales_window_days
    sold = ctx.storage.units_by_sku(account_id, day_start(today - timedelta(days=window)), day_start(today))
    alerts = []
    for item in ctx.storage.latest_inventory(account_id):
        per_day = Decimal(sold.get(item["sku"], 0)) / window
        if per_day <= 0:
            continue  # Nothing sells, so nothing runs out.
        available = item["fulfillable"] + item["inbound"]
        cover = float(Decimal(available) / per_day)
        if cover < threshold_days:
            alerts.append(
                Alert(
                    account_id,
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


def _ad_alerts(ctx: SyncContext, account_id: str, today: date, target: float) -> list[Alert]:
    window = ctx.settings.acos_window_days
    first, last = today - timedelta(days=window), today - timedelta(days=1)
    alerts = []
    for campaign in ctx.storage.campaign_totals(account_id, first, last):
        cost: Decimal = campaign["cost"] or Decimal(0)
        sales: Decimal = campaign["sales7d"] or Decimal(0)
        subject = str(campaign["campaign_id"])
        name = campaign["campaign_name"] or subject
        acos = ratio(cost, sales)
        if acos is not None and acos > target:
            alerts.append(
                Alert(
                    account_id,
                    HIGH_ACOS,
                    subject,
                    today,
                    "warning",
                    f"{name}: ACOS {acos:.1%} over {window} days > target {target:.1%}",
                    round(acos, 4),
                    target,
                )
            )
        elif acos is None and cost >= ctx.settings.no_sales_min_spend:
            alerts.append(
                Alert(
                    account_id,
                    SPEND_NO_SALES,
                    subject,
                    today,
                    "warning",
                    f"{name}: spent {cost} over {window} days with no attributed sales",
                    float(cost),
                    float(ctx.settings.no_sales_min_spend),
                )
            )
    return alerts
