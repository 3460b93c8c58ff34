"""The daily report as CSV: the trailing days, the report day last, each with its completeness."""

from __future__ import annotations

import csv
import io
from typing import TYPE_CHECKING

from processors.sync_logic.metrics import ratio

if TYPE_CHECKING:
    from processors.sync_logic.daily_report import DailyReport

COLUMNS = [
    "day", "marketplace", "currency", "orders", "units", "revenue", "amazon_fees", "service_fees",
    "refunds", "ad_spend", "ad_sales", "acos", "tacos", "net_proceeds", "complete", "missing",
]  # fmt: skip


def _pct(value: float | None) -> str:
    return "" if value is None else f"{value:.4f}"


def render_csv(report: DailyReport) -> str:
    """Money as exact decimals in ``currency``; ``acos``/``tacos`` as ratios; ``missing``
    lists the data sets not synced through that day (";"-separated), empty when complete."""
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\n")
    writer.writerow(COLUMNS)
    for day, missing in zip(report.history, report.history_missing, strict=True):
        writer.writerow(
            [
                day.day.isoformat(),
                report.marketplace_id,
                report.currency,
                day.orders,
                day.units,
                day.revenue,
                day.fees,
                day.service_fees,
                day.refunds,
                day.ad_spend,
                day.ad_sales,
                _pct(ratio(day.ad_spend, day.ad_sales)),
                _pct(ratio(day.ad_spend, day.revenue)),
                day.net_proceeds,
                "yes" if not missing else "no",
                ";".join(missing),
            ]
        )
    return out.getvalue()
