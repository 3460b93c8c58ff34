"""The soak's load: one producer process and the worker processes (``benchmarks/soak.py``
starts them; they talk back through stdout, one JSON object per line and report interval).

    python -m benchmarks.soak_load producer --url URL --rate 500 --report-every 1
    python -m benchmarks.soak_load worker --url URL --concurrency 50 --report-every 1

The mix: jobs sleep 1-50 ms; every attempt fails with probability ``FAIL_RATE`` and is retried
(``ATTEMPTS`` attempts, exponential backoff with jitter); ``GROUPED`` of the jobs belong to one
of ``GROUPS`` groups (each group at most ``GROUP_CONCURRENCY`` active); ``DELAYED`` of them
are added with a delay; a job scheduler fires ``TICK`` every second. Retention stays at the
library's defaults, so the finished sets reach their caps and stop there.

Pickup latency is the time from the moment a job became ready to the moment its processor
started (both wall-clock ms on this machine; Redis runs on the same host):

- a job added without delay: ready at its ``timestamp`` (the add, by the Redis clock; the
  add call's start, carried in its data, if the worker's Job has no timestamp);
- a job added with a delay: ``timestamp`` + the delay it was given (in its data);
- a scheduler firing: the fire time in its id (``sched:<id>:<generation>:<fire ms>``);
- a retry: the ``due`` time its failed attempt was given (read from the job hash, one HGET
  per retry; when a future engine drops that field, retries are simply not sampled).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import random
import signal
import sys
import time
from typing import Any

from minique import Queue, Worker
from minique.keys import FIRING_ID_PREFIX

QUEUE = "soak"
TICK = "tick"  # the job scheduler's id and its jobs' name
JOB = "work"
MIN_MS, MAX_MS = 1, 50
FAIL_RATE = 0.05
ATTEMPTS = 3
BACKOFF = {"type": "exponential", "delay": 0.05, "jitter": 0.5}
GROUPS = 200
GROUPED = 0.3
GROUP_CONCURRENCY = 2
DELAYED = 0.05
MAX_DELAY_MS = 2000
KINDS = ("fresh", "delayed", "scheduled", "retry")


class SoakFailure(Exception):
    """The soak's planned failure of an attempt."""


def emit(record: dict[str, Any]) -> None:
    sys.stdout.write(json.dumps(record, separators=(",", ":")) + "\n")
    sys.stdout.flush()


def job_spec(rng: random.Random, i: int) -> tuple[dict[str, Any], dict[str, Any]]:
    """(data, options) of the ``i``-th job the producer adds."""
    data: dict[str, Any] = {"i": i, "ms": rng.randint(MIN_MS, MAX_MS)}
    options: dict[str, Any] = {"attempts": ATTEMPTS, "backoff": BACKOFF}
    if rng.random() < GROUPED:
        options["group"] = f"g{rng.randrange(GROUPS)}"
    if rng.random() < DELAYED:
        data["delay_ms"] = rng.randint(100, MAX_DELAY_MS)
        options["delay"] = data["delay_ms"] / 1000.0
    return data, options


# ----- producer ----------------------------------------------------------------------------


async def produce(url: str, rate: float, report_every: float, seed: int) -> None:
    """Adds ``rate`` jobs per second, each add awaited on its own task, until SIGTERM."""
    queue = Queue(QUEUE, url=url)
    await queue.set_group_defaults(concurrency=GROUP_CONCURRENCY)
    await queue.upsert_job_scheduler(TICK, every=1.0, job_name=TICK)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    rng = random.Random(seed)
    added = errors = 0
    pending: set[asyncio.Task[Any]] = set()

    def done(task: asyncio.Task[Any]) -> None:
        nonlocal added, errors
        pending.discard(task)
        if task.cancelled() or task.exception() is not None:
            errors += 1
        else:
            added += 1

    start = time.monotonic()
    sent = 0
    next_report = start + report_every
    emit({"role": "producer", "pid": os.getpid(), "ready": True})
    while not stop.is_set():
        # Steady rate: catch up to rate * elapsed, so a slow turn of the loop sends more next time.
        due = int((time.monotonic() - start) * rate)
        while sent < due:
            data, options = job_spec(rng, sent)
            data["t"] = round(time.time() * 1000.0, 2)  # the add call's start, epoch ms
            task = asyncio.create_task(queue.add(JOB, data, **options))
            pending.add(task)
            task.add_done_callback(done)
            sent += 1
        now = time.monotonic()
        if now >= next_report:
            emit({"role": "producer", "added": added, "errors": errors, "pending": len(pending)})
            added = errors = 0
            next_report += report_every
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(stop.wait(), 0.01)
    if pending:
        await asyncio.wait(pending, timeout=5)
    emit({"role": "producer", "added": added, "errors": errors, "pending": len(pending), "final": True})
    await queue.close()


