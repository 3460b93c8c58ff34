"""Break run of the events stream and of waiting for results (QueueEvents, resuming by
event id, shared entries, the waiters' shared reader)."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest
from driver import complete, fetch, finish
from helpers import wait_until

from minique import Queue, QueueEvents, codec, waiter


class Gate:
    """Holds the waiters' shared reader before each read while closed: a reader that lags
    behind the stream (a busy loop, a slow link), made deterministic."""

    def __init__(self, monkeypatch: pytest.MonkeyPatch) -> None:
        self.open = asyncio.Event()
        self.open.set()
        self.reads = 0
        real = waiter.read_events

        async def gated(*args: Any, **kw: Any) -> Any:
            await self.open.wait()
            self.reads += 1
            return await real(*args, **kw)

        monkeypatch.setattr(waiter, "read_events", gated)


@pytest.mark.parametrize("first_ends", ["completed", "removed"])
async def test_a_reused_id_never_gets_the_old_jobs_outcome_from_a_lagging_reader(
        queue: Queue, monkeypatch: pytest.MonkeyPatch, first_ends: str) -> None:
    """The waiters' shared reader lags behind the stream (gated here); a job id is used
    again after its first job ended and was removed. The old job's outcome event, which
    the reader meets after the new job's waiter came, answered that waiter: the old
    return value ('results of another task'), or JobNotFound for a job that exists."""
    gate = Gate(monkeypatch)
    other = await queue.add("x", 0)
    other_wait = asyncio.create_task(other.wait_until_finished(timeout=30))
    await wait_until(lambda: gate.reads > 0, message="the reader runs")
    gate.open.clear()
    first = await queue.add("x", 1, job_id="report")
    [(jid, tok)] = await fetch(queue, 1)
    assert jid == other.id
    await finish(queue, [complete(jid, tok, codec.encode("other"))])
    if first_ends == "completed":
        [(jid, tok)] = await fetch(queue, 1)
        assert jid == first.id
        await finish(queue, [complete(jid, tok, codec.encode("old"), keep=(0, 0))])
    else:
        assert await first.remove()
    assert not await queue.redis.exists(queue.keys.job("report"))
    second = await queue.add("x", 2, job_id="report")
    waiting = asyncio.create_task(second.wait_until_finished(timeout=5))
    # Its first read of the job is done (it is waiting) before the reader goes on.
    await wait_until(lambda: "report" in queue._event_hub._by_job, message="registered")
    await wait_until(lambda: queue._event_hub.reads._value == waiter.READS_AT_ONCE,
                     message="first read done")
    gate.open.set()
    assert await other_wait == "other"
    [(jid, tok)] = await fetch(queue, 1)
    await finish(queue, [complete(jid, tok, codec.encode("new"))])
    assert await waiting == "new"

ODD_IDS = ["a:b", "5:x|y", "s/l/a/s/h", "ü-名前-🙂", "1:" + "é" * 255, "7|re|x", "{br}", "0:"]


async def _stream_of_every_kind(queue: Queue) -> dict[str, Any]:
    """Shared entries (bulk added+waiting, active, completed with values and empty ones),
    one-job entries, a then-entry, odd ids, a value over 16 KiB, hostile bytes."""
    jobs = await queue.add_bulk([("x", i, {"job_id": jid}) for i, jid in enumerate(ODD_IDS)])
    jobs += await queue.add_bulk([("x", i) for i in range(2)])
    taken = await fetch(queue, 20)
    assert len(taken) == len(jobs)
    values = [codec.encode("v" * 20_000), codec.encode(b"3:ab\x00\xff"), b"\xc0"]
    await finish(queue, [complete(i, t, values[n % 3]) for n, (i, t) in enumerate(taken[:7])])
    await queue.add("single", 1)
    await finish(queue, [complete(i, t, codec.encode(i)) for i, t in taken[7:]])
    # What each completed event carries (None: a value over 16 KiB stays with the job).
    carried = [None, b"3:ab\x00\xff", None]
    return {i: carried[n % 3] if n < 7 else i for n, (i, _) in enumerate(taken)}


async def _events_until(queue: Queue, last_id: str, until: str, limit: int) -> list[Any]:
    """The events after ``last_id`` up to the one named ``until`` (at most ``limit``)."""
    events = QueueEvents(queue.name, connection=queue.redis, last_id=last_id)
    out: list[Any] = []
    try:
        while len(out) < limit and (not out or out[-1].event_id != until):
            event = await events.next(timeout=2)
            assert event is not None, f"after {last_id}: no event after {out}"
            out.append(event)
        return out
    finally:
        await events.close()


async def test_resuming_at_every_event_id_yields_each_later_event_once(queue: Queue) -> None:
    """Regression guard (passed): from every event id of a stream with every kind of entry,
    QueueEvents yields each later event once, through next() and through async for left
    after each event; the values of odd ids and hostile bytes come out intact."""
    carried = await _stream_of_every_kind(queue)
    last = (await queue.redis.xrevrange(queue.keys.events, count=1))[0][0].decode()
    everything = await _events_until(queue, "0-0", last, 1000)
    assert any(e.index > 0 for e in everything)
    ids = [e.event_id for e in everything]
    assert len(set(ids)) == len(ids)
    assert ids[-1] == last
    for n, event in enumerate(everything[:-1]):
        got = await _events_until(queue, event.event_id, last, len(ids))
        assert [e.event_id for e in got] == ids[n + 1:], f"resumed at {event.event_id}"
        # The same through async for, leaving the loop after each event.
        qe = QueueEvents(queue.name, connection=queue.redis, last_id=event.event_id)
        seen: list[str] = []
        while len(seen) < min(3, len(ids) - n - 1):
            async for e in qe:
                seen.append(e.event_id)
                break
        await qe.close()
        assert seen == ids[n + 1:n + 4]
    done = {e.job_id: e.return_value for e in everything if e.name == "completed"}
    assert done == carried and set(ODD_IDS) <= set(done)
