"""Queue operations: stats, listing, pause/resume, drain, clean, obliterate, retry, promote, remove."""

from __future__ import annotations

import asyncio
import os
from typing import Any

import pytest
from driver import complete, fail, fetch, finish
from helpers import wait_until

from minique import InvalidJobState, Queue, Worker
from minique.errors import AddNotSent, AddOutcomeUnknown


async def test_add_bulk_keeps_order_and_options(queue: Queue) -> None:
    jobs = await queue.add_bulk([("a", {"i": i}, {"delay": 10.0} if i % 2 else {})
                                 for i in range(1200)])
    assert [j.id for j in jobs] == [str(i) for i in range(1, 1201)]
    stats = await queue.get_stats()
    assert stats["waiting"] == 600 and stats["delayed"] == 600 and stats["total"] == 1200
    first = await queue.get_job("1")
    assert first is not None and first.data == {"i": 0} and first.name == "a"


async def test_concurrent_adds_go_together_in_few_script_calls(queue: Queue) -> None:
    async def evalsha_calls() -> int:
        return await _evalsha_calls(queue)

    await queue.add("warm", None)  # loads the script and writes the queue's meta first
    before = await evalsha_calls()

    async def producer(k: int) -> list[str]:
        return [(await queue.add("p", {"k": k, "i": i}, priority=i)).id for i in range(3)]

    ids = [job_id for batch in await asyncio.gather(*(producer(k) for k in range(50)))
           for job_id in batch]
    calls = await evalsha_calls() - before
    assert len(set(ids)) == 150
    # 150 adds from 50 producers: the first add alone, then its 49 followers, then one
    # call per wave of 50 (a producer answered adds its next job to the next call).
    assert 1 <= calls <= 4, calls
    job = await queue.get_job(ids[-1])
    assert job is not None and job.data == {"k": 49, "i": 2} and job.priority == 2
    assert (await queue.get_stats())["waiting"] == 151


async def test_duplicate_job_id_returns_existing_unchanged(queue: Queue) -> None:
    first = await queue.add("x", {"v": 1}, job_id="order-7")
    again = await queue.add("x", {"v": 2}, job_id="order-7", priority=3)
    assert again.id == "order-7" and again.data == {"v": 1} and again.priority == 0
    assert (await queue.get_stats())["total"] == 1
    entries = await queue.redis.xrange(queue.keys.events)
    names = [fields[b"ev"] for _, fields in entries]
    assert names.count(b"duplicated") == 1
    bulk = await queue.add_bulk([("x", {"v": 3}, {"job_id": "order-7"}), ("x", {"v": 4})])
    assert bulk[0].data == {"v": 1} and first.id == bulk[0].id
    assert (await queue.get_stats())["total"] == 2


async def test_stats_add_up_across_states(queue: Queue) -> None:
    await queue.add_bulk([("w", i) for i in range(5)])
    await queue.add("d", 1, delay=60)
    taken = await fetch(queue, 4)
    statuses, _, _ = await finish(queue, [complete(*taken[0]), fail(*taken[1])])
    assert statuses == [1, 1]
    stats = await queue.get_stats()
    assert stats == {"waiting": 1, "active": 2, "completed": 1, "failed": 1, "delayed": 1,
                     "waiting-children": 0, "total": 6}
    assert stats["total"] == sum(v for k, v in stats.items() if k != "total")


async def test_get_jobs_paginates_each_state(queue: Queue) -> None:
    await queue.add_bulk([("p", i, {"priority": 2}) for i in range(3)] + [("n", i) for i in range(5)])
    waiting = await queue.get_job_ids("waiting", 0, 49)
    assert waiting == ["1", "2", "3", "4", "5", "6", "7", "8"]
    assert await queue.get_job_ids("waiting", 2, 4) == ["3", "4", "5"]
    assert await queue.get_job_ids("waiting", 6, 10) == ["7", "8"]
    jobs = await queue.get_jobs("waiting", 0, 1)
    assert [j.data for j in jobs] == [0, 1]
    with pytest.raises(ValueError, match="state must be one of"):
        await queue.get_jobs("nonsense")


