"""``build_daily_report``: one account's numbers for one day, per marketplace, stored and rendered.

The rules, the same for the stored row, the CSV, the HTML and the job's result:

* A day is the marketplace's day, in its time zone (``America/Los_Angeles`` for the US).
* Each marketplace is reported on its own, in its own currency; two currencies are never added.
* ``units`` and ``revenue`` count the same orders: shipped, partially shipped and unshipped
  ones (a pending order has no price yet; cancelled and unfulfillable ones are not sales).
* ``fees``: Amazon's fees on orders, net of the ones refunds give back. ``service_fees``:
  account-level charges (subscription, storage). ``ad_spend``: the Ads reports' cost of
  Sponsored Products, Brands and Display. Amazon's ad billing (``ProductAdsPayment``) is the
  same money as ``ad_spend`` and is never counted again.
* ``net_proceeds = revenue - fees - service_fees - refunds - ad_spend``.
* ``acos = ad_spend / ad_sales`` (attributed sales: SP 7-day, SB/SD 14-day); ``tacos =
  ad_spend / revenue``; None when the denominator is 0.
* ``complete`` says whether every data set was synced through the end of the day; ``missing``
  names the others. Rebuilding the report after a later sync gives the full figures.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from decimal import Decimal
from pathlib import Path
from typing import Any

from processors.storage import schema
from processors.storage.records import AccountRecord, DailyTotals
from processors.sync_logic.completeness import missing_data
from processors.sync_logic.context import SyncContext
from processors.sync_logic.metrics import ratio
from processors.sync_logic.render_csv import render_csv
from processors.sync_logic.render_html import render_html
from processors.sync_logic.scopes import MarketplaceScope, ads_configured, marketplace_scopes

CHART_DAYS = 30
TOP_SKUS = 10


@dataclass(frozen=True)
class DailyReport:
    account_id: str
    account_name: str
    marketplace_id: str
    country: str
    currency: str
    timezone: str
    day: date
    orders: int
    units: int
    revenue: Decimal
    fees: Decimal
    service_fees: Decimal
    refunds: Decimal
    ad_spend: Decimal
    ad_sales: Decimal
    acos: float | None
    tacos: float | None
    net_proceeds: Decimal
    complete: bool
    missing: list[str]
    acos_target: float
    # The trailing days, the report day last, and each day's missing data sets.
    history: list[DailyTotals]
    history_missing: list[list[str]]
    csv_path: Path
    html_path: Path
    # Sponsored Products per advertised SKU over the report day: sku, asin, cost, sales7d, clicks.
    top_skus: list[dict[str, Any]] = field(default_factory=list)


async def build_daily_report(
    ctx: SyncContext, account_id: str, day: date | None = None, marketplace_id: str | None = None
) -> list[DailyReport]:
    """Builds, writes (CSV, HTML) and stores the report of ``day`` for each of the account's
    marketplaces (or only ``marketplace_id``). ``day`` None: each marketplace's yesterday.

    Raises KeyError for an unknown account, ValueError for a marketplace the account lacks.
    """
    record = await ctx.db(ctx.storage.get_account, account_id)
    profiles = await ctx.db(ctx.storage.ads_profiles, account_id)
    scopes = marketplace_scopes(record, profiles)
    if marketplace_id is not None:
        scopes = [s for s in scopes if s.marketplace_id == marketplace_id]
        if not scopes:
            raise ValueError(f"account {account_id!r} does not sell in marketplace {marketplace_id!r}; "
                             f"its marketplaces: {', '.join(record.marketplace_ids)}")
    states = await ctx.db(ctx.storage.sync_states, account_id)
    now = ctx.settings.clock()
    reports = []
    for scope in scopes:
        today = scope.today(now)
        report_day = day or today - timedelta(days=1)
        reports.append(await ctx.db(_build, ctx, record, scope, report_day, today, states))
    return reports


def _build(ctx: SyncContext, record: AccountRecord, scope: MarketplaceScope, day: date, today: date,
           states: Any) -> DailyReport:
    storage = ctx.storage
    history = storage.daily_totals(
        record.id, scope.marketplace_id, scope.currency, day - timedelta(days=CHART_DAYS - 1), day,
        zone=scope.zone, profile_ids=scope.profile_ids, unattributed=scope.home)
    ads = ads_configured(record, os.environ if ctx.settings.env is None else ctx.settings.env)
    history_missing = [missing_data(states, scope, d.day, today, ads=ads) for d in history]
    last = history[-1]
    folder = ctx.settings.report_dir / _safe(record.id) / _safe(scope.country)
    report = DailyReport(
        account_id=record.id,
        account_name=record.name,
        marketplace_id=scope.marketplace_id,
        country=scope.country,
        currency=scope.currency,
        timezone=scope.zone.key,
        day=day,
        orders=last.orders,
        units=last.units,
        revenue=last.revenue,
        fees=last.fees,
        service_fees=last.service_fees,
        refunds=last.refunds,
        ad_spend=last.ad_spend,
        ad_sales=last.ad_sales,
        acos=ratio(last.ad_spend, last.ad_sales),
        tacos=ratio(last.ad_spend, last.revenue),
        net_proceeds=last.net_proceeds,
        complete=not history_missing[-1],
        missing=history_missing[-1],
        acos_target=record.acos_target,
        history=history,
        history_missing=history_missing,
        csv_path=folder / f"{day.isoformat()}.csv",
        html_path=folder / f"{day.isoformat()}.html",
        top_skus=storage.sku_ad_totals(record.id, scope.profile_ids, day, day)[:TOP_SKUS],
    )
    _write_files(report)
    storage.upsert(schema.reports, [_row(report)])
    return report


def _write_files(report: DailyReport) -> None:
    report.csv_path.parent.mkdir(parents=True, exist_ok=True)
    # Write-then-rename so a reader never sees half a file.
    for path, text in (
        (report.csv_path, render_csv(report)),
        (report.html_path, render_html(report)),
    ):
        tmp = path.with_suffix(path.suffix + ".tmp")
        tmp.write_text(text, encoding="utf-8")
        tmp.replace(path)


def _row(report: DailyReport) -> dict[str, object]:
    return {
        "account_id": report.account_id,
        "marketplace_id": report.marketplace_id,
        "day": report.day,
        "currency": report.currency,
        "timezone": report.timezone,
        "orders": report.orders,
        "units": report.units,
        "revenue": report.revenue,
        "fees": report.fees,
        "service_fees": report.service_fees,
        "refunds": report.refunds,
        "ad_spend": report.ad_spend,
        "ad_sales": report.ad_sales,
        "acos": report.acos,
        "tacos": report.tacos,
        "net_proceeds": report.net_proceeds,
        "complete": report.complete,
        "missing": report.missing,
        "csv_path": str(report.csv_path),
        "html_path": str(report.html_path),
        "generated_at": datetime.now(UTC),
    }


def _safe(name: str) -> str:
    return "".join(c if c.isalnum() or c in "-_" else "_" for c in name)
