"""Processors for tests/test_break_wire.py's worker processes.

``run`` records each run idempotently (SADD of the run's fencing token), so a redis-py
re-send of the record after a killed connection cannot pass for a second run."""

from __future__ import annotations

import os
import time
from typing import Any

from minique import Registry

registry = Registry()


@registry.processor("bw", name="run")
async def run(job: Any) -> str:
    record = f"{job.token}|{os.getpid()}|{time.time():.4f}"
    await job.queue.redis.sadd(f"{job.queue.keys.base}:runs:{job.id}", record)
    return "done"


@registry.processor("bw", name="poison")
async def poison(job: Any) -> None:
    """Crashes its worker process at once, as a segfault in native code or the OOM killer
    would: the worker cannot report anything."""
    fd = os.open(job.data["crash_log"], os.O_WRONLY | os.O_APPEND | os.O_CREAT)
    os.write(fd, f"{os.getpid()}\n".encode())
    os.close(fd)
    os.kill(os.getpid(), 9)


# The same queue's processors in a worker that survives the poison job: it sweeps the
# crashed worker's jobs back and runs them, poison included.
safe = Registry()
safe.add("bw", run, name="run")


@safe.processor("bw", name="poison")
async def survived(job: Any) -> str:
    return "survived"
