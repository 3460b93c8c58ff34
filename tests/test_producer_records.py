"""What a producer's re-send bookkeeping costs Redis over time: its record in
``{p:q}:producers`` and the notes its calls keep for re-sends (lua/includes/producers.lua)
stay bounded however long it adds, and go with it once it is quiet."""

from __future__ import annotations

import asyncio
import re
from typing import Any

from helpers import wait_until

from minique import ManualWorker, Queue, Worker


async def producer_fields(queue: Queue) -> dict[bytes, bytes]:
    return dict(await queue.redis.hgetall(queue.keys.base + ":producers"))


async def resend(queue: Queue, args: list[object], seq: int) -> list[object]:
    """add.lua's call number ``seq`` again, as a client re-sends it after a lost reply."""
    saved, queue._add_seq = queue._add_seq, seq - 1
    try:
        [reply] = await queue._send_adds([[args]])
    finally:
        queue._add_seq = saved
    return list(reply)


async def test_a_producer_adding_duplicates_all_day_keeps_at_most_49_notes(queue: Queue) -> None:
    """Each call that finds a duplicate keeps a note for its re-sends. They used to stay
    until the sweep's sample of 50 a minute found them: 3,000 duplicate adds left 3,000."""
    first = await queue.add("sync", 0, dedup={"id": "d"})
    for i in range(300):
        job = await queue.add("sync", i, dedup={"id": "d"})
        assert job.id == first.id
    fields = await producer_fields(queue)
    notes = [f for f in fields if b":" in f]
    assert 40 <= len(notes) <= 49, len(notes)
    assert len(fields) == len(notes) + 1


async def test_a_resend_within_the_window_still_returns_the_duplicate_its_first_send_found(
        queue: Queue) -> None:
    first = await queue.add("sync", 1, dedup={"id": "rs"})
    args, _ = queue._prepare("sync", 2, {"dedup": {"id": "rs"}})
    await queue._assign_ids([args])
    [reply] = await queue._send_adds([[args]])
    seq = queue._add_seq
    assert (reply[0], reply[1]) == (first.id.encode(), 1)
    for i in range(40):  # later calls, with notes of their own
        await queue.add("sync", i, dedup={"id": "rs"})
    assert await queue.remove_job(first.id)
    resent = await resend(queue, args, seq)
    assert (resent[0], resent[1]) == (first.id.encode(), 1)
    assert (await queue.get_stats())["total"] == 0
    for i in range(20):  # now more than 48 calls on: the note is spent
        await queue.add("other", i)
    assert f"{queue._producer}:{seq}".encode() not in await producer_fields(queue)


async def test_the_sweep_drops_a_quiet_producers_record_with_its_notes(queue: Queue) -> None:
    await queue.add("sync", 0, job_id="same")
    for _ in range(5):
        await queue.add("sync", 0, job_id="same")  # duplicates: notes
    fields = await producer_fields(queue)
    record_key = queue._producer.encode()
    assert len(fields) == 6
    # Quiet for more than 10 minutes: the record's time, its last field, moved back.
    await queue.redis.hset(queue.keys.base + ":producers", record_key,
                           re.sub(rb"\|\d+$", b"|1000", fields[record_key]))
    await queue.sweep()
    assert await producer_fields(queue) == {}


async def test_a_flow_after_noted_calls_keeps_its_reply_for_a_resend(queue: Queue) -> None:
    """The record then holds both the noted numbers and add_flow's reply."""
    await queue.add("sync", 0, job_id="same")
    await queue.add("sync", 0, job_id="same")  # a note
    parent = await queue.add("parent", 0)
    child = await queue.add("child", 1, parent=parent)
    record = (await producer_fields(queue))[queue._producer.encode()]
    assert re.match(rb"^\d+;\d+\|.+\|\d+$", record, re.S), record
    assert (await queue.get_job(child.id)) is not None
    # A re-sent add after it still reads the record right.
    await queue.add("sync", 0, job_id="same")
    assert (await queue.get_stats())["total"] == 3


