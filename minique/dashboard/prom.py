"""The dashboard's Prometheus ``/metrics``: read from Redis at each scrape.

Per queue: jobs by state, paused, live workers, groups (all, with jobs running, paused,
throttled: never one series per group, which would be unbounded), and the completed /
failed / retried / stalled totals that the Lua scripts count
(``Queue.get_metrics()["totals"]``). Processing and wait time histograms come from the
workers themselves (``minique.metrics``).
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from typing import Any

from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.exposition import CONTENT_TYPE_LATEST
from starlette.requests import Request
from starlette.responses import Response

from ..queue import STATES
from .api import error_response, map_error
from .service import Dashboard

TOTALS = ("completed", "failed", "retried", "stalled")
GROUP_KINDS = ("groups", "active", "paused", "throttled")


class _Snapshot:
    """A collector over values already read (collectors are synchronous; Redis is not)."""

    def __init__(self, rows: list[dict[str, Any]]) -> None:
        self.rows = rows

    def collect(self) -> Iterator[Metric]:
        jobs = GaugeMetricFamily("minique_queue_jobs", "Jobs in the queue by state",
                                 labels=["queue", "state"])
        paused = GaugeMetricFamily("minique_queue_paused", "1 if the queue is paused", labels=["queue"])
        workers = GaugeMetricFamily("minique_queue_workers", "Live workers of the queue (heartbeats)",
                                    labels=["queue"])
        groups = GaugeMetricFamily(
            "minique_queue_groups", "Groups of the queue: kind=groups (every known group), "
            "active (with jobs running), paused, throttled (asleep until a time)",
            labels=["queue", "kind"])
        totals = {t: CounterMetricFamily(f"minique_jobs_{t}", f"Jobs {t}, since the queue was created",
                                         labels=["queue"]) for t in TOTALS}
        for row in self.rows:
            name = row["name"]
            for state in STATES:
                jobs.add_metric([name, state], row["counts"][state])
            paused.add_metric([name], 1.0 if row["paused"] else 0.0)
            workers.add_metric([name], row["workers"])
            for t in TOTALS:
                totals[t].add_metric([name], row["totals"][t])
            for kind in GROUP_KINDS:
                groups.add_metric([name, kind], row["groups"][kind])
        yield jobs
        yield paused
        yield workers
        yield groups
        yield from totals.values()


async def render(dashboard: Dashboard) -> bytes:
    names = await dashboard.queue_names()
    rows = list(await asyncio.gather(*(dashboard.queue_info(n) for n in names)))
    counts = await asyncio.gather(*[(await dashboard.queue(n)).get_group_counts() for n in names])
    for row, c in zip(rows, counts, strict=True):
        row["groups"] = {kind: getattr(c, kind) for kind in GROUP_KINDS}
    registry = CollectorRegistry(auto_describe=False)
    registry.register(_Snapshot(rows))
    return generate_latest(registry)


async def metrics_endpoint(request: Request) -> Response:
    try:
        body = await render(request.app.state.dashboard)
    except Exception as exc:
        mapped = map_error(exc)
        if mapped is None:
            raise
        return error_response(*mapped)
    return Response(body, media_type=CONTENT_TYPE_LATEST)
