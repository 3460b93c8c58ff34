"""The HTML pages: server-rendered with Jinja2, kept live by htmx polling.

Pages read through the same ``Dashboard`` functions as the JSON API, and every button posts
to the JSON API itself (``static/app.js`` shows the answer and refreshes the live parts).
"""

from __future__ import annotations

import datetime as dt
import json
import re
import time
from pathlib import Path
from typing import Any
from urllib.parse import urlencode

from markupsafe import Markup
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route
from starlette.templating import Jinja2Templates

from ..queue import STATES
from .api import as_bool, as_int, dashboard, group_param, map_error, path_id
from .ids import encode_id
from .live import stream_url
from .service import CLEAN_STATES, GROUP_ORDERS, ApiError

HERE = Path(__file__).parent
templates = Jinja2Templates(directory=str(HERE / "templates"))


def ago(ts: float | None) -> str:
    if not ts:
        return "—"
    delta = time.time() - ts
    future = delta < 0
    delta = abs(delta)
    if delta < 1.5:
        text = "now" if not future else "in a moment"
        return text
    if delta < 90:
        n, unit = round(delta), "s"
    elif delta < 5400:
        n, unit = round(delta / 60), "min"
    elif delta < 129600:
        n, unit = round(delta / 3600), "h"
    else:
        n, unit = round(delta / 86400), "d"
    return f"in {n} {unit}" if future else f"{n} {unit} ago"


def iso(ts: float | None) -> str:
    if not ts:
        return ""
    return dt.datetime.fromtimestamp(ts, dt.UTC).strftime("%Y-%m-%d %H:%M:%S UTC")


def pretty(value: Any) -> str:
    return json.dumps(value, indent=2, ensure_ascii=False, sort_keys=False)


def seconds(value: float | None) -> str:
    if value is None or value < 0:
        return "—"
    if value >= 86400 and value % 86400 == 0:
        return f"{int(value // 86400)} d"
    if value >= 3600 and value % 3600 == 0:
        return f"{int(value // 3600)} h"
    return f"{value:g} s"


def duration(value: float) -> str:
    if value < 1:
        return f"{value * 1000:.0f} ms"
    if value < 120:
        return f"{value:.2f} s"
    return f"{value / 60:.1f} min"


def progress_pct(value: Any) -> float | None:
    if isinstance(value, int | float) and not isinstance(value, bool):
        return max(0.0, min(100.0, float(value)))
    return None


