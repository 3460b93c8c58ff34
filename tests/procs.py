"""Processors that the process-level tests run in real worker processes."""

from __future__ import annotations

import asyncio
import os
import time
from typing import Any

import redis

from minique import Delayed, Registry, UnrecoverableError

registry = Registry()


def effects_key(job: Any) -> str:
    return f"{job.queue.keys.base}:effects"


@registry.processor("procs", name="effect")
async def effect(job: Any) -> str:
    """Records its side effect, then takes a while: a kill lands while some are in flight."""
    await job.queue.redis.hincrby(effects_key(job), job.id, 1)
    await asyncio.sleep(job.data.get("sleep", 0.3))
    return "done"


@registry.processor("procs", name="stamp")
async def stamp(job: Any) -> None:
    """Records the server-side start time, for the rate-limit test."""
    await job.queue.redis.rpush(f"{job.queue.keys.base}:starts", repr(job.processed_on))


@registry.processor("procs", name="stamp_noop")
async def stamp_noop(job: Any) -> None:
    """Does nothing: the memory test is about what Redis keeps, not about the work."""


@registry.processor("procs", name="echo")
async def echo(job: Any) -> Any:
    """Returns its payload's "value" after its "sleep" seconds, or fails with its "error"."""
    await asyncio.sleep(job.data.get("sleep", 0))
    if "error" in job.data:
        raise ValueError(job.data["error"])
    return job.data.get("value")


# A registry that carries its own worker settings: `minique worker` applies them unless a
# flag says otherwise.
limited = Registry(worker_options={"limiter": {"max": 5, "duration": 0.5}, "concurrency": 7})
limited.add("procs", stamp, name="stamp")


def sync_run(job: Any) -> str:
    """A plain ``def`` processor that leaves a trace of each attempt in Redis, for the sync
    processor tests (it may run in a thread or in a child process: it gets only job.data).

    data: url, key, sleep (seconds, first attempt only unless ``every`` is true). It counts
    how many attempts of this job run at once (``key:running``), logs "start <attempt>
    <running> <pid> <previous attempt's process alive>" and "end <attempt>" (``key:log``),
    and keeps the highest number of these bodies that ever ran at once (``gauge:max``)."""
    data = job.data
    key = data["key"]
    r = redis.Redis.from_url(data["url"])
    try:
        running = r.incr(f"{key}:running")
        busy = r.incr(f"{data['gauge']}:now")
        _raise_max(r, data["gauge"], busy)
        previous = r.getset(f"{key}:pid", os.getpid())
        r.rpush(f"{key}:log", f"start {job.attempts_made} {running} {os.getpid()} "
                              f"{_alive(int(previous)) if previous else '-'}")
        if job.attempts_made == 0 or data.get("every"):
            time.sleep(data["sleep"])
        r.rpush(f"{key}:log", f"end {job.attempts_made}")
        r.decr(f"{key}:running")
        r.decr(f"{data['gauge']}:now")
    finally:
        r.close()
    return "slept"


def _raise_max(r: redis.Redis, gauge: str, value: int) -> None:
    r.eval("if tonumber(redis.call('GET', KEYS[1]) or '0') < tonumber(ARGV[1]) then "
           "redis.call('SET', KEYS[1], ARGV[1]) end", 1, f"{gauge}:max", value)


def _alive(pid: int) -> str:
    if pid == os.getpid():
        return "self"
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return "dead"
    return "alive"


registry.add("procs", sync_run, name="sync_run")


def sync_outcome(job: Any) -> str:
    """Ends its first run the way data["first"] says ("exit": the process exits with code 3;
    "unrecoverable"; "delayed": Delayed(0.05)), then returns "ok"."""
    r = redis.Redis.from_url(job.data["url"])
    try:
        runs = r.incr(job.data["key"])
    finally:
        r.close()
    if runs == 1:
        first = job.data["first"]
        if first == "exit":
            os._exit(3)
        if first == "unrecoverable":
            raise UnrecoverableError("bad input")
        if first == "delayed":
            raise Delayed(0.05, "quota")
    return "ok"


@registry.processor("procs", name="spin")
async def spin(job: Any) -> str:
    """Records its start, then keeps the event loop busy for "seconds" without ever
    yielding (a CPU-bound loop written as an async processor)."""
    await job.queue.redis.hincrby(effects_key(job), job.id, 1)
    end = time.monotonic() + job.data["seconds"]
    while time.monotonic() < end:
        pass
    return "spun"


def child_pid(job: Any) -> int:
    """The pid of the process that runs the job (a --cpu-processes child)."""
    return os.getpid()


def _tenth_of_a_second(attempts_made: int, error: BaseException, job: Any) -> float:
    return 0.1


async def always_fails(job: Any) -> None:
    raise ValueError("boom")


# A custom backoff type, given to `minique worker` through the registry's worker options.
with_backoff = Registry(worker_options={"backoff_strategies": {"tenth": _tenth_of_a_second}})
with_backoff.add("procs", always_fails, name="fails")
