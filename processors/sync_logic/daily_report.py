"""``build_daily_report``: one account's numbers for one UTC day, stored and rendered."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from decimal import Decimal
from pathlib import Path

from processors.storage import schema
from processors.storage.records import DailyTotals
from processors.sync_logic.context import SyncContext
from processors.sync_logic.metrics import ratio
from processors.sync_logic.render_csv import render_csv
from processors.sync_logic.render_html import render_html

CHART_DAYS = 30


@dataclass(frozen=True)
class DailyReport:
    account_id: str
    day: date
    currency: str
    orders: int
    units: int
    revenue: Decimal
    fees: Decimal
    refunds: Decimal
    ad_spend: Decimal
    ad_sales7d: Decimal
    # Ad spend / 7-day attributed sales; None when there were no attributed sales.
    acos: float | None
    # Ad spend / total revenue; None without revenue.
    tacos: float | None
    # Revenue - Amazon fees (net of refund credits) - refunds - ad spend.
    net_proceeds: Decimal
    history: list[DailyTotals]
    csv_path: Path
    html_path: Path


async def build_daily_report(ctx: SyncContext, account_id: str, day: date) -> DailyReport:
    record = await ctx.db(ctx.storage.get_account, account_id)
    history = await ctx.db(ctx.storage.daily_totals, account_id, day - timedelta(days=CHART_DAYS - 1), day)
    today = history[-1]
    currency = await ctx.db(_currency, ctx, account_id)
    folder = ctx.settings.report_dir / _safe(account_id)
    report = DailyReport(
        account_id=account_id,
        day=day,
        currency=currency,
        orders=today.orders,
        units=today.units,
        revenue=today.revenue,
        fees=today.fees,
        refunds=today.refunds,
        ad_spend=today.ad_spend,
        ad_sales7d=today.ad_sales7d,
        acos=ratio(today.ad_spend, today.ad_sales7d),
        tacos=ratio(today.ad_spend, today.revenue),
        net_proceeds=today.revenue - today.fees - today.refunds - today.ad_spend,
        history=history,
        csv_path=folder / f"{day.isoformat()}.csv",
        html_path=folder / f"{day.isoformat()}.html",
    )
    await ctx.db(_write_files, report, record.name)
    await ctx.db(ctx.storage.upsert, schema.reports, [_row(report)])
    return report


def _write_files(report: DailyReport, account_name: str) -> None:
    report.csv_path.parent.mkdir(parents=True, exist_ok=True)
    # Write-then-rename so a reader never sees half a file.
    for path, text in (
        (report.csv_path, render_csv(report)),
        (report.html_path, render_html(report, account_name)),
    ):
        tmp = path.with_suffix(path.suffix + ".tmp")
        tmp.write_text(text, encoding="utf-8")
        tmp.replace(path)


def _row(report: DailyReport) -> dict[str, object]:
    return {
        "account_id": report.account_id,
        "day": report.day,
        "currency": report.currency,
        "orders": report.orders,
        "units": report.units,
        "revenue": report.revenue,
        "fees": report.fees,
        "refunds": report.refunds,
        "ad_spend": report.ad_spend,
        "ad_sales7d": report.ad_sales7d,
        "acos": report.acos,
        "tacos": report.tacos,
        "net_proceeds": report.net_proceeds,
        "csv_path": str(report.csv_path),
        "html_path": str(report.html_path),
        "generated_at": datetime.now(UTC),
    }


def _currency(ctx: SyncContext, account_id: str) -> str:
    for row in ctx.storage.rows(schema.listings, account_id)[:1]:
        if row["currency"]:
            return str(row["currency"])
    return "USD"


def _safe(name: str) -> str:
    return "".join(c if c.isalnum() or c in "-_" else "_" for c in name)