async def test_pause_resume(queue: Queue, redis_url: str) -> None:
    await queue.pause()
    assert await queue.is_paused()
    job = await queue.add("x", 1)
    assert await job.get_state() == "paused"
    assert await fetch(queue, 5) == []  # a paused queue hands out nothing
    done = asyncio.Event()

    async def proc(j: Any) -> int:
        done.set()
        return 1

    worker = Worker(queue.name, proc, url=redis_url)
    task = asyncio.create_task(worker.run())
    await asyncio.sleep(0.2)  # give the worker a chance to (wrongly) take the job
    assert not done.is_set() and await job.get_state() == "paused"
    await queue.resume()  # the wake stream must rouse the blocked worker at once
    await asyncio.wait_for(done.wait(), 3)
    assert await job.wait_until_finished(timeout=5) == 1
    await worker.close()
    await task


async def test_drain_removes_waiting_and_optionally_delayed(queue: Queue) -> None:
    await queue.add_bulk([("x", i) for i in range(2500)] + [("p", 1, {"priority": 1})])
    await queue.add("later", 1, delay=60)
    assert await queue.drain() == 2501
    stats = await queue.get_stats()
    assert stats["waiting"] == 0 and stats["delayed"] == 1
    assert await queue.get_job("1") is None
    assert await queue.drain(delayed=True) == 1
    assert (await queue.get_stats())["total"] == 0


async def test_clean_by_state_and_age(queue: Queue) -> None:
    await queue.add_bulk([("x", i) for i in range(4)])
    taken = await fetch(queue, 4)
    await finish(queue, [complete(*taken[0]), complete(*taken[1]), fail(*taken[2])])
    assert await queue.clean(grace=3600, state="completed") == []
    await asyncio.sleep(0.01)
    removed = await queue.clean(grace=0, state="completed", limit=1)
    assert len(removed) == 1
    assert sorted(await queue.clean(grace=0, state="completed") + removed) == ["1", "2"]
    assert await queue.clean(grace=0, state="failed") == ["3"]
    await queue.add("w", 1)
    assert await queue.clean(grace=0, state="waiting") == ["5"]
    assert (await queue.get_stats()) == {"waiting": 0, "active": 1, "completed": 0, "failed": 0,
                                         "delayed": 0, "waiting-children": 0, "total": 1}


async def test_obliterate_refuses_active_then_removes_every_key(queue: Queue) -> None:
    await queue.add_bulk([("x", i) for i in range(1500)])
    job = await queue.add("d", 1, delay=60)
    await job.log("hello")
    await fetch(queue, 1)
    with pytest.raises(InvalidJobState, match="active"):
        await queue.obliterate()
    await queue.obliterate(force=True)
    left = [k async for k in queue.redis.scan_iter(match=queue.keys.base.replace("{", "[{]") + "*")]
    assert left == []


async def test_retry_jobs_and_job_retry_reset_attempts(queue: Queue) -> None:
    await queue.add_bulk([("x", i, {"attempts": 1}) for i in range(3)])
    taken = await fetch(queue, 3)
    await finish(queue, [fail(*t) for t in taken])
    assert (await queue.get_stats())["failed"] == 3
    job = await queue.get_job("1")
    assert job is not None and job.attempts_made == 1
    await job.retry()
    again = await queue.get_job("1")
    assert again is not None and again.state == "waiting" and again.attempts_made == 0
    assert again.failed_reason is None
    assert await queue.retry_jobs("failed") == 2
    assert (await queue.get_stats())["waiting"] == 3
    with pytest.raises(InvalidJobState, match="only finished jobs"):
        await again.retry()


