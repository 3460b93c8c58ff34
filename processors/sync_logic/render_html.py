"""The daily report as one self-contained HTML page with an inline SVG chart."""

from __future__ import annotations

from decimal import Decimal
from html import escape
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from processors.sync_logic.daily_report import DailyReport

WIDTH, HEIGHT, PAD = 720, 260, 40


def _money(value: Decimal, currency: str) -> str:
    return f"{value:,.2f} {escape(currency)}"


def _pct(value: float | None) -> str:
    return "n/a" if value is None else f"{value * 100:.1f} %"


def chart_svg(report: DailyReport) -> str:
    """Revenue bars with an ad-spend line, for the trailing days."""
    days = report.history
    top = max([d.revenue for d in days] + [d.ad_spend for d in days] + [Decimal(1)])
    step = (WIDTH - 2 * PAD) / max(1, len(days))
    inner = HEIGHT - 2 * PAD

    def y(value: Decimal) -> float:
        return HEIGHT - PAD - float(value / top) * inner

    bars = []
    points = []
    for n, d in enumerate(days):
        x = PAD + n * step
        bars.append(
            f'<rect x="{x + 1:.1f}" y="{y(d.revenue):.1f}" width="{max(1.0, step - 2):.1f}" '
            f'height="{HEIGHT - PAD - y(d.revenue):.1f}" fill="#4e79a7">'
            f"<title>{d.day.isoformat()}: revenue {d.revenue}</title></rect>"
        )
        points.append(f"{x + step / 2:.1f},{y(d.ad_spend):.1f}")
    first, last = days[0].day.isoformat(), days[-1].day.isoformat()
    return (
        f'<svg xmlns="http://www.w3.org/2000/svg" width="{WIDTH}" height="{HEIGHT}" '
        f'viewBox="0 0 {WIDTH} {HEIGHT}" role="img" aria-label="Revenue and ad spend">'
        f'<line x1="{PAD}" y1="{HEIGHT - PAD}" x2="{WIDTH - PAD}" y2="{HEIGHT - PAD}" '
        'stroke="#333"/>'
        f'<line x1="{PAD}" y1="{PAD}" x2="{PAD}" y2="{HEIGHT - PAD}" stroke="#333"/>'
        f'<text x="{PAD - 4}" y="{PAD + 4}" font-size="11" text-anchor="end">{top:,.0f}</text>'
        f'<text x="{PAD}" y="{HEIGHT - PAD + 16}" font-size="11">{first}</text>'
        f'<text x="{WIDTH - PAD}" y="{HEIGHT - PAD + 16}" font-size="11" '
        f'text-anchor="end">{last}</text>'
        + "".join(bars)
        + f'<polyline points="{" ".join(points)}" fill="none" stroke="#e15759" stroke-width="2"/>'
        f'<rect x="{WIDTH - 200}" y="8" width="10" height="10" fill="#4e79a7"/>'
        f'<text x="{WIDTH - 186}" y="17" font-size="11">Revenue</text>'
        f'<rect x="{WIDTH - 120}" y="12" width="10" height="3" fill="#e15759"/>'
        f'<text x="{WIDTH - 106}" y="17" font-size="11">Ad spend</text>'
        "</svg>"
    )


def render_html(report: DailyReport, account_name: str) -> str:
    c = report.currency
    rows = [
        ("Orders", str(report.orders)),
        ("Units", str(report.units)),
        ("Revenue", _money(report.revenue, c)),
        ("Amazon fees", _money(report.fees, c)),
        ("Refunds", _money(report.refunds, c)),
        ("Ad spend", _money(report.ad_spend, c)),
        ("Ad sales (7-day attribution)", _money(report.ad_sales7d, c)),
        ("ACOS", _pct(report.acos)),
        ("TACOS", _pct(report.tacos)),
        ("Net proceeds", _money(report.net_proceeds, c)),
    ]
    table = "".join(f"<tr><th>{escape(k)}</th><td>{v}</td></tr>" for k, v in rows)
    title = f"Daily report {report.day.isoformat()} - {escape(account_name)}"
    return (
        '<!DOCTYPE html>\n<html lang="en"><head><meta charset="utf-8">'
        f"<title>{title}</title>"
        "<style>body{font-family:system-ui,sans-serif;margin:2em;color:#222}"
        "table{border-collapse:collapse}th,td{padding:4px 12px;border-bottom:1px solid #ddd;"
        "text-align:left}td{text-align:right}</style></head><body>"
        f"<h1>{title}</h1><table>{table}</table>"
        f"<h2>Last {len(report.history)} days</h2>{chart_svg(report)}"
        "</body></html>\n"
    )
