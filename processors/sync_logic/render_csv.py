"""The daily report as CSV: the trailing days, the report day last."""

from __future__ import annotations

import csv
import io
from typing import TYPE_CHECKING

from processors.sync_logic.metrics import ratio

if TYPE_CHECKING:
    from processors.sync_logic.daily_report import DailyReport

COLUMNS = [
    "day", "orders", "units", "revenue", "amazon_fees", "refunds", "ad_spend",
    "ad_sales_7d", "acos", "tacos", "net_proceeds",
]  # fmt: skip


def _pct(value: float | None) -> str:
    return "" if value is None else f"{value:.4f}"


def render_csv(report: DailyReport) -> str:
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\n")
    writer.writerow(COLUMNS)
    for day in report.history:
        writer.writerow(
            [
                day.day.isoformat(),
                day.orders,
                day.units,
                day.revenue,
                day.fees,
                day.refunds,
                day.ad_spend,
                day.ad_sales7d,
                _pct(ratio(day.ad_spend, day.ad_sales7d)),
                _pct(ratio(day.ad_spend, day.revenue)),
                day.revenue - day.fees - day.refunds - day.ad_spend,
            ]
        )
    return out.getvalue()
