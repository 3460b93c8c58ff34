"""OpenTelemetry, when it is installed (``pip install 'minique-queue[otel]'``): the trace
context of the code that adds a job travels with the job, and processing it is a span that
continues that trace. Without OpenTelemetry, or without a configured tracer provider, this
costs nothing per job."""

from __future__ import annotations

import contextlib
import time
from collections.abc import Iterator
from typing import TYPE_CHECKING, Any

try:
    from opentelemetry import propagate, trace
    from opentelemetry.trace import SpanKind
except ImportError:  # pragma: no cover - the optional extra is not installed
    trace = None  # type: ignore[assignment]

if TYPE_CHECKING:
    from .job import Job


def current_context() -> dict[str, str] | None:
    """The caller's trace context as a carrier dict, or None outside any span (and without
    a configured tracer provider, checked first: the span lookup costs about 1 µs per job)."""
    if not enabled() or not trace.get_current_span().get_span_context().is_valid:
        return None
    carrier: dict[str, str] = {}
    propagate.inject(carrier)
    return carrier or None


_checked_at = -1.0
_enabled_cache = False


def refresh() -> None:
    """Forgets the cached answer of :func:`enabled` (after configuring a provider late)."""
    global _checked_at
    _checked_at = -1.0


def enabled() -> bool:
    """Whether a real tracer provider is configured. Looking it up reads the environment,
    too slow for every job, so the answer is kept for a second."""
    global _checked_at, _enabled_cache
    now = time.monotonic()
    if now - _checked_at > 1.0:
        _checked_at = now
        # The API's default provider is a proxy until the application configures one.
        _enabled_cache = trace is not None and not isinstance(trace.get_tracer_provider(),
                                                              trace.ProxyTracerProvider)
    return _enabled_cache


@contextlib.contextmanager
def processing_span(queue: str, job: Job) -> Iterator[Any]:
    """A CONSUMER span around the processor, child of the trace the job was added in."""
    if not enabled():
        yield None
        return
    parent = propagate.extract(job.opts.trace) if job.opts.trace else None
    tracer = trace.get_tracer("minique")
    attributes: dict[str, str | int] = {"messaging.system": "minique", "messaging.destination.name": queue,
                  "messaging.message.id": job.id, "minique.job.name": job.name,
                  "minique.job.attempt": job.attempts_made + 1}
    with tracer.start_as_current_span(f"process {queue}", context=parent, kind=SpanKind.CONSUMER,
                                      attributes=attributes, record_exception=True,
                                      set_status_on_exception=True) as span:
        yield span

