"""Fetching jobs by hand (BullMQ's getNextJob and moveToCompleted/moveToFailed):
``ManualWorker`` against a real Redis. Every control a Worker obeys applies, a job is
fenced by its lease, and a call sent again takes nothing twice."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator
from typing import Any

import pytest
from helpers import LostAnswers, wait_until
from redis.exceptions import TimeoutError as RedisTimeoutError

from minique import (
    JobFailed,
    JobNotFound,
    LockLost,
    ManualWorker,
    Queue,
    UnrecoverableError,
)


@pytest.fixture
async def manual(queue: Queue, redis_url: str) -> AsyncIterator[ManualWorker]:
    worker = ManualWorker(queue.name, url=redis_url)
    yield worker
    await worker.close()


async def test_jobs_come_one_at_a_time_in_order_and_complete(
        queue: Queue, manual: ManualWorker) -> None:
    for i in range(3):
        await queue.add("step", {"i": i})
    job = await manual.get_next_job()
    assert job is not None and job.data == {"i": 0} and job.token
    assert await queue.get_state(job.id) == "active"
    stats = await queue.get_stats()
    assert stats["active"] == 1 and stats["waiting"] == 2  # nothing held ahead
    assert await manual.complete(job, {"ok": 0}) is None
    assert await queue.get_state(job.id) == "completed"
    assert await (await queue.get_job(job.id)).wait_until_finished(timeout=5) == {"ok": 0}  # type: ignore[union-attr]
    nxt = await manual.get_next_job()
    assert nxt is not None and nxt.data == {"i": 1}
    third = await manual.complete(nxt, 1, fetch_next=True)
    assert third is not None and third.data == {"i": 2}
    assert await queue.get_state(third.id) == "active"
    assert await manual.complete(third, 2, fetch_next=True) is None
    assert (await queue.get_stats())["completed"] == 3


async def test_an_empty_queue_gives_none_and_block_waits_for_an_add(
        queue: Queue, manual: ManualWorker) -> None:
    assert await manual.get_next_job() is None
    started = time.monotonic()
    assert await manual.get_next_job(block=0.3) is None
    assert time.monotonic() - started >= 0.3

    async def add_later() -> str:
        await asyncio.sleep(0.2)
        return (await queue.add("late", 1)).id

    adding = asyncio.create_task(add_later())
    job = await manual.get_next_job(block=10.0)
    assert job is not None and job.id == await adding


async def test_block_wakes_for_a_delayed_job_falling_due(
        queue: Queue, manual: ManualWorker) -> None:
    added = await queue.add("soon", 1, delay=0.3)
    job = await manual.get_next_job(block=10.0)
    assert job is not None and job.id == added.id


async def test_a_failure_is_retried_per_attempts_and_backoff_then_fails(
        queue: Queue, manual: ManualWorker) -> None:
    added = await queue.add("flaky", 1, attempts=2, backoff={"type": "fixed", "delay": 0.05})
    job = await manual.get_next_job()
    assert job is not None
    await manual.fail(job, ValueError("boom"))
    assert await queue.get_state(added.id) in ("delayed", "waiting")
    again = await manual.get_next_job(block=10.0)
    assert again is not None and again.id == added.id and again.attempts_made == 1
    await manual.fail(again, "still broken")
    assert await queue.get_state(added.id) == "failed"
    with pytest.raises(JobFailed, match="still broken"):
        await added.wait_until_finished(timeout=5)
    stored = await queue.get_job(added.id)
    assert stored is not None and stored.attempts_made == 2


async def test_final_and_unrecoverable_failures_are_not_retried(
        queue: Queue, manual: ManualWorker) -> None:
    a = await queue.add("a", 1, attempts=5)
    b = await queue.add("b", 1, attempts=5)
    job = await manual.get_next_job()
    assert job is not None and job.id == a.id
    await manual.fail(job, "cancelled", final=True)
    job = await manual.get_next_job()
    assert job is not None and job.id == b.id
    await manual.fail(job, UnrecoverableError("bad input"))
    assert await queue.get_state(a.id) == "failed" and await queue.get_state(b.id) == "failed"
    stored = await queue.get_job(b.id)
    assert stored is not None and "bad input" in (stored.failed_reason or "")


async def test_pause_priority_and_global_concurrency_apply(
        queue: Queue, manual: ManualWorker, redis_url: str) -> None:
    await queue.add("plain", 1)
    urgent = await queue.add("urgent", 2, priority=1)
    await queue.pause()
    assert await manual.get_next_job(block=0.1) is None
    await queue.resume()
    first = await manual.get_next_job()
    assert first is not None and first.id == urgent.id
    await queue.set_global_concurrency(1)
    other = ManualWorker(queue.name, url=redis_url)
    try:
        assert await other.get_next_job() is None  # one active already
        await manual.complete(first)
        second = await other.get_next_job()
        assert second is not None and second.name == "plain"
        await other.complete(second)
    finally:
        await other.close()


async def test_a_rate_limit_spaces_the_takes(queue: Queue, redis_url: str) -> None:
    for i in range(3):
        await queue.add("r", i)
    worker = ManualWorker(queue.name, url=redis_url, limiter={"max": 1, "duration": 0.3})
    try:
        job = await worker.get_next_job()
        assert job is not None
        await worker.complete(job)
        assert await worker.get_next_job() is None  # the window is full
        job = await worker.get_next_job(block=10.0)  # waits out the window
        assert job is not None
        await worker.complete(job)
    finally:
        await worker.close()


async def test_a_lost_lease_fences_the_result(queue: Queue, redis_url: str) -> None:
    added = await queue.add("slow", 1, attempts=3)
    worker = ManualWorker(queue.name, url=redis_url, lock_duration=0.2, stalled_interval=0)
    try:
        job = await worker.get_next_job()
        assert job is not None
        await wait_until(worker.check_stalled, message="the lease ran out and was taken back")
        assert not await worker.extend_lock(job)
        with pytest.raises(LockLost):
            await worker.complete(job, "late")
        again = await worker.get_next_job()
        assert again is not None and again.id == added.id and again.token != job.token
        await worker.complete(again, "on time")
        assert await added.wait_until_finished(timeout=5) == "on time"
    finally:
        await worker.close()


async def test_extend_lock_keeps_the_job(queue: Queue, redis_url: str, client: object) -> None:
    await queue.add("long", 1)
    worker = ManualWorker(queue.name, url=redis_url, lock_duration=0.2, stalled_interval=0)
    try:
        job = await worker.get_next_job()
        assert job is not None
        assert await worker.extend_lock(job, 30.0)
        # The original lease's end passes; the extended one stands.
        deadline = time.monotonic() + 0.4
        while time.monotonic() < deadline:
            assert await worker.check_stalled() == 0
            await asyncio.sleep(0.05)
        await worker.complete(job, "done")
        assert await queue.get_state(job.id) == "completed"
    finally:
        await worker.close()


async def test_fetch_next_after_a_lost_lease_hands_the_taken_job_back(
        queue: Queue, redis_url: str) -> None:
    a = await queue.add("a", 1)
    b = await queue.add("b", 2)
    worker = ManualWorker(queue.name, url=redis_url, lock_duration=0.2, stalled_interval=0)
    try:
        job = await worker.get_next_job()
        assert job is not None and job.id == a.id
        await wait_until(worker.check_stalled, message="the lease ran out and was taken back")
        with pytest.raises(LockLost):
            await worker.complete(job, fetch_next=True)
        # The call took the next job (a again, back at the head of the line) for nothing:
        # it was handed back unstarted, so nothing is left active under this worker.
        stats = await queue.get_stats()
        assert stats["active"] == 0 and stats["waiting"] == 2
        first = await worker.get_next_job()
        assert first is not None and first.id == a.id
        await worker.complete(first)
        second = await worker.get_next_job()
        assert second is not None and second.id == b.id and second.attempts_made == 0
        await worker.complete(second)
    finally:
        await worker.close()


async def test_expired_and_corrupt_jobs_fail_without_being_returned(
        queue: Queue, manual: ManualWorker, client: object) -> None:
    stale = await queue.add("stale", 1, expires=0.05)
    fresh = await queue.add("fresh", 2)
    await asyncio.sleep(0.1)  # past the first job's expiry, on Redis's clock too
    job = await manual.get_next_job()
    assert job is not None and job.id == fresh.id
    with pytest.raises(JobFailed, match="expired"):
        await stale.wait_until_finished(timeout=5)
    await manual.complete(job)


async def test_delay_and_cancel_requests(queue: Queue, manual: ManualWorker) -> None:
    added = await queue.add("later", 1, attempts=1)
    job = await manual.get_next_job()
    assert job is not None
    await manual.delay(job, 0.2)
    assert await queue.get_state(added.id) == "delayed"
    again = await manual.get_next_job(block=10.0)
    assert again is not None and again.id == added.id and again.attempts_made == 0
    cancel = asyncio.create_task(queue.cancel(added.id))
    await wait_until(lambda: manual.is_cancel_requested(again), message="cancel asked")
    await manual.fail(again, "cancelled", final=True)
    assert await cancel is True


async def test_a_step_job_waits_for_the_children_it_added(
        queue: Queue, manual: ManualWorker) -> None:
    parent = await queue.add("parent", 1)
    job = await manual.get_next_job()
    assert job is not None and job.id == parent.id
    await queue.add("child", 2, parent=job)
    await manual.move_to_waiting_children(job)
    assert await queue.get_state(parent.id) == "waiting-children"
    child = await manual.get_next_job()
    assert child is not None and child.name == "child"
    await manual.complete(child, 20)
    again = await manual.get_next_job(block=10.0)
    assert again is not None and again.id == parent.id
    await manual.complete(again, "all done")
    assert await parent.wait_until_finished(timeout=5) == "all done"


@pytest.mark.parametrize("lost", ["timeout", "cancel"])
async def test_a_call_whose_answer_was_lost_is_answered_by_the_next_one(
        queue: Queue, manual: ManualWorker, monkeypatch: pytest.MonkeyPatch, lost: str) -> None:
    """The call ran in Redis, but its answer never reached the caller (a timeout, a cancel
    as it came): the next call sends it again first, and gets the job it took, where a
    fresh take would leave that job active, unknown to anyone, until its lease ran out."""
    first = await queue.add("a", 1)
    second = await queue.add("b", 2)
    error = (RedisTimeoutError if lost == "timeout" else asyncio.CancelledError)
    lose = LostAnswers(monkeypatch, lambda: error("Timeout reading from socket"))
    lose.arm()
    with pytest.raises(error):
        await manual.get_next_job()
    assert (await queue.get_stats())["active"] == 1  # it was taken, answer or not
    job = await manual.get_next_job()
    assert job is not None and job.id == first.id
    stats = await queue.get_stats()
    assert stats["active"] == 1 and stats["waiting"] == 1
    assert await queue.get_state(second.id) == "waiting"
    # A complete() whose answer is lost the same way is sent again by the next call,
    # which takes the next job: applied once, and that job given out once.
    lose.arm()
    with pytest.raises(error):
        await manual.complete(job, "done")
    nxt = await manual.get_next_job()
    assert nxt is not None and nxt.id == second.id
    assert await queue.get_state(first.id) == "completed"
    assert (await queue.get_stats())["active"] == 1
    await manual.complete(nxt)


async def test_a_job_deleted_while_active_says_so(
        queue: Queue, manual: ManualWorker, client: Any) -> None:
    await queue.add("gone", 1)
    job = await manual.get_next_job()
    assert job is not None
    await client.delete(queue.keys.job(job.id))
    with pytest.raises(JobNotFound, match="removed"):
        await manual.complete(job, "late")


async def test_misuse_is_refused(queue: Queue, manual: ManualWorker, redis_url: str) -> None:
    with pytest.raises(ValueError, match="lock_duration"):
        ManualWorker(queue.name, url=redis_url, lock_duration=0)
    other = Queue(queue.name + "-other", url=redis_url)
    try:
        job = await other.add("x", 1)
        with pytest.raises(ValueError, match="not"):
            await manual.complete(job)
        with pytest.raises(LockLost, match="no token"):
            await manual.complete(await queue.add("y", 1))
        await other.obliterate(force=True)
    finally:
        await other.close()
    await manual.close()
    for call in (manual.get_next_job(), manual.extend_lock(job), manual.check_stalled(),
                 manual.is_cancel_requested(job), manual.complete(job)):
        with pytest.raises(RuntimeError, match="closed"):
            await call


async def test_another_outcome_after_a_lost_complete_is_refused_with_what_happened(
        queue: Queue, manual: ManualWorker, monkeypatch: pytest.MonkeyPatch) -> None:
    """complete() timed out, but Redis had run it; the caller then tries fail(): the
    re-sent complete is what counts, and fail() says so rather than "lease ran out"."""
    added = await queue.add("a", 1)
    job = await manual.get_next_job()
    assert job is not None
    LostAnswers(monkeypatch, lambda: RedisTimeoutError("Timeout reading from socket")).arm()
    with pytest.raises(RedisTimeoutError):
        await manual.complete(job, "v")
    with pytest.raises(LockLost, match=r"earlier call .* \(completed\)"):
        await manual.fail(job, "changed my mind")
    assert await added.wait_until_finished(timeout=5) == "v"


async def test_listed_as_a_live_worker_with_the_jobs_it_took(queue: Queue, redis_url: str) -> None:
    """A ManualWorker is listed by get_workers() (and the dashboard) from its first call
    until close(), kind "manual", with the jobs it took and has not finished, as BullMQ's
    getWorkers() lists a worker that fetches by hand."""
    from minique.dashboard.service import Dashboard

    worker = ManualWorker(queue.name, url=redis_url, name="by-hand", heartbeat_interval=0.05)
    try:
        assert await queue.get_workers() == []  # nothing sent yet
        await queue.add("a", 1)
        await queue.add("b", 2, attempts=1)
        first = await worker.get_next_job()
        second = await worker.get_next_job()
        assert first is not None and second is not None

        async def listed(running: list[str]) -> bool:
            infos = await queue.get_workers()
            return [(i.name, i.kind, i.running, i.concurrency) for i in infos] == [
                ("by-hand", "manual", sorted(running), 0)]

        await wait_until(lambda: listed([first.id, second.id]), timeout=5)
        await worker.complete(first, None)
        await worker.fail(second, "no")
        await wait_until(lambda: listed([]), timeout=5)
        info = (await queue.get_workers())[0]
        assert (info.jobs_done, info.jobs_failed) == (1, 1)
        board = await Dashboard(queue.redis, prefix=queue.prefix).workers([queue.name])
        assert [(w["name"], w["manual"]) for w in board] == [("by-hand", True)]
    finally:
        await worker.close()
    assert await queue.get_workers() == []  # unlisted at once, not after its ttl


async def test_a_second_complete_says_the_job_is_finished_already(
        queue: Queue, manual: ManualWorker) -> None:
    """The second complete() of one job raised LockLost saying its lease ran out, which
    sent a newcomer looking for a lock problem."""
    await queue.add("x", None, remove_on_complete=False)
    job = await manual.get_next_job()
    assert job is not None
    await manual.complete(job, 1)
    with pytest.raises(LockLost, match=rf"job {job.id} is completed already \(a second "
                                       r"complete\(\) or fail\(\) for it\)"):
        await manual.complete(job, 2)
    assert (await queue.get_job(job.id)).return_value == 1  # type: ignore[union-attr]


async def test_a_failure_without_backoff_waits_again_at_once(
        queue: Queue, manual: ManualWorker) -> None:
    """fail() of a job with attempts left and no backoff made it delayed for 1 ms (a
    'delayed' state and a retrying event with delay 1), where a Worker's retry goes straight
    back to waiting."""
    await queue.add("x", None, attempts=2)
    job = await manual.get_next_job()
    assert job is not None
    await manual.fail(job, "boom")
    assert await queue.get_state(job.id) == "waiting"
    again = await manual.get_next_job()
    assert again is not None and again.id == job.id and again.attempts_made == 1


async def test_a_late_complete_after_another_worker_ran_the_job_blames_the_lease(
        queue: Queue, redis_url: str) -> None:
    """A newcomer's lease ran out and a running worker completed the job; the late
    complete() said "is completed already (a second complete() or fail() for it)",
    though it was the only call. Only this worker's own earlier outcome is named so."""
    await queue.add("slow", 1, remove_on_complete=False)
    late = ManualWorker(queue.name, url=redis_url, lock_duration=0.2, stalled_interval=0)
    other = ManualWorker(queue.name, url=redis_url, stalled_interval=0)
    try:
        job = await late.get_next_job()
        assert job is not None
        await wait_until(other.check_stalled, message="the lease ran out and was taken back")
        again = await other.get_next_job()
        assert again is not None and again.id == job.id
        await other.complete(again, "on time")
        with pytest.raises(LockLost, match=rf"job {job.id}: its lease ran out .* \(another "
                                           r"worker ran it since: it is completed\)"):
            await late.complete(job, "late")
    finally:
        await late.close()
        await other.close()