async def test_a_record_outlives_any_copy_tcp_can_still_deliver_and_then_goes(queue: Queue) -> None:
    """Quiet for 11 minutes a record stays (a copy of a call a kernel still retransmits
    would otherwise run as new, and add its jobs twice: break round 36 held one for 610 s);
    after 30 it goes."""
    seconds, micros = await queue.redis.time()
    now_ms = seconds * 1000 + micros // 1000
    key = queue.keys.base + ":producers"
    await queue.redis.hset(key, mapping={"recent": f"3|{now_ms - 11 * 60_000}",
                                         "quiet": f"3;2|{now_ms - 31 * 60_000}",
                                         "quiet:2": f"x|{now_ms - 31 * 60_000}"})
    await queue.sweep()
    assert set(await producer_fields(queue)) == {b"recent"}


async def test_the_sweep_keeps_up_with_a_queue_made_per_request(queue: Queue) -> None:
    """600 producers gone quiet (a Queue object made per web request) among 50 live ones:
    a few sweeps, each bounded, drop them all and keep the live ones."""
    seconds, _ = await queue.redis.time()
    old, fresh = (seconds - 3600) * 1000, seconds * 1000
    key = queue.keys.base + ":producers"
    await queue.redis.hset(key, mapping={**{f"gone-{i}": f"1|{old}" for i in range(600)},
                                         **{f"live-{i}": f"1|{fresh}" for i in range(50)}})
    for _ in range(10):
        await queue.sweep()
        if await queue.redis.hlen(key) == 50:
            break
    assert {f.decode() for f in await producer_fields(queue)} == {f"live-{i}" for i in range(50)}


async def test_a_worker_sweeps_at_its_sweep_interval_even_below_the_stalled_interval(
        queue: Queue, redis_url: str) -> None:
    """``sweep_interval=0.2`` swept only every ``stalled_interval`` (30 s): the maintenance
    loop waited that long between turns (break round 37)."""
    async def noop(_job: Any) -> None:
        return None

    key = queue.keys.base + ":producers"

    async def quiet_record(name: str) -> None:
        seconds, _ = await queue.redis.time()
        await queue.redis.hset(key, name, f"1|{(seconds - 3600) * 1000}")

    async def gone(name: str) -> bool:
        return not await queue.redis.hexists(key, name)

    worker = Worker(queue.name, noop, url=redis_url, sweep_interval=0.2, stalled_interval=30)
    task = asyncio.create_task(worker.run())
    try:
        await quiet_record("first")
        await wait_until(lambda: gone("first"), timeout=10, message="a first sweep")
        await quiet_record("second")  # after that sweep: the next one is due in 0.2 s
        await wait_until(lambda: gone("second"), timeout=10, message="the next sweep")
    finally:
        await worker.close()
        await task


async def test_a_manual_worker_sweeps_too(queue: Queue, redis_url: str) -> None:
    """A queue served by ManualWorkers alone was never swept (break round 37): quiet
    producers' records (and a quiet queue's retention) piled up."""
    key = queue.keys.base + ":producers"
    seconds, _ = await queue.redis.time()
    await queue.redis.hset(key, "quiet", f"1|{(seconds - 3600) * 1000}")
    async with ManualWorker(queue.name, url=redis_url, sweep_interval=0.2) as worker:
        async def swept() -> bool:
            assert await worker.get_next_job() is None
            return not await queue.redis.hexists(key, "quiet")

        await wait_until(swept, timeout=10, message="a sweep")
        await queue.redis.hset(key, "quiet", f"1|{(seconds - 3600) * 1000}")
        await wait_until(swept, timeout=10, message="the next sweep")


async def test_one_sweep_keeps_up_with_twenty_queues_made_a_second(queue: Queue) -> None:
    """A minute of 20 Queues made a second (each a producer of its own), 30 minutes old,
    among 50 live producers: one sweep (a worker's, each minute) drops them all. It
    dropped at most 1,000 and the hash grew by some 600 a minute (break round 37)."""
    seconds, _ = await queue.redis.time()
    old, fresh = (seconds - 3600) * 1000, seconds * 1000
    key = queue.keys.base + ":producers"
    await queue.redis.hset(key, mapping={**{f"gone-{i}": f"1|{old}" for i in range(1200)},
                                         **{f"live-{i}": f"1|{fresh}" for i in range(50)}})
    await queue.sweep()
    left = {f.decode() for f in await producer_fields(queue)}
    assert len(left) < 100, len(left)  # sampling leaves a few behind, for the next sweep
    assert {f"live-{i}" for i in range(50)} <= left
