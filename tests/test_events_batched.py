"""Events of many jobs in one stream entry (format version 3): one Event per job, in
order per job, values intact, and resumable part way through an entry."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest
from helpers import wait_until

from minique import Queue, QueueEvents, Worker
from minique.events import parse_entry, split_length_prefixed


async def _run_all(queue: Queue, redis_url: str, n: int, proc: Any) -> None:
    worker = Worker(queue.name, proc, url=redis_url, concurrency=50)
    task = asyncio.create_task(worker.run())
    try:
        await wait_until(lambda: _completed(queue, n), timeout=60, message=f"{n} completed")
    finally:
        await worker.close()
        await task


async def _completed(queue: Queue, n: int) -> bool:
    return (await queue.get_stats())["completed"] >= n


async def test_a_busy_worker_shares_entries_and_every_job_gets_its_events(
        queue: Queue, redis_url: str) -> None:
    n = 600
    # Ids with the characters the list format and the finish arguments use.
    jobs = await queue.add_bulk([("x", i, {"job_id": f"o:{i}|5:x"}) for i in range(n)])

    async def double(job: Any) -> Any:
        return {"twice": job.data * 2, "id": job.id}

    await _run_all(queue, redis_url, n, double)
    raw = await queue.redis.xrange(queue.keys.events)
    shared = [f for _, f in raw if b"ids" in f]
    assert shared, "no entry carried several jobs"
    # Held jobs that started and completed between two calls: one entry, 'first' 'active'.
    assert any(f.get(b"first") == b"active" and f[b"ev"] == b"completed" for f in shared)
    assert len(raw) < 2 * n + n // 4  # added + waiting per job, and few for the rest
    events = [e for eid, f in raw for e in parse_entry(eid, f)]
    for job in jobs:
        mine = [e for e in events if e.job_id == job.id]
        assert [e.name for e in mine] == ["added", "waiting", "active", "completed"], mine
        assert mine[-1].return_value == {"twice": job.data * 2, "id": job.id}
    for eid, f in raw:
        if b"ids" in f:
            parts = parse_entry(eid, f)
            assert [e.index for e in parts] == list(range(len(parts)))
            # Each names itself: the entry id, with its index for all but the last.
            assert [e.event_id for e in parts] == [f"{eid.decode()}/{i}" for i in
                                                  range(len(parts) - 1)] + [eid.decode()]
            assert {e.entry_id for e in parts} == {eid.decode()}


async def test_queue_events_yield_each_job_and_resume_inside_an_entry(
        queue: Queue, redis_url: str) -> None:
    n = 300
    await queue.add_bulk([("x", i) for i in range(n)])
    start = (await queue.redis.xrevrange(queue.keys.events, count=1))[0][0].decode()
    await _run_all(queue, redis_url, n, lambda job: job.data)
    events = QueueEvents(queue.name, url=redis_url, last_id=start)
    seen: list[tuple[str, str | None]] = []
    # Leave the loop after each event: the next loop must go on inside the same entry.
    while len([1 for name, _ in seen if name == "completed"]) < n:
        async for event in events:
            seen.append((event.name, event.job_id))
            break
    await events.close()
    completed = [j for name, j in seen if name == "completed"]
    active = [j for name, j in seen if name == "active"]
    assert len(completed) == len(set(completed)) == n
    assert set(active) == set(completed)
    for job_id in completed:
        assert seen.index(("active", job_id)) < seen.index(("completed", job_id))


async def test_next_hands_out_an_entry_one_event_at_a_time(queue: Queue, redis_url: str) -> None:
    n = 200
    await queue.add_bulk([("x", i) for i in range(n)])
    start = (await queue.redis.xrevrange(queue.keys.events, count=1))[0][0].decode()
    await _run_all(queue, redis_url, n, lambda job: None)
    events = QueueEvents(queue.name, url=redis_url, last_id=start)
    got: list[str | None] = []
    while len(got) < n:
        event = await events.next(timeout=5)
        assert event is not None, f"stopped after {len(got)} completed events"
        if event.name == "completed":
            got.append(event.job_id)
    await events.close()
    assert len(set(got)) == n


async def test_large_values_close_an_entry(queue: Queue, redis_url: str) -> None:
    """An entry stops growing once its values reach 16 KiB: the stream's cap, which counts
    entries, bounds its memory as it did with one entry per event."""
    n = 100
    await queue.add_bulk([("x", i) for i in range(n)])
    await _run_all(queue, redis_url, n, lambda job: "v" * 4000)
    for _, f in await queue.redis.xrange(queue.keys.events):
        if f.get(b"ev") == b"completed":
            assert len(f.get(b"rvs", b"") or f.get(b"rv", b"")) < 16384 + 8000


def test_length_prefixed_lists() -> None:
    assert split_length_prefixed(b"") == []
    assert split_length_prefixed(b"3:a:b0:2:\x00\xff") == [b"a:b", b"", b"\x00\xff"]
    with pytest.raises(ValueError):
        split_length_prefixed(b"5:abc")
    with pytest.raises(ValueError):
        split_length_prefixed(b"abc")


async def test_a_bulk_add_shares_entries_and_keeps_each_jobs_name(queue: Queue) -> None:
    jobs = await queue.add_bulk([(f"kind-{i % 7}", i) for i in range(300)])
    raw = await queue.redis.xrange(queue.keys.events)
    assert len(raw) <= 3 + 2  # added, then waiting, in one entry per call of <= 100 jobs
    events = [e for eid, f in raw for e in parse_entry(eid, f)]
    for i, job in enumerate(jobs):
        mine = [e for e in events if e.job_id == job.id]
        assert [e.name for e in mine] == ["added", "waiting"], mine
        assert mine[0].fields == {"name": f"kind-{i % 7}"}
    single = await queue.add("alone", 1)
    last = [e for eid, f in await queue.redis.xrange(queue.keys.events) for e in parse_entry(eid, f)
            if e.job_id == single.id]
    assert [(e.name, e.fields) for e in last] == [("added", {"name": "alone"}), ("waiting", {})]


def test_an_entry_then_carries_the_same_jobs_next_events() -> None:
    """``then`` <name>: the entry's jobs' events of that name follow its own (add writes
    added ... then waiting); each is named and indexed as in any shared entry."""
    one = parse_entry(b"5-1", {b"ev": b"added", b"id": b"7", b"name": b"n", b"then": b"waiting"})
    assert [(e.event_id, e.name, e.job_id, e.fields, e.index) for e in one] == [
        ("5-1/0", "added", "7", {"name": "n"}, 0), ("5-1", "waiting", "7", {}, 1)]
    many = parse_entry("6-0", {b"ev": b"added", b"ids": b"1:a2:bc", b"names": b"1:x1:y",
                               b"then": b"waiting"})
    assert [(e.event_id, e.name, e.job_id, e.fields) for e in many] == [
        ("6-0/0", "added", "a", {"name": "x"}), ("6-0/1", "added", "bc", {"name": "y"}),
        ("6-0/2", "waiting", "a", {}), ("6-0", "waiting", "bc", {})]


def test_an_entry_first_carries_the_same_jobs_earlier_events() -> None:
    """``first`` <name>: the entry's jobs' events of that name come before its own (a
    finish writes completed ... first active); values stay with the entry's own events."""
    one = parse_entry(b"5-1", {b"ev": b"completed", b"id": b"7", b"rv": b"\x01",
                               b"first": b"active"})
    assert [(e.event_id, e.name, e.job_id, e.value, e.index) for e in one] == [
        ("5-1/0", "active", "7", None, 0), ("5-1", "completed", "7", b"\x01", 1)]
    many = parse_entry("6-0", {b"ev": b"completed", b"ids": b"1:a2:bc", b"rvs": b"1:x0:",
                               b"first": b"active"})
    assert [(e.event_id, e.name, e.job_id, e.value, e.index) for e in many] == [
        ("6-0/0", "active", "a", None, 0), ("6-0/1", "active", "bc", None, 1),
        ("6-0/2", "completed", "a", b"x", 2), ("6-0", "completed", "bc", None, 3)]
    with pytest.raises(ValueError, match="both"):
        parse_entry("7-0", {b"ev": b"completed", b"id": b"1", b"first": b"active",
                            b"then": b"waiting"})


