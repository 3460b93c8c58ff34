"""Retries with each backoff type. The delay each retry was given is read from its
``retrying`` event (exact, whatever the machine's speed); the gaps between attempts, from
the server-side start times, must never be shorter than that delay."""

from __future__ import annotations

import asyncio
import itertools
from typing import Any

import pytest
from helpers import wait_until

from minique import Delayed, JobFailed, Queue, Worker
from minique.backoff import retry_delay
from minique.events import parse_event
from minique.options import Backoff


async def run_failing(queue: Queue, redis_url: str, fail_times: int, **opts: Any) -> list[float]:
    """Runs one job that fails ``fail_times`` then succeeds; returns each attempt's start."""
    starts: list[float] = []

    async def proc(job: Any) -> str:
        assert job.processed_on is not None
        starts.append(job.processed_on)
        if len(starts) <= fail_times:
            raise RuntimeError(f"attempt {len(starts)}")
        return "ok"

    job = await queue.add("flaky", None, **opts)
    worker = Worker(queue.name, proc, url=redis_url,
                    backoff_strategies={"linear": lambda n, err, job: 0.1 * n})
    task = asyncio.create_task(worker.run())
    try:
        assert await job.wait_until_finished(timeout=10) == "ok"
    finally:
        await worker.close()
        await task
    return starts


def gaps(starts: list[float]) -> list[float]:
    return [b - a for a, b in itertools.pairwise(starts)]


async def retry_delays(queue: Queue) -> list[int]:
    """The delay (ms) of each retry, as the finishing script recorded it."""
    events = [parse_event(i, f) for i, f in await queue.redis.xrange(queue.keys.events)]
    return [int(e.fields["delay"]) for e in events if e.name == "retrying"]


async def assert_backoff(queue: Queue, starts: list[float], expected_ms: list[int]) -> None:
    # The backoff counts from the failure: Redis records what is left of it when the
    # worker's call reaches it (results wait for the worker's next call, a few ms at most).
    recorded = await retry_delays(queue)
    assert len(recorded) == len(expected_ms)
    # (Plus 1 ms: Redis counts the due time from its clock cut to the ms.)
    assert all(e - 50 <= r <= e + 1 for r, e in zip(recorded, expected_ms, strict=True)), (
        recorded, expected_ms)
    for gap, delay_ms in zip(gaps(starts), expected_ms, strict=True):
        assert gap >= delay_ms / 1000 - 0.002  # never before its backoff (ms clock granularity)


async def test_fixed_backoff_gaps(queue: Queue, redis_url: str) -> None:
    starts = await run_failing(queue, redis_url, 2, attempts=3, backoff={"type": "fixed", "delay": 0.3})
    assert len(starts) == 3
    await assert_backoff(queue, starts, [300, 300])


async def test_exponential_backoff_gaps(queue: Queue, redis_url: str) -> None:
    starts = await run_failing(queue, redis_url, 2, attempts=3,
                               backoff={"type": "exponential", "delay": 0.2})
    await assert_backoff(queue, starts, [200, 400])


async def test_custom_backoff_strategy(queue: Queue, redis_url: str) -> None:
    starts = await run_failing(queue, redis_url, 2, attempts=3, backoff={"type": "linear"})
    await assert_backoff(queue, starts, [100, 200])


async def test_retries_stop_after_attempts(queue: Queue, redis_url: str) -> None:
    with pytest.raises(JobFailed, match="attempt 2"):
        await run_failing(queue, redis_url, 5, attempts=2, backoff=0.01)
    events = [f[b"ev"] for _, f in await queue.redis.xrange(queue.keys.events)]
    assert events.count(b"retrying") == 1 and events.count(b"failed") == 1


async def test_retry_delay_waits_in_the_delayed_set(queue: Queue, redis_url: str) -> None:
    calls = 0

    async def proc(job: Any) -> None:
        nonlocal calls
        calls += 1
        raise RuntimeError("later")

    job = await queue.add("x", None, attempts=2, backoff=30.0)
    worker = Worker(queue.name, proc, url=redis_url)
    task = asyncio.create_task(worker.run())
    await wait_until(lambda: calls == 1)
    await wait_until(lambda: job.get_state(), message="state read")
    await wait_until(lambda: _state_is(job, "delayed"), message="job delayed for its backoff")
    fresh = await queue.get_job(job.id)
    assert fresh is not None and fresh.delay_until is not None and fresh.attempts_made == 1
    assert fresh.delay_until - (fresh.finished_on or fresh.processed_on or 0) > 29
    await worker.close()
    await task


async def _state_is(job: Any, state: str) -> bool:
    return bool(await job.get_state() == state)


def test_backoff_math_with_jitter_and_cap() -> None:
    job: Any = None
    assert retry_delay(None, 3, RuntimeError(), job, {}) == 0.0
    assert retry_delay(Backoff("exponential", 1.0), 4, RuntimeError(), job, {}) == 8.0
    assert retry_delay(Backoff("exponential", 1.0, max_delay=5.0), 4, RuntimeError(), job, {}) == 5.0
    for _ in range(50):
        d = retry_delay(Backoff("fixed", 10.0, jitter=0.5), 1, RuntimeError(), job, {})
        assert d is not None and 5.0 <= d <= 10.0
    with pytest.raises(LookupError, match="not registered"):
        retry_delay(Backoff("nope", 1.0), 1, RuntimeError(), job, {})
    assert retry_delay(Backoff("stop"), 1, RuntimeError(), job, {"stop": lambda *a: None}) is None


async def test_delayed_runs_the_job_later_without_an_attempt_or_a_queue_pause(
        queue: Queue, redis_url: str) -> None:
    ran: list[str] = []

    async def proc(job: Any) -> str:
        ran.append(job.data)
        if job.data == "later" and ran.count("later") == 1:
            raise Delayed(0.5, "quota of account 1")
        return job.data

    later = await queue.add("p", "later", attempts=1)
    worker = Worker(queue.name, proc, url=redis_url, concurrency=1)
    task = asyncio.create_task(worker.run())
    await wait_until(lambda: _state_is(later, "delayed"), message="job delayed")
    assert await queue.get_rate_limit_ttl() == 0  # the queue itself is not paused
    other = await queue.add("p", "other")
    assert await other.wait_until_finished(timeout=5) == "other"  # runs during the delay
    assert await later.wait_until_finished(timeout=5) == "later"
    assert ran == ["later", "other", "later"]
    done = await later.refresh()
    assert done.attempts_made == 1  # with attempts=1, a counted attempt would have failed it
    events = [parse_event(eid, raw) for eid, raw in await queue.redis.xrange(queue.keys.events)]
    delayed = [e for e in events if e.job_id == later.id and e.name == "delayed"
               and "quota of account 1" in e.fields.get("reason", "")]
    assert len(delayed) == 1 and 450 <= int(delayed[0].fields["delay"]) <= 501
    await worker.close()
    await task


def test_delayed_rejects_a_negative_delay() -> None:
    with pytest.raises(ValueError, match="must be >= 0"):
        Delayed(-1)