async def test_manual_retries_start_counting_attempts_again(queue: Queue, redis_url: str) -> None:
    """After job.retry() or retry_jobs() the runs see attempts_started 1, 2 again, not 3, 4."""
    seen: dict[str, list[int]] = {}

    async def proc(job: Any) -> None:
        seen.setdefault(job.id, []).append(job.attempts_started)
        raise ValueError("always")

    one, two = await queue.add_bulk([("x", 1, {"attempts": 2}), ("x", 2, {"attempts": 2})])
    worker = Worker(queue.name, proc, url=redis_url)
    task = asyncio.create_task(worker.run())

    async def failed(n: int) -> bool:
        return (await queue.get_stats())["failed"] == n

    await wait_until(lambda: failed(2), message="both jobs failed")
    await one.retry()
    await wait_until(lambda: failed(2) if len(seen[one.id]) == 4 else False,
                     message="job.retry() ran twice more")
    assert await queue.retry_jobs("failed") == 2
    await wait_until(lambda: failed(2) if len(seen[two.id]) == 4 else False,
                     message="retry_jobs() ran twice more")
    await worker.close()
    await task
    assert seen == {one.id: [1, 2, 1, 2, 1, 2], two.id: [1, 2, 1, 2]}
    again = await queue.get_job(two.id)
    assert again is not None and again.attempts_started == 2 and again.attempts_made == 2


async def test_promote_moves_delayed_to_waiting(queue: Queue) -> None:
    job = await queue.add("x", 1, delay=60)
    await job.promote()
    assert await job.get_state() == "waiting"
    with pytest.raises(InvalidJobState, match="not delayed"):
        await job.promote()
    await queue.add_bulk([("y", i, {"delay": 60}) for i in range(3)])
    assert await queue.promote_jobs() == 3
    assert (await queue.get_stats())["waiting"] == 4


async def test_remove_from_every_state_but_active(queue: Queue) -> None:
    waiting = await queue.add("w", 1)
    prio = await queue.add("p", 1, priority=5)
    delayed = await queue.add("d", 1, delay=60)
    await waiting.log("line")
    for job in (waiting, prio, delayed):
        assert await job.remove()
        assert await queue.get_job(job.id) is None
    assert not await queue.redis.exists(queue.keys.logs(waiting.id))
    active = await queue.add("a", 1)
    await fetch(queue, 1)
    with pytest.raises(InvalidJobState, match="active"):
        await active.remove()
    assert (await queue.get_stats())["total"] == 1
    assert await queue.remove_job("nope") is False


async def test_stalled_active_job_is_taken_back(queue: Queue, redis_url: str) -> None:
    await queue.add("x", 1)
    [(job_id, token)] = await fetch(queue, 1, lease_ms=50)
    # The worker's Job carries the stalled count (the fetch reads it once a job stalled).
    worker = Worker(queue.name, lambda j: f"redone {j.stalled_count}", url=redis_url,
                    stalled_interval=0.05)
    task = asyncio.create_task(worker.run())
    job = await queue.get_job(job_id)
    assert job is not None
    assert await job.wait_until_finished(timeout=5) == "redone 1"
    redone = await queue.get_job(job_id)
    assert redone is not None and redone.stalled_count == 1
    # The first owner's token is fenced out: its late result is refused.
    statuses, _, _ = await finish(queue, [complete(job_id, token)])
    assert statuses == [0]
    await worker.close()
    await task


async def test_stalled_too_often_fails(queue: Queue) -> None:
    await queue.add("x", 1)
    for _ in range(2):
        await fetch(queue, 1, lease_ms=1)
        await asyncio.sleep(0.01)
        from minique import scripts

        await scripts.run(queue.redis, "stalled", queue.keys.vector,
                          [queue.keys.job_prefix, 1, 100, -1, -1])
    job = await queue.get_job("1")
    assert job is not None and job.state == "failed"
    assert job.failed_reason and "stalled more than allowable limit" in job.failed_reason


async def test_wait_for_condition_helper_fails_on_timeout() -> None:
    with pytest.raises(AssertionError, match="never not reached within"):
        await wait_until(lambda: False, timeout=0.05, message="never")


