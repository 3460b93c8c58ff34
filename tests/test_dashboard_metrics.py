"""Prometheus: the dashboard's /metrics matches the queue; the worker-side exporter observes."""

from __future__ import annotations

import asyncio
from typing import Any

import httpx
import pytest
from helpers import wait_until
from prometheus_client import CollectorRegistry
from prometheus_client.parser import text_string_to_metric_families

from minique import Queue, Worker
from minique.dashboard import create_app
from minique.metrics import WorkerMetrics, start_metrics_server
from minique.server import free_port


def samples(text: str) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    out = {}
    for family in text_string_to_metric_families(text):
        for s in family.samples:
            out[(s.name, tuple(sorted(s.labels.items())))] = s.value
    return out


async def test_metrics_endpoint_matches_the_queue(queue: Queue, redis_url: str) -> None:
    attempts: dict[str, int] = {}

    async def proc(job: Any) -> None:
        attempts[job.id] = attempts.get(job.id, 0) + 1
        if job.data == "fail":
            raise RuntimeError("no")
        if job.data == "retry" and attempts[job.id] == 1:
            raise RuntimeError("once")

    await queue.add_bulk([("ok", "ok")] * 4 + [("bad", "fail"), ("flaky", "retry", {"attempts": 2})])
    await queue.add("later", None, delay=3600)
    worker = Worker(queue.name, proc, url=redis_url, heartbeat_interval=0.5)
    task = asyncio.create_task(worker.run())

    async def settled() -> bool:
        s = await queue.get_stats()
        return s["completed"] == 5 and s["failed"] == 1 and len(await queue.get_workers()) == 1

    await wait_until(settled, timeout=10, message="jobs finished")
    app = create_app(redis_url, queues=[queue.name])
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://t") as c:
        r = await c.get("/metrics")
    assert r.status_code == 200 and r.headers["content-type"].startswith("text/plain")
    got = samples(r.text)
    q = queue.name
    for state, count in (await queue.get_stats()).items():
        if state != "total":
            assert got[("minique_queue_jobs", (("queue", q), ("state", state)))] == count, state
    totals = (await queue.get_metrics())["totals"]
    assert totals == {"completed": 5, "failed": 1, "retried": 1, "stalled": 0}
    for name, value in totals.items():
        assert got[(f"minique_jobs_{name}_total", (("queue", q),))] == value, name
    assert got[("minique_queue_workers", (("queue", q),))] == 1
    assert got[("minique_queue_paused", (("queue", q),))] == 0
    await worker.close()
    await task
    await app.state.dashboard.redis.aclose()


async def test_worker_exporter_histograms(queue: Queue, redis_url: str) -> None:
    registry = CollectorRegistry()
    metrics = WorkerMetrics(registry)
    calls: dict[str, int] = {}

    async def proc(job: Any) -> str:
        calls[job.id] = calls.get(job.id, 0) + 1
        await asyncio.sleep(0.05)
        if job.data == "fail" or (job.data == "retry" and calls[job.id] == 1):
            raise RuntimeError("no")
        return "ok"

    await queue.add_bulk([("a", "ok")] * 3 + [("b", "fail"), ("c", "retry", {"attempts": 2})])
    worker = Worker(queue.name, proc, url=redis_url)
    metrics.attach(worker)
    task = asyncio.create_task(worker.run())

    async def settled() -> bool:
        s = await queue.get_stats()
        return s["completed"] == 4 and s["failed"] == 1

    await wait_until(settled, timeout=10, message="jobs finished")
    await worker.close()
    await task
    q = queue.name

    def value(name: str, **labels: str) -> float:
        v = registry.get_sample_value(name, {"queue": q, **labels})
        return 0.0 if v is None else v

    assert value("minique_job_processing_seconds_count", outcome="completed") == 4
    assert value("minique_job_processing_seconds_count", outcome="failed") == 1
    assert value("minique_job_processing_seconds_count", outcome="retried") == 1
    assert value("minique_job_processing_seconds_sum", outcome="completed") >= 4 * 0.05
    assert value("minique_job_processing_seconds_bucket", outcome="completed", le="0.01") == 0
    assert value("minique_job_wait_seconds_count") == 5  # first attempts only
    assert value("minique_worker_jobs_total", outcome="completed") == 4
    assert value("minique_worker_active_jobs") == 0

    port = free_port()
    stop = start_metrics_server(port, registry=registry)
    try:
        async with httpx.AsyncClient() as c:
            text = (await c.get(f"http://127.0.0.1:{port}/metrics")).text
        names = {f.name for f in text_string_to_metric_families(text)}
        assert {"minique_job_processing_seconds", "minique_job_wait_seconds"} <= names
    finally:
        stop()


def test_attach_prefers_an_observers_list() -> None:
    metrics = WorkerMetrics(CollectorRegistry())

    class Hooked:
        observers: list[Any]

        def __init__(self) -> None:
            self.observers = []

    hooked = Hooked()
    metrics.attach(hooked)  # type: ignore[arg-type]
    assert hooked.observers == [metrics]
    with pytest.raises(TypeError):
        metrics.attach(object())  # type: ignore[arg-type]