# ----- worker ------------------------------------------------------------------------------


class Tally:
    """What one worker process saw since its last report."""

    def __init__(self) -> None:
        self.done = 0
        self.failed = 0
        self.lat: dict[str, list[float]] = {k: [] for k in KINDS}

    def report(self) -> dict[str, Any]:
        """The counts and latencies (ms) since the last report; starts the next interval."""
        out = {"role": "worker", "done": self.done, "failed": self.failed,
               "lat": {k: [round(x, 2) for x in v] for k, v in self.lat.items() if v}}
        self.done = self.failed = 0
        self.lat = {k: [] for k in KINDS}
        return out


async def ready_ms(job: Any, side: Queue) -> tuple[str, float | None]:
    """(kind, when the job became ready, epoch ms) for the pickup latency."""
    if job.id.startswith(FIRING_ID_PREFIX):
        return "scheduled", float(job.id.rsplit(":", 1)[1])
    if job.attempts_made > 0:
        raw = await side.redis.hget(side.keys.job_prefix + job.id, "due")
        return "retry", float(raw) if raw else None
    data = job.data or {}
    delay = data.get("delay_ms", 0)
    # The add by the Redis clock; if a future fetch reply stops carrying it, the add call's start.
    added = job.timestamp * 1000.0 if job.timestamp else data.get("t")
    return ("delayed" if delay else "fresh"), None if added is None else added + delay


async def serve(url: str, concurrency: int, report_every: float, seed: int) -> None:
    side = Queue(QUEUE, url=url)  # for the HGET of a retry's due time
    tally = Tally()
    rng = random.Random(seed)

    async def process(job: Any) -> None:
        started = time.time() * 1000.0
        kind, ready = await ready_ms(job, side)
        if ready is not None:
            tally.lat[kind].append(max(0.0, started - ready))
        if job.name == TICK:
            tally.done += 1
            return
        await asyncio.sleep(job.data["ms"] / 1000.0)
        if rng.random() < FAIL_RATE:
            tally.failed += 1
            raise SoakFailure("planned failure")
        tally.done += 1

    worker = Worker(QUEUE, process, url=url, concurrency=concurrency)
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, lambda: asyncio.ensure_future(worker.close(timeout=5)))

    async def reporter() -> None:
        while True:
            await asyncio.sleep(report_every)
            emit(tally.report())

    emit({"role": "worker", "pid": os.getpid(), "ready": True})
    task = asyncio.create_task(reporter())
    try:
        await worker.run(handle_signals=False)
    finally:
        task.cancel()
        emit({**tally.report(), "final": True})
        await side.close()


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.soak_load")
    parser.add_argument("role", choices=("producer", "worker"))
    parser.add_argument("--url", required=True)
    parser.add_argument("--rate", type=float, default=500.0, help="jobs added per second")
    parser.add_argument("--concurrency", type=int, default=50)
    parser.add_argument("--report-every", type=float, default=1.0, help="seconds")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    if args.role == "producer":
        asyncio.run(produce(args.url, args.rate, args.report_every, args.seed))
    else:
        asyncio.run(serve(args.url, args.concurrency, args.report_every, args.seed))


if __name__ == "__main__":
    main()