async def test_concurrent_adds_are_batched_and_keep_their_own_results(queue: Queue) -> None:
    calls_before = await _evalsha_calls(queue)
    jobs = await asyncio.gather(*(queue.add("c", {"i": i}, priority=i % 3) for i in range(200)))
    calls = await _evalsha_calls(queue) - calls_before
    assert len({j.id for j in jobs}) == 200
    assert [j.data for j in jobs] == [{"i": i} for i in range(200)]
    for job in jobs[:5]:
        stored = await queue.get_job(job.id)
        assert stored is not None and stored.data == job.data and stored.priority == job.priority
    assert 1 <= calls < 50  # far fewer script calls than jobs
    dup = await asyncio.gather(queue.add("d", 1, job_id="same"), queue.add("d", 2, job_id="same"))
    assert dup[0].id == dup[1].id == "same" and dup[1].data == 1


async def _evalsha_calls(queue: Queue) -> int:
    """Calls of minique's transitions: FCALL (the function library) or EVALSHA (scripts)."""
    stats = await queue.redis.info("commandstats")
    return sum(int(stats.get(f"cmdstat_{cmd}", {}).get("calls", 0)) for cmd in ("evalsha", "fcall"))


async def test_an_add_cancelled_while_it_waits_for_the_call_in_flight_adds_nothing(
        queue: Queue) -> None:
    """Concurrent adds wait while one call is out and then go together: one cancelled while
    it waited was sent anyway with the others, so its job existed although its caller had
    been cancelled before anything went to Redis."""
    await queue.add("warm", None)
    first = asyncio.create_task(queue.add("a", 1, job_id="first"))
    await asyncio.sleep(0)  # its call is out
    waiting = [asyncio.create_task(queue.add("b", i, job_id=f"w{i}")) for i in range(3)]
    await asyncio.sleep(0)  # they wait for it
    waiting[1].cancel()
    await first
    done = await asyncio.gather(*waiting, return_exceptions=True)
    assert isinstance(done[1], asyncio.CancelledError)
    assert [j.id for j in (done[0], done[2])] == ["w0", "w2"]  # type: ignore[union-attr]
    assert await queue.get_job("w1") is None
    assert (await queue.get_stats())["waiting"] == 4


async def test_adds_waiting_on_a_cancelled_sender_are_told_what_became_of_them(
        queue: Queue) -> None:
    """The task that sends concurrent adds together was cancelled (a loop shutting down, a
    cancel of every task) with their call on the way: its producers, never cancelled
    themselves, got its CancelledError, and adds queued behind that call waited for ever.
    Now those on the way raise AddOutcomeUnknown (the call may have run), and those never
    sent raise AddNotSent and exist nowhere."""
    await queue.add("warm", None)
    admin = queue.redis
    send_adds = queue._send_adds
    on_the_way = asyncio.Event()

    async def pausing_send(chunks: Any, waiting: Any = None) -> Any:
        # Redis holds every write from now on: the batch's call goes out and waits there.
        if waiting and any(args[0].startswith("b") for args, _ in waiting):
            await admin.execute_command("CLIENT", "PAUSE", 10_000, "WRITE")
            on_the_way.set()
        return await send_adds(chunks, waiting)

    queue._send_adds = pausing_send  # type: ignore[method-assign]
    try:
        first = asyncio.create_task(queue.add("a", 1, job_id="a0"))
        await asyncio.sleep(0)  # its call is out
        batch = [asyncio.create_task(queue.add("b", i, job_id=f"b{i}")) for i in range(2)]
        await asyncio.sleep(0)  # they wait for it
        assert len(queue._pending_adds) == 2
        await first
        await asyncio.wait_for(on_the_way.wait(), 5)
        later = asyncio.create_task(queue.add("c", 0, job_id="c0"))
        await asyncio.sleep(0)  # it waits for the batch's call
        assert len(queue._pending_adds) == 1
        flusher = queue._flusher
        assert flusher is not None
        flusher.cancel()
        # (Before, the add never sent waited for ever.)
        outcomes = await asyncio.wait_for(
            asyncio.gather(*batch, later, return_exceptions=True), 10)
    finally:
        queue._send_adds = send_adds  # type: ignore[method-assign]
        await admin.execute_command("CLIENT", "UNPAUSE")
    for outcome, job_id in zip(outcomes[:2], ["b0", "b1"], strict=True):
        assert isinstance(outcome, AddOutcomeUnknown), outcome
        assert outcome.job_ids == ["b0", "b1"] and job_id in str(outcome)
    assert isinstance(outcomes[2], AddNotSent), outcomes[2]
    assert not queue._pending_adds
    # The queue's adds go on as before (their call is written after the paused one's, if
    # that one ran), and the add never sent exists nowhere.
    assert [j.id for j in await asyncio.gather(*(queue.add("d", i, job_id=f"d{i}")
                                                 for i in range(3)))] == ["d0", "d1", "d2"]
    assert await queue.get_job("c0") is None
    # Both jobs of the call on the way, or neither (redis-py drops a cancelled call's
    # connection, and a paused command on a closed connection never runs).
    assert (await queue.get_job("b0") is None) == (await queue.get_job("b1") is None)


