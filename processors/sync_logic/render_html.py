"""The daily report as one self-contained HTML page (inline SVG, no script, no external URL).

Two charts: revenue bars on the left axis with ad spend as a line on its own right axis (ad
spend is a fraction of revenue, so one scale would flatten it), then daily ACOS against the
account's target, days over target marked. Figures over target are marked in the table too,
and days whose data was not complete are marked in both charts.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from decimal import Decimal
from html import escape
from typing import TYPE_CHECKING

from processors.sync_logic.metrics import ratio

if TYPE_CHECKING:
    from processors.sync_logic.daily_report import DailyReport

WIDTH, HEIGHT, PAD = 760, 260, 56
REVENUE, SPEND, ACOS, OVER, GREY = "#4e79a7", "#e15759", "#59a14f", "#d62728", "#999"
STYLE = (
    "body{font-family:system-ui,sans-serif;margin:2em;color:#222;max-width:60em}"
    "table{border-collapse:collapse;margin:1em 0}th,td{padding:4px 12px;border-bottom:1px solid #ddd;"
    "text-align:left}td{text-align:right}.over{color:#d62728;font-weight:bold}"
    ".complete{background:#eaf6ea;padding:.5em 1em}.incomplete{background:#fdecea;color:#8a1c12;"
    "padding:.5em 1em;font-weight:bold}"
)


_OVER_TEXT = " over target"


def _over(flag: bool) -> str:
    """The class that marks a figure over its target (or data that is incomplete)."""
    return ' class="over"' if flag else ""


def _money(value: Decimal, currency: str) -> str:
    return f"{value:,.2f} {escape(currency)}"


def _pct(value: float | None) -> str:
    return "n/a" if value is None else f"{value * 100:.1f} %"


def _scale(top: Decimal | float) -> Callable[[Decimal | float], float]:
    inner = HEIGHT - 2 * PAD

    def y(value: Decimal | float) -> float:
        return HEIGHT - PAD - float(value) / float(top) * inner

    return y


def _axis(x: float, top: Decimal | float, label: str, color: str, anchor: str, fmt: str) -> str:
    y = _scale(top)
    dx = -6 if anchor == "end" else 6
    ticks = "".join(
        f'<text x="{x + dx}" y="{y(t) + 4:.1f}" font-size="11" text-anchor="{anchor}" fill="{color}">'
        f"{format(t, fmt)}</text>"
        for t in (0, float(top) / 2, float(top))
    )
    rotate = -90 if anchor == "end" else 90
    lx = x - 44 if anchor == "end" else x + 44
    return (
        f'<line x1="{x}" y1="{PAD}" x2="{x}" y2="{HEIGHT - PAD}" stroke="{color}"/>' + ticks
        + f'<text x="{lx}" y="{HEIGHT / 2}" font-size="12" fill="{color}" text-anchor="middle" '
        f'transform="rotate({rotate} {lx} {HEIGHT / 2})">{escape(label)}</text>'
    )


def _frame(title: str, days: Sequence[str], body: str) -> str:
    return (
        f'<svg xmlns="http://www.w3.org/2000/svg" width="{WIDTH}" height="{HEIGHT}" '
        f'viewBox="0 0 {WIDTH} {HEIGHT}" role="img" aria-label="{escape(title)}">'
        f'<line x1="{PAD}" y1="{HEIGHT - PAD}" x2="{WIDTH - PAD}" y2="{HEIGHT - PAD}" stroke="#333"/>'
        f'<text x="{PAD}" y="{HEIGHT - PAD + 16}" font-size="11">{days[0]}</text>'
        f'<text x="{WIDTH - PAD}" y="{HEIGHT - PAD + 16}" font-size="11" text-anchor="end">{days[-1]}</text>'
        + body + "</svg>"
    )


def _incomplete_marks(report: DailyReport, step: float) -> str:
    return "".join(
        f'<rect x="{PAD + n * step:.1f}" y="{PAD - 8}" width="{step:.1f}" height="4" fill="{GREY}" '
        f'class="incomplete-day"><title>{d.day.isoformat()}: data incomplete ({escape(", ".join(m))})'
        "</title></rect>"
        for n, (d, m) in enumerate(zip(report.history, report.history_missing, strict=True)) if m
    )


def money_chart(report: DailyReport) -> str:
    """Revenue bars (left axis) and ad spend (line, right axis), for the trailing days."""
    days = report.history
    c = report.currency
    revenue_top = max([d.revenue for d in days] + [Decimal(1)])
    spend_top = max([d.ad_spend for d in days] + [Decimal(1)])
    y_revenue, y_spend = _scale(revenue_top), _scale(spend_top)
    step = (WIDTH - 2 * PAD) / max(1, len(days))
    bars, points = [], []
    for n, d in enumerate(days):
        x = PAD + n * step
        bars.append(
            f'<rect x="{x + 1:.1f}" y="{y_revenue(d.revenue):.1f}" width="{max(1.0, step - 2):.1f}" '
            f'height="{HEIGHT - PAD - y_revenue(d.revenue):.1f}" fill="{REVENUE}">'
            f"<title>{d.day.isoformat()}: revenue {_money(d.revenue, c)}</title></rect>"
        )
        points.append(f"{x + step / 2:.1f},{y_spend(d.ad_spend):.1f}")
    return _frame(
        "Revenue and ad spend", [days[0].day.isoformat(), days[-1].day.isoformat()],
        _axis(PAD, revenue_top, f"Revenue ({c})", REVENUE, "end", ",.0f")
        + _axis(WIDTH - PAD, spend_top, f"Ad spend ({c})", SPEND, "start", ",.0f")
        + "".join(bars)
        + f'<polyline points="{" ".join(points)}" fill="none" stroke="{SPEND}" stroke-width="2"/>'
        + _incomplete_marks(report, step)
        + f'<rect x="{WIDTH - 230}" y="8" width="10" height="10" fill="{REVENUE}"/>'
        f'<text x="{WIDTH - 216}" y="17" font-size="11">Revenue (left)</text>'
        f'<rect x="{WIDTH - 130}" y="12" width="10" height="3" fill="{SPEND}"/>'
        f'<text x="{WIDTH - 116}" y="17" font-size="11">Ad spend (right)</text>',
    )


def acos_chart(report: DailyReport) -> str:
    """Daily ACOS with the target as a dashed line; days over target as red dots."""
    days = report.history
    acos = [ratio(d.ad_spend, d.ad_sales) for d in days]
    top = max([a for a in acos if a is not None] + [report.acos_target * 1.5, 0.01])
    y = _scale(top)
    step = (WIDTH - 2 * PAD) / max(1, len(days))
    points, dots = [], []
    for n, (d, value) in enumerate(zip(days, acos, strict=True)):
        if value is None:
            continue
        x = PAD + n * step + step / 2
        points.append(f"{x:.1f},{y(value):.1f}")
        over = value > report.acos_target
        dots.append(
            f'<circle cx="{x:.1f}" cy="{y(value):.1f}" r="{4 if over else 2.5}" '
            f'fill="{OVER if over else ACOS}"{_over(over)}>'
            f"<title>{d.day.isoformat()}: ACOS {_pct(value)}{_OVER_TEXT if over else ''}</title></circle>"
        )
    target = y(report.acos_target)
    return _frame(
        "ACOS against target", [days[0].day.isoformat(), days[-1].day.isoformat()],
        _axis(PAD, top * 100, "ACOS (%)", ACOS, "end", ".0f")
        + f'<line x1="{PAD}" y1="{target:.1f}" x2="{WIDTH - PAD}" y2="{target:.1f}" stroke="{OVER}" '
        f'stroke-dasharray="6 4"/><text x="{WIDTH - PAD}" y="{target - 4:.1f}" font-size="11" '
        f'text-anchor="end" fill="{OVER}">target {_pct(report.acos_target)}</text>'
        + (f'<polyline points="{" ".join(points)}" fill="none" stroke="{ACOS}" stroke-width="2"/>'
           if points else "")
        + "".join(dots)
        + _incomplete_marks(report, step),
    )


def _completeness(report: DailyReport) -> str:
    if report.complete:
        return ('<p class="complete">Data complete: orders, finances and ads were synced through '
                "the end of this day.</p>")
    return (f'<p class="incomplete">Data incomplete: {escape(", ".join(report.missing))} not synced '
            "through the end of this day. These figures are partial; rebuild the report after the "
            "next sync.</p>")


def _sku_table(report: DailyReport) -> str:
    if not report.top_skus:
        return ""
    c = report.currency
    rows = []
    for item in report.top_skus:
        acos = ratio(item["cost"] or Decimal(0), item["sales7d"] or Decimal(0))
        over = acos is not None and acos > report.acos_target
        rows.append(
            f"<tr><th>{escape(str(item['sku']))}</th><td>{escape(str(item['asin'] or ''))}</td>"
            f"<td>{_money(item['cost'], c)}</td><td>{_money(item['sales7d'], c)}</td>"
            f"<td{_over(over)}>{_pct(acos)}</td></tr>"
        )
    return ("<h2>Sponsored Products by advertised SKU</h2><table><tr><th>SKU</th><th>ASIN</th>"
            "<th>Spend</th><th>Sales (7-day)</th><th>ACOS</th></tr>" + "".join(rows) + "</table>")


def render_html(report: DailyReport) -> str:
    c = report.currency
    over = report.acos is not None and report.acos > report.acos_target
    rows: list[tuple[str, str, bool]] = [
        ("Orders", str(report.orders), False),
        ("Units", str(report.units), False),
        ("Revenue", _money(report.revenue, c), False),
        ("Amazon fees", _money(report.fees, c), False),
        ("Service fees", _money(report.service_fees, c), False),
        ("Refunds", _money(report.refunds, c), False),
        ("Ad spend (SP, SB, SD)", _money(report.ad_spend, c), False),
        ("Ad sales (attributed)", _money(report.ad_sales, c), False),
        (f"ACOS (target {_pct(report.acos_target)})", _pct(report.acos) + (" over target" if over else ""),
         over),
        ("TACOS", _pct(report.tacos), False),
        ("Net proceeds", _money(report.net_proceeds, c), False),
        ("Data", "complete" if report.complete else "incomplete: " + ", ".join(report.missing),
         not report.complete),
    ]
    table = "".join(
        f"<tr><th>{escape(k)}</th><td{_over(flag)}>{escape(v)}</td></tr>"
        for k, v, flag in rows
    )
    title = (f"Daily report {report.day.isoformat()} - {escape(report.account_name)} - "
             f"{escape(report.country)}")
    return (
        '<!DOCTYPE html>\n<html lang="en"><head><meta charset="utf-8">'
        f"<title>{title}</title><style>{STYLE}</style></head><body>"
        f"<h1>{title}</h1>"
        f"<p>Marketplace {escape(report.marketplace_id)}, amounts in {escape(c)}, days in "
        f"{escape(report.timezone)}. Net proceeds = revenue - Amazon fees - service fees - refunds "
        "- ad spend (Amazon's ad billing is that same spend and is not counted again).</p>"
        f"{_completeness(report)}<table>{table}</table>"
        f"<h2>Last {len(report.history)} days</h2>{money_chart(report)}{acos_chart(report)}"
        f"{_sku_table(report)}</body></html>\n"
    )
