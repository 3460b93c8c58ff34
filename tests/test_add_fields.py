"""A new job's hash holds no field at its default (lua/includes/job_fields.lua): readers
take a missing field as the default, so a plain job stays small and reads back the same."""

from __future__ import annotations

import asyncio
from typing import Any

from minique import Queue, Worker
from minique.events import parse_entry
from minique.options import Keep, StoredOptions

DEFAULT_FIELDS = {b"o", b"p", b"atm", b"ats"}


async def test_a_plain_job_stores_no_defaults_and_reads_them_back(queue: Queue, client: Any) -> None:
    job = await queue.add("plain", {"i": 1})
    h = await client.hgetall(queue.keys.job(job.id))
    assert not DEFAULT_FIELDS & set(h), h
    assert await client.object("encoding", queue.keys.job(job.id)) == b"listpack"
    got = await queue.get_job(job.id)
    assert got is not None
    assert got.opts == StoredOptions() and got.priority == 0
    assert got.attempts_made == 0 and got.attempts_started == 0
    assert got.state == "waiting" and got.data == {"i": 1}


async def test_options_and_priority_that_differ_from_the_defaults_are_stored(
        queue: Queue, client: Any) -> None:
    job = await queue.add("custom", None, attempts=3, priority=7, remove_on_complete=5)
    h = await client.hgetall(queue.keys.job(job.id))
    assert h[b"p"] == b"7" and b"o" in h
    got = await queue.get_job(job.id)
    assert got is not None and got.priority == 7
    assert got.opts.attempts == 3 and got.opts.keep_completed == Keep(count=5)


async def test_queue_defaults_are_stored_when_they_are_not_the_library_defaults(
        redis_url: str, qname: str, client: Any) -> None:
    q = Queue(qname, url=redis_url, default_job_options={"attempts": 2})
    try:
        job = await q.add("x", None)
        assert b"o" in await client.hgetall(q.keys.job(job.id))
        got = await q.get_job(job.id)
        assert got is not None and got.opts.attempts == 2
    finally:
        await q.obliterate(force=True)
        await q.close()


async def test_jobs_without_default_fields_run_retry_and_finish(queue: Queue, redis_url: str) -> None:
    async def flaky(job: Any) -> str:
        if job.name == "retried" and job.attempts_made == 0:
            raise RuntimeError("first attempt fails")
        return "ok"

    plain = await queue.add("plain", None)
    retried = await queue.add("retried", None, attempts=2)
    worker = Worker(queue.name, flaky, url=redis_url, concurrency=1)
    task = asyncio.create_task(worker.run())
    try:
        assert await plain.wait_until_finished(timeout=10) == "ok"
        assert await retried.wait_until_finished(timeout=10) == "ok"
    finally:
        await worker.close()
        await task
    done = await queue.get_job(retried.id)
    assert done is not None and done.state == "completed"
    assert done.attempts_made == 2 and done.attempts_started == 2


async def test_an_id_repeated_within_one_bulk_call_is_added_once(queue: Queue, client: Any) -> None:
    # None of the ids exists before the call, so the script checks them all with one
    # EXISTS; the repeat is caught within the call (lua/add.lua `added`).
    jobs = await queue.add_bulk([("x", 1, {"job_id": "twice"}), ("y", 2),
                                 ("x", 3, {"job_id": "twice"})])
    assert jobs[0].id == jobs[2].id == "twice"
    assert jobs[2].data == 1  # the duplicate is the job the first item added
    assert (await queue.get_stats())["waiting"] == 2
    entries = await client.xrange(queue.keys.events)
    kinds = [(e.name, e.job_id) for i, f in entries for e in parse_entry(i, f)]
    assert kinds.count(("duplicated", "twice")) == 1
    assert kinds.count(("added", "twice")) == 1
    # An id that exists before the call: found by the per-job check.
    again = await queue.add_bulk([("z", 4), ("x", 5, {"job_id": "twice"})])
    assert again[1].data == 1
    assert (await queue.get_stats())["waiting"] == 3


async def test_bulk_adds_reserve_ids_ahead_and_keep_them_increasing(queue: Queue, client: Any) -> None:
    ids: list[int] = []
    for start in range(0, 2000, 500):
        jobs = await queue.add_bulk([("x", i) for i in range(start, start + 500)])
        ids.extend(int(j.id) for j in jobs)
    assert ids == sorted(ids) and len(set(ids)) == 2000
    # One reservation of 2000 ids served the four calls.
    assert int(await client.get(queue.keys.idc)) == 2000