async def test_adds_of_a_sender_cancelled_before_its_call_went_are_not_sent(
        queue: Queue) -> None:
    """The sender was cancelled while its call waited for the producer's lock (an add_bulk
    held it): nothing was sent, so its producers hear AddNotSent (adding again is safe),
    not that the outcome is unknown."""
    await queue.add("warm", 0, job_id="warm")
    first = asyncio.create_task(queue.add("a", 1, job_id="a0"))
    await asyncio.sleep(0)  # its call is out, under the lock
    waiting = asyncio.create_task(queue.add("b", 2, job_id="b0"))
    big = [("bulk", os.urandom(200_000)) for _ in range(40)]  # a call that takes a while
    bulk = asyncio.create_task(queue.add_bulk(big))
    await asyncio.sleep(0)
    assert len(queue._pending_adds) == 1
    await first
    for _ in range(100):  # the sender took b0 and waits for the lock the bulk holds
        if not queue._pending_adds:
            break
        await asyncio.sleep(0)
    assert not queue._pending_adds and not bulk.done()
    assert queue._flusher is not None
    queue._flusher.cancel()
    with pytest.raises(AddNotSent):
        await asyncio.wait_for(waiting, 10)
    await bulk
    assert await queue.get_job("b0") is None


async def test_a_job_handed_back_before_it_ever_started_has_no_start_time(queue: Queue) -> None:
    """A job taken for a free slot and handed back unstarted (a shutdown, a control that
    changed while the call was out) kept the take's processed_on: `minique jobs --state
    waiting` showed a start that never happened (a newcomer run). One fetched at a time,
    a waiting job that never ran has none."""
    job = await queue.add("x", None)
    [(job_id, token)] = await fetch(queue)
    assert (await queue.get_job(job_id)).processed_on is not None  # type: ignore[union-attr]
    statuses, _, _ = await finish(queue, [(job_id, token, "h", "", "", 0, -1, -1)])
    assert statuses == [1]
    back = await queue.get_job(job.id)
    assert back is not None and back.state == "waiting" and back.processed_on is None


async def test_a_jobs_logs_can_be_cleared_and_the_events_stream_trimmed(queue: Queue) -> None:
    """BullMQ's job.clearLogs and queue.trimEvents."""
    job = await queue.add("t", 1)
    for i in range(5):
        await job.log(f"line {i}")
    await job.clear_logs(keep=2)
    assert await job.get_logs() == ["line 3", "line 4"]
    await job.clear_logs()
    await job.clear_logs()  # again: nothing left, no error
    assert await job.get_logs() == []
    for i in range(5):
        await queue.add("t", i)  # (a bulk add names all its jobs in one entry)
    assert await queue.redis.xlen(queue.keys.events) > 3
    await queue.trim_events(3)
    assert await queue.redis.xlen(queue.keys.events) == 3
    await queue.trim_events(0)
    assert await queue.redis.xlen(queue.keys.events) == 0
    with pytest.raises(ValueError):
        await queue.trim_events(-1)
    with pytest.raises(ValueError):
        await job.clear_logs(-1)
