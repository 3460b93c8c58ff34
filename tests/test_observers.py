"""Worker observers: the typed hooks, called with each attempt's outcome, time and error."""

from __future__ import annotations

import asyncio
from typing import Any

from helpers import wait_until

from minique import Job, Queue, UnrecoverableError, Worker, WorkerObserver
from minique.metrics import WorkerMetrics
from minique.observers import Outcome


class Recorder(WorkerObserver):
    """Subclasses the protocol: inherits no-op hooks, overrides all three."""

    def __init__(self) -> None:
        self.calls: list[tuple[Any, ...]] = []

    def job_started(self, queue: str, job: Job) -> None:
        self.calls.append(("started", queue, job.id))

    def job_finished(self, queue: str, job: Job, outcome: Outcome, seconds: float) -> None:
        assert seconds >= 0
        self.calls.append(("finished", job.id, outcome))

    def job_failed(self, queue: str, job: Job, reason: str, stacktrace: str, final: bool) -> None:
        assert "Traceback" in stacktrace
        self.calls.append(("failed", job.id, reason, final))


class OnlyTimings:
    """Structural: no base class, and without job_failed (an observer of an older API)."""

    def __init__(self) -> None:
        self.outcomes: list[str] = []

    def job_started(self, queue: str, job: Job) -> None:
        raise RuntimeError("a broken hook must not break the job")

    def job_finished(self, queue: str, job: Job, outcome: Outcome, seconds: float) -> None:
        self.outcomes.append(outcome)


async def test_observers_see_each_attempt(queue: Queue, redis_url: str) -> None:
    async def proc(job: Any) -> str:
        if job.name == "flaky" and job.attempts_made == 0:
            raise ConnectionError("upstream reset")
        if job.name == "bad":
            raise UnrecoverableError("bad input")
        return "ok"

    rec, timings = Recorder(), OnlyTimings()
    assert isinstance(rec, WorkerObserver) and isinstance(WorkerMetrics(), WorkerObserver)
    worker = Worker(queue.name, proc, url=redis_url, observers=[rec, timings])
    ok = await queue.add("ok", None)
    flaky = await queue.add("flaky", None, attempts=2, backoff=0)
    bad = await queue.add("bad", None, attempts=5)
    task = asyncio.create_task(worker.run())
    assert await ok.wait_until_finished(timeout=10) == "ok"
    assert await flaky.wait_until_finished(timeout=10) == "ok"

    async def bad_failed() -> bool:
        return await queue.get_state(bad.id) == "failed"

    await wait_until(bad_failed, timeout=10)
    await worker.close()
    await task
    per_job = {j: [c for c in rec.calls if c[1] == j or c[2] == j] for j in (ok.id, flaky.id, bad.id)}
    assert per_job[ok.id] == [("started", queue.name, ok.id), ("finished", ok.id, "completed")]
    assert per_job[flaky.id] == [
        ("started", queue.name, flaky.id), ("failed", flaky.id, "ConnectionError: upstream reset", False),
        ("finished", flaky.id, "retried"),
        ("started", queue.name, flaky.id), ("finished", flaky.id, "completed")]
    assert per_job[bad.id] == [("started", queue.name, bad.id),
                               ("failed", bad.id, "UnrecoverableError: bad input", True),
                               ("finished", bad.id, "failed")]
    assert sorted(timings.outcomes) == ["completed", "completed", "failed", "retried"]
