"""OpenTelemetry: the adder's trace continues into the processing span."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest
from helpers import wait_until

from minique import JobFailed, Queue, Worker

otel = pytest.importorskip("opentelemetry.sdk.trace")
from opentelemetry import trace  # noqa: E402
from opentelemetry.sdk.trace.export import SimpleSpanProcessor  # noqa: E402
from opentelemetry.sdk.trace.export.in_memory_span_exporter import (  # noqa: E402
    InMemorySpanExporter,
)

EXPORTER = InMemorySpanExporter()


@pytest.fixture(scope="module", autouse=True)
def tracer_provider() -> Any:
    provider = otel.TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(EXPORTER))
    trace.set_tracer_provider(provider)  # global: once per process
    from minique import telemetry

    telemetry.refresh()
    return provider


async def test_processing_span_continues_the_adders_trace(queue: Queue, redis_url: str) -> None:
    tracer = trace.get_tracer("test")

    async def proc(job: Any) -> str:
        if job.name == "bad":
            raise ValueError("broken")
        return "ok"

    with tracer.start_as_current_span("request") as request:
        good = await queue.add("good", {"x": 1})
        bad = await queue.add("bad", {"x": 2})
    untraced = await queue.add("plain", None)
    worker = Worker(queue.name, proc, url=redis_url)
    task = asyncio.create_task(worker.run())
    assert await good.wait_until_finished(timeout=5) == "ok"
    with pytest.raises(JobFailed):
        await bad.wait_until_finished(timeout=5)
    await untraced.wait_until_finished(timeout=5)
    await wait_until(lambda: len(_spans(queue)) >= 3, message="three processing spans")
    spans = {s.attributes["messaging.message.id"]: s for s in _spans(queue)}
    trace_id = request.get_span_context().trace_id
    assert spans[good.id].context.trace_id == trace_id
    assert spans[good.id].parent.span_id == request.get_span_context().span_id
    assert spans[good.id].kind == trace.SpanKind.CONSUMER
    assert spans[bad.id].status.status_code == trace.StatusCode.ERROR
    assert spans[untraced.id].context.trace_id != trace_id  # a new trace of its own
    await worker.close()
    await task


def _spans(queue: Queue) -> list[Any]:
    return [s for s in EXPORTER.get_finished_spans()
            if s.attributes and s.attributes.get("messaging.destination.name") == queue.name]