async def test_adds_after_the_queue_was_obliterated_elsewhere_are_never_lost(
        redis_url: str, qname: str) -> None:
    """A producer's reserved ids outlive an obliterate done by another process (the id
    counter restarts): its next adds must still add their own jobs, not report another
    producer's job with the same number as a duplicate."""
    first, other, admin = (Queue(qname, url=redis_url) for _ in range(3))
    try:
        await first.add("a", 0)  # reserves ids 1-100, uses 1
        await admin.obliterate(force=True)  # the counter restarts
        theirs = await other.add_bulk([("b", i) for i in range(150)])  # ids from 1 again
        mine = [await first.add("a", i) for i in range(1, 4)]
        for job in mine:
            got = await admin.get_job(job.id)
            assert got is not None and got.name == "a" and got.data == job.data
        assert (await admin.get_stats())["waiting"] == 153
        assert not {j.id for j in mine} & {j.id for j in theirs}
        # Later reservations start past every id handed out.
        more = await other.add_bulk([("b", i) for i in range(600)])
        assert (await admin.get_stats())["waiting"] == 753
        assert len({j.id for j in [*theirs, *mine, *more]}) == 753
    finally:
        await admin.obliterate(force=True)
        for q in (first, other, admin):
            await q.close()


def test_job_added_builds_what_init_builds() -> None:
    from minique.job import Job

    opts = StoredOptions(attempts=2)
    fast = Job.added(None, "7", "n", b"raw", opts, {"d": 1}, 3, 1.5, "waiting", "g")  # type: ignore[arg-type]
    slow = Job(None, "7", "n", b"raw", opts, data={"d": 1}, priority=3, timestamp=1.5,
               state="waiting")
    slow.group = "g"
    for slot in Job.__slots__:
        assert getattr(fast, slot) == getattr(slow, slot), slot


def test_jobs_with_the_same_options_share_one_tail_of_script_arguments() -> None:
    from minique.queue import _add_call_args

    plain = ["", "n", b"d", b"", 0, 0, "", ""]
    other = ["", "n", b"e", b"\x91\x03", 2, 0, "g", ""]
    third = ["", "n", b"f", b"", 0, 5, "", ""]
    flat = _add_call_args([["1", *plain[1:]], ["2", *other[1:]], ["3", *plain[1:]],
                           ["4", *third[1:]], ["5", *other[1:]]], "p", 7)
    # 5 jobs, producer, sequence number, 2 tails sent: the plain one is tail 0, not sent.
    assert flat[:4] == [5, "p", 7, 2]
    assert flat[4:14] == [b"\x91\x03", 2, 0, "g", "", b"", 0, 5, "", ""]
    assert flat[14:] == ["1", "n", b"d", 0, "2", "n", b"e", 1, "3", "n", b"d", 0,
                         "4", "n", b"f", 2, "5", "n", b"e", 1]


async def test_adds_to_queues_in_turn_land_in_their_own_queue(redis_url: str, qname: str) -> None:
    """add sends the meta key alone and the library derives the other keys, once per
    queue in a row (lua/includes/call.lua): calls for other queues, and calls that send
    the whole vector, must each get their own queue's keys."""
    a, b = Queue(qname + "-a", url=redis_url), Queue(qname + "-b", url=redis_url)
    try:
        for i in range(3):
            await a.add("x", i)
            await b.add("y", i)
            await b.add("y", i, delay=60)
            assert (await a.get_stats())["waiting"] == i + 1  # a whole-vector call
        assert [(await a.get_stats())[s] for s in ("waiting", "delayed")] == [3, 0]
        assert [(await b.get_stats())[s] for s in ("waiting", "delayed")] == [3, 3]
        assert {j.name for j in await a.get_jobs("waiting")} == {"x"}
    finally:
        for q in (a, b):
            await q.obliterate(force=True)
            await q.close()


def test_job_taken_builds_what_init_builds() -> None:
    from minique.job import Job

    opts = StoredOptions(attempts=3)
    for priority, group in ((4, "g"), (-1, None)):
        fast = Job.taken(None, "9", "n", b"raw", opts, priority, 1.5, 1, 2, 1, "0042",  # type: ignore[arg-type]
                         2.5, group)
        slow = Job(None, "9", "n", b"raw", opts, priority=priority, timestamp=1.5,
                   attempts_made=1, attempts_started=2, stalled_count=1, state="active",
                   token="0042")
        slow.processed_on = 2.5
        slow.group = group
        slow._counts = ":1:2"
        for slot in Job.__slots__:
            assert getattr(fast, slot) == getattr(slow, slot), slot