async def test_a_one_job_add_writes_one_entry_and_resumes_inside_it(
        queue: Queue, redis_url: str) -> None:
    await queue.add("first", 0)
    start = (await queue.redis.xrevrange(queue.keys.events, count=1))[0][0].decode()
    job = await queue.add("second", 1)
    raw = await queue.redis.xrange(queue.keys.events, "(" + start, "+")
    assert len(raw) == 1
    events = QueueEvents(queue.name, url=redis_url, last_id=start)
    first = await events.next(timeout=5)
    assert first is not None and (first.name, first.job_id) == ("added", job.id)
    await events.close()
    # Resumed after the added event, the waiting event of the same entry comes next.
    events = QueueEvents(queue.name, url=redis_url, last_id=first.event_id)
    second = await events.next(timeout=5)
    assert second is not None and (second.name, second.job_id) == ("waiting", job.id)
    assert second.event_id == raw[0][0].decode()
    await events.close()


async def test_a_delayed_job_among_a_bulk_keeps_separate_entries(queue: Queue) -> None:
    jobs = await queue.add_bulk([("x", 0), ("x", 1, {"delay": 60}), ("x", 2)])
    events = [(e.name, e.job_id) for eid, f in await queue.redis.xrange(queue.keys.events)
              for e in parse_entry(eid, f)]
    a, d, c = (j.id for j in jobs)
    # The delayed event writes what was gathered before it; the entries of a and d then
    # differ (d did not go waiting), so added and waiting stay apart there.
    assert events == [("added", a), ("added", d), ("waiting", a), ("delayed", d),
                      ("added", c), ("waiting", c)]