def chart(throughput: dict[str, Any], width: int = 720, height: int = 160) -> Markup:
    """Completed (green) and failed (red) jobs per minute as stacked bars, in inline SVG."""
    completed: list[int] = throughput["completed"]
    failed: list[int] = throughput["failed"]
    minutes: list[int] = throughput["minutes"]
    n = len(completed)
    left, bottom, top = 40, 22, 10
    plot_h = height - bottom - top
    peak = max([c + f for c, f in zip(completed, failed, strict=True)] + [1])
    step = _nice(peak)
    ymax = step * max(1, -(-peak // step))
    bw = (width - left - 4) / max(n, 1)
    parts = [f'<svg class="chart" viewBox="0 0 {width} {height}" role="img" '
             f'aria-label="completed and failed jobs per minute">']
    for i in range(0, ymax + 1, step):
        y = top + plot_h - plot_h * i / ymax
        parts.append(f'<line class="grid" x1="{left}" x2="{width}" y1="{y:.1f}" y2="{y:.1f}"/>'
                     f'<text class="axis" x="{left - 6}" y="{y + 4:.1f}" text-anchor="end">{i}</text>')
    for i, (c, f, m) in enumerate(zip(completed, failed, minutes, strict=True)):
        x = left + i * bw + 1
        hc = plot_h * c / ymax
        hf = plot_h * f / ymax
        label = dt.datetime.fromtimestamp(m, dt.UTC).strftime("%H:%M")
        bar_w = max(bw - 2, 1)
        parts.append(f'<g><title>{label} UTC: {c} completed, {f} failed</title>'
                     f'<rect class="hit" x="{x:.1f}" y="{top}" width="{bar_w:.1f}" height="{plot_h}"/>')
        if c:
            parts.append(f'<rect class="ok" x="{x:.1f}" y="{top + plot_h - hc:.1f}" '
                         f'width="{max(bw - 2, 1):.1f}" height="{hc:.1f}"/>')
        if f:
            parts.append(f'<rect class="bad" x="{x:.1f}" y="{top + plot_h - hc - hf:.1f}" '
                         f'width="{max(bw - 2, 1):.1f}" height="{hf:.1f}"/>')
        parts.append("</g>")
    for i in range(0, n, 15):
        x = left + i * bw + bw / 2
        parts.append(f'<text class="axis" x="{x:.1f}" y="{height - 6}" text-anchor="middle">'
                     f'-{n - i}m</text>')
    parts.append(f'<text class="axis" x="{width - 2}" y="{height - 6}" text-anchor="end">now</text>')
    parts.append("</svg>")
    return Markup("".join(parts))


def _nice(peak: int) -> int:
    """A round step for about four grid lines."""
    raw = max(1, peak / 4)
    mag = 10 ** (len(str(int(raw))) - 1)
    for m in (1, 2, 5, 10):
        if raw <= m * mag:
            return int(m * mag)
    return int(10 * mag)


_CHAIN = re.compile(r"\n(The above exception was the direct cause of the following exception:|"
                    r"During handling of the above exception, another exception occurred:)\n")


def trace_parts(stacktrace: str | None) -> list[dict[str, str]]:
    """A Python traceback split at its chained exceptions, the last exception first.

    Each part: ``exception`` (its last line, e.g. ``ValueError: bad row``), ``text`` and
    ``link``: how it relates to the part shown before it ("" for the first, "caused it" for
    an explicit ``raise ... from``, "was being handled" for an implicit chain).
    """
    if not stacktrace:
        return []
    pieces = _CHAIN.split(stacktrace.strip("\n"))
    texts, links = pieces[0::2], pieces[1::2]
    parts = []
    for i, text in enumerate(texts):
        lines = [ln for ln in text.strip("\n").splitlines() if ln.strip()]
        link = ""
        if i < len(links):  # the relation of this part to the one after it (shown before it)
            link = "caused it" if links[i].startswith("The above") else "was being handled"
        parts.append({"exception": lines[-1].strip() if lines else "", "text": text.strip("\n"),
                      "link": link})
    parts.reverse()
    return parts


def qs(**params: Any) -> str:
    return urlencode({k: v for k, v in params.items() if v not in (None, "")})


# ``seg``: a queue name or group id as a URL path segment (ids.py: a name with "/" stays
# one segment); ``jid`` the same for job, scheduler and worker ids.
templates.env.filters.update(ago=ago, iso=iso, pretty=pretty, seconds=seconds, seg=encode_id,
                             duration=duration, jid=encode_id)
templates.env.globals.update(chart=chart, qs=qs, progress_pct=progress_pct, STATES=STATES,
                             CLEAN_STATES=CLEAN_STATES, GROUP_ORDERS=GROUP_ORDERS,
                             trace_parts=trace_parts)


def queue_of(request: Request) -> str | None:
    """The page's queue: from the path (either form of ids.py) or ``?queue=``."""
    if "queue" in request.path_params:
        try:
            return path_id(request, "queue")
        except ApiError:
            return None
    return request.query_params.get("queue")


def render(request: Request, name: str, status: int = 200, **context: Any) -> Response:
    base = request.scope.get("minique.base", "")
    self_url = request.url.path + (f"?{request.url.query}" if request.url.query else "")
    poll = float(getattr(request.app.state, "poll_interval", 3.0))
    context.update(base=base, self_url=self_url, csrf=request.scope.get("minique.csrf", ""),
                   poll=f"{poll:g}s",
                   stream_url=stream_url(base, queue_of(request)))
    return templates.TemplateResponse(request, name, context, status_code=status)


async def page(request: Request, name: str, build: Any) -> Response:
    try:
        context = await build()
    except Exception as exc:
        mapped = map_error(exc)
        if mapped is None:
            raise
        status, code, message = mapped
        return render(request, "error.html", status=status, status_code=status, code=code,
                      message=message)
    return render(request, name, **context)


async def overview(request: Request) -> Response:
    async def build() -> dict[str, Any]:
        return {"o": await dashboard(request).overview(60), "page": "overview"}

    return await page(request, "overview.html", build)


async def queue_page(request: Request) -> Response:
    state = request.query_params.get("state", "waiting")
    search = request.query_params.get("q", "")

    async def build() -> dict[str, Any]:
        # Inside build: a malformed ~id in the path is a 400 page, not a 500.
        name = path_id(request, "queue")
        d = dashboard(request)
        page_no = as_int("page", request.query_params.get("page"), 1)
        info = await d.queue_info(name, minutes=60)
        jobs = await d.jobs(name, state, page=page_no, page_size=25, search=search)
        return {"q": info, "jobs": jobs, "state": state, "search": search,
                "workers": await d.workers([name]), "page": "queue"}

    return await page(request, "queue.html", build)


async def job_page(request: Request) -> Response:
    async def build() -> dict[str, Any]:
        # Inside build: a malformed ~id in the path is a 400 page, not a 500.
        name = path_id(request, "queue")
        d = dashboard(request)
        job_id = path_id(request, "job_id")
        return {"job": await d.job(name, job_id), "queue": name, "page": "job",
                "paused": await (await d.queue(name)).is_paused()}

    return await page(request, "job.html", build)


async def dead_letter_page(request: Request) -> Response:
    async def build() -> dict[str, Any]:
        # Inside build: a malformed ~id in the path is a 400 page, not a 500.
        name = path_id(request, "queue")
        include_all = as_bool("all", request.query_params.get("all"), False)
        d = dashboard(request)
        return {"dl": await d.dead_letters(name, include_all=include_all), "queue": name,
                "include_all": include_all, "page": "dead"}

    return await page(request, "dead_letter.html", build)


async def schedulers_page(request: Request) -> Response:
    only = request.query_params.get("queue") or None

    async def build() -> dict[str, Any]:
        d = dashboard(request)
        if only:
            await d.queue(only)
        listing = await d.schedulers([only] if only else None)
        return {"schedulers": listing["schedulers"], "only": only, "page": "schedulers"}

    return await page(request, "schedulers.html", build)


async def groups_page(request: Request) -> Response:
    by = request.query_params.get("by", "waiting")

    async def build() -> dict[str, Any]:
        # Inside build: a malformed ~id in the path is a 400 page, not a 500.
        name = path_id(request, "queue")
        d = dashboard(request)
        page_no = as_int("page", request.query_params.get("page"), 1)
        return {"g": await d.groups(name, by=by, page=page_no, page_size=50), "queue": name,
                "by": by, "page": "groups"}

    return await page(request, "groups.html", build)


async def group_page(request: Request) -> Response:
    async def build() -> dict[str, Any]:
        # Inside build: a malformed ~id in the path is a 400 page, not a 500.
        name = path_id(request, "queue")
        d = dashboard(request)
        page_no = as_int("page", request.query_params.get("page"), 1)
        return {"g": await d.group(name, group_param(request), page=page_no, page_size=25),
                "queue": name, "page": "group"}

    return await page(request, "group.html", build)


async def worker_page(request: Request) -> Response:
    async def build() -> dict[str, Any]:
        return {"w": await dashboard(request).worker(path_id(request, "worker_id")),
                "page": "worker"}

    return await page(request, "worker.html", build)


def page_routes() -> list[Route]:
    return [
        Route("/", overview, methods=["GET"], name="overview"),
        Route("/schedulers", schedulers_page, methods=["GET"], name="schedulers"),
        Route("/workers/{worker_id}", worker_page, methods=["GET"], name="worker"),
        Route("/queues/{queue}", queue_page, methods=["GET"], name="queue"),
        Route("/queues/{queue}/dead-letter", dead_letter_page, methods=["GET"], name="dead_letter"),
        Route("/queues/{queue}/groups", groups_page, methods=["GET"], name="groups"),
        Route("/queues/{queue}/groups/{group}", group_page, methods=["GET"], name="group"),
        # ":path", so that /jobs/a/b typed by hand finds job "a/b" too (links use ids.py).
        Route("/queues/{queue}/jobs/{job_id:path}", job_page, methods=["GET"], name="job"),
    ]


__all__ = ["chart", "page_routes"]
