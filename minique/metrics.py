"""Opt-in Prometheus metrics of a worker process: processing and wait time histograms.

    from minique.metrics import WorkerMetrics, start_metrics_server
    metrics = WorkerMetrics()                 # registers on prometheus_client's default registry
    metrics.attach(worker)                    # before worker.run()
    start_metrics_server(9108)                # serves /metrics on 127.0.0.1:9108

Exported, per queue:

* ``minique_job_processing_seconds{queue, outcome}``: histogram of one attempt's run time;
  ``outcome`` is completed, failed (for good), retried (backoff) or requeued (shutdown or
  rate limit: the attempt did not count).
* ``minique_job_wait_seconds{queue}``: histogram of the time from enqueue to the first start
  (Redis clock on both ends; a delayed job's wait includes its delay).
* ``minique_worker_jobs_total{queue, outcome}`` and ``minique_worker_active_jobs{queue}``.

The queue-wide counts (jobs by state, totals, workers) come from the dashboard's ``/metrics``,
which reads them from Redis; each worker exports only what it alone can see.

Needs ``prometheus-client`` (the ``dashboard`` extra).
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from typing import TYPE_CHECKING, Any, Protocol

if TYPE_CHECKING:  # prometheus_client is imported when metrics are made, not by the protocol
    from prometheus_client import CollectorRegistry

    from .job import Job
    from .worker import Worker

OUTCOMES = {"c": "completed", "f": "failed", "r": "retried", "w": "requeued"}
PROCESSING_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0,
                      120.0, 300.0, 900.0, 3600.0)
WAIT_BUCKETS = (0.005, 0.01, 0.05, 0.1, 0.5, 1.0, 5.0, 10.0, 30.0, 60.0, 300.0, 900.0, 3600.0,
                4 * 3600.0, 24 * 3600.0)


class JobObserver(Protocol):
    """What a Worker calls when it starts a job and when it has the job's outcome."""

    def job_started(self, queue: str, job: Job) -> None: ...

    def job_failed(self, queue: str, job: Job, reason: str, stacktrace: str, final: bool) -> None:
        """Failures are counted by outcome in ``job_finished``; nothing more to record here."""

    def job_finished(self, queue: str, job: Job, outcome: str, seconds: float) -> None: ...


class WorkerMetrics:
    """Prometheus metrics fed by one or more workers of this process."""

    def __init__(self, registry: CollectorRegistry | None = None) -> None:
        """``registry``: where to register (default: prometheus_client's global REGISTRY)."""
        from prometheus_client import REGISTRY, Counter, Gauge, Histogram

        registry = REGISTRY if registry is None else registry
        self.registry = registry
        self.processing = Histogram(
            "minique_job_processing_seconds", "Run time of one attempt of a job",
            ["queue", "outcome"], buckets=PROCESSING_BUCKETS, registry=registry)
        self.wait = Histogram(
            "minique_job_wait_seconds", "Time from enqueue to the first start of a job",
            ["queue"], buckets=WAIT_BUCKETS, registry=registry)
        self.jobs = Counter("minique_worker_jobs", "Attempts this process finished, by outcome",
                            ["queue", "outcome"], registry=registry)
        self.active = Gauge("minique_worker_active_jobs", "Jobs this process is running now",
                            ["queue"], registry=registry)
        self._lock = threading.Lock()

    # ----- the observer interface ---------------------------------------------------------

    def job_started(self, queue: str, job: Job) -> None:
        self.active.labels(queue).inc()
        if job.attempts_started <= 1 and job.processed_on and job.timestamp:
            self.wait.labels(queue).observe(max(0.0, job.processed_on - job.timestamp))

    def job_failed(self, queue: str, job: Job, reason: str, stacktrace: str, final: bool) -> None:
        """Failures are counted by outcome in ``job_finished``; nothing more to record here."""

    def job_finished(self, queue: str, job: Job, outcome: str, seconds: float) -> None:
        self.active.labels(queue).dec()
        self.processing.labels(queue, outcome).observe(max(0.0, seconds))
        self.jobs.labels(queue, outcome).inc()

    # ----- wiring ---------------------------------------------------------------------------

    def attach(self, worker: Worker) -> None:
        """Feeds these metrics from ``worker``: through its ``observers`` list when the Worker
        has one, otherwise by wrapping the two internal calls where a job starts and ends."""
        observers = getattr(worker, "observers", None)
        if isinstance(observers, list):
            observers.append(self)
            return
        start = getattr(worker, "_start", None)
        push = getattr(worker, "_push", None)
        running = getattr(worker, "_running", None)
        if not callable(start) or not callable(push) or not isinstance(running, dict):
            raise TypeError("this Worker has neither an observers list nor the internals "
                            "WorkerMetrics.attach wraps")
        started: dict[str, float] = {}
        queue = worker.queue_name

        def wrapped_start(fields: list[Any]) -> None:
            start(fields)
            job_id = fields[0].decode() if isinstance(fields[0], bytes) else str(fields[0])
            entry = running.get(job_id)
            if entry is not None:
                started[job_id] = time.monotonic()
                self.job_started(queue, entry.job)

        def wrapped_push(job: Job, kind: str, *args: Any) -> None:
            push(job, kind, *args)
            t0 = started.pop(job.id, None)
            if t0 is not None:
                self.job_finished(queue, job, OUTCOMES.get(kind, kind), time.monotonic() - t0)

        setattr(worker, "_start", wrapped_start)  # noqa: B010 (an instance attribute on purpose)
        setattr(worker, "_push", wrapped_push)  # noqa: B010


def start_metrics_server(port: int, addr: str = "127.0.0.1",
                         registry: CollectorRegistry | None = None) -> Callable[[], None]:
    """Serves ``/metrics`` from a daemon thread; returns a function that stops it."""
    from prometheus_client import REGISTRY, start_http_server

    server, thread = start_http_server(port, addr=addr, registry=REGISTRY if registry is None else registry)

    def stop() -> None:
        server.shutdown()
        server.server_close()
        thread.join(timeout=5)

    return stop


__all__ = ["JobObserver", "WorkerMetrics", "start_metrics_server"]
