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


async def test_dollar_is_taken_when_the_async_with_block_starts(
        queue: Queue, redis_url: str) -> None:
    """"$" (new events only) was taken at the first read: a job added in the block before
    it had its events missed, and a consumer waiting for its completion hung (BullMQ's
    QueueEvents without waitUntilReady)."""
    await queue.add("before", 0)
    async with QueueEvents(queue.name, url=redis_url) as events:
        job = await queue.add("after", 1)
        event = await events.next(timeout=2)
    assert event is not None and (event.name, event.job_id) == ("added", job.id)


def _connected(events: QueueEvents) -> int:
    pool = events._client.connection_pool
    return (len(pool._in_use_connections)
            + sum(1 for c in pool._available_connections if c.is_connected))


async def test_close_while_another_task_iterates_ends_it_and_leaves_no_connection(
        queue: Queue, redis_url: str) -> None:
    """close() while a task waited in a blocking read: redis-py retried the read that the
    closing broke, on a new connection that nothing closed any more (a socket leaked per
    QueueEvents), and the loop ran on until the read's block ran out."""
    events = QueueEvents(queue.name, url=redis_url, block=10.0)
    got: list[Any] = []

    async def consume() -> None:
        async for event in events:
            got.append(event)

    task = asyncio.create_task(consume())
    async def blocked() -> bool:
        return any(c.get("cmd") == "xread" and "b" in c.get("flags", "")
                   for c in await queue.redis.client_list())

    await wait_until(blocked, message="the blocking read in flight")
    await events.close()
    await asyncio.wait_for(task, 3)  # well before the 10 s block
    assert got == [] and _connected(events) == 0
    assert await events.next(timeout=0.1) is None  # closed: no read, no new connection
    assert _connected(events) == 0


async def test_a_block_longer_than_the_socket_timeout_does_not_raise(
        queue: Queue, redis_url: str) -> None:
    """An XREAD that blocks longer than the client's socket timeout (15 s on minique's own
    clients; QueueEvents(block=20) on a quiet queue) raised redis TimeoutError; each read
    now blocks for at most half the socket timeout."""
    from minique.connection import connect

    client = connect(redis_url, socket_timeout=0.3)
    try:
        events = QueueEvents(queue.name, connection=client, block=1.0)
        assert await events.next(timeout=1.0) is None
        job = await queue.add("x", 1)
        event = await events.next(timeout=2)
        assert event is not None and event.job_id == job.id
    finally:
        await client.aclose()


@pytest.mark.parametrize("bad", ["abc", "", "1-2-3", "5-0/-1", "5-0/x", "5-0/1/2", "5-0/",
                                 "+", "-", " 5-0"])
def test_a_malformed_last_id_is_refused_at_once(bad: str) -> None:
    """'5-0/-1' read as the whole entry 5-0 behind (its events silently skipped); the
    others raised only at the first read, some as a redis ResponseError."""
    with pytest.raises(ValueError, match="last_id"):
        QueueEvents("q", url="redis://127.0.0.1:1/0", last_id=bad)


@pytest.mark.parametrize("good", ["$", "0", "0-0", "5-0", "1796100786964-3/12", "17"])
def test_well_formed_last_ids_are_taken(good: str) -> None:
    assert QueueEvents("q", url="redis://127.0.0.1:1/0", last_id=good).last_id == good


async def test_a_consumer_behind_a_trim_goes_on_at_the_oldest_kept_event(
        redis_url: str, qname: str) -> None:
    """Regression guard (passed): a consumer whose stored id (inside a shared entry) was
    trimmed away goes on at the oldest event the stream holds, once each, without a hang."""
    q = Queue(qname, url=redis_url, events_max_len=10)
    try:
        await q.add_bulk([("x", i) for i in range(3)])
        [(first, _)] = await q.redis.xrange(q.keys.events, count=1)
        stored = f"{first.decode()}/1"
        for i in range(300):
            await q.add("y", i)
        await q.redis.xtrim(q.keys.events, maxlen=10)  # what the adds' MAXLEN ~ approaches
        kept = await _events_until(q, "0-0", (await q.redis.xrevrange(
            q.keys.events, count=1))[0][0].decode(), 1000)
        assert not await q.redis.xrange(q.keys.events, first, first)
        got = await _events_until(q, stored, kept[-1].event_id, len(kept))
        assert [e.event_id for e in got] == [e.event_id for e in kept]
    finally:
        await q.obliterate(force=True)
        await q.close()


async def test_waiters_of_jobs_finishing_in_one_call_get_their_own_values(queue: Queue) -> None:
    """Regression guard (passed): jobs with odd ids finish in one script call (shared
    completed entries, values past 16 KiB in all, some over 16 KiB alone, some removed at
    once, hostile bytes); waiters that came before and after each get their own value."""
    ids = [*ODD_IDS, *(f"n{i}" for i in range(12))]
    jobs = await queue.add_bulk([("x", i, {"job_id": jid}) for i, jid in enumerate(ids)])
    values = {jid: ("v" * (30_000 if n % 5 == 0 else 3_000) + jid) if n % 3 else
              jid.encode() + b"\x00\xff:9:" for n, jid in enumerate(ids)}
    before = [asyncio.create_task(job.wait_until_finished(timeout=10)) for job in jobs]
    await wait_until(lambda: len(getattr(queue._event_hub, "_by_job", ())) == len(ids),
                     message="all wait")
    taken = await fetch(queue, len(ids))
    assert len(taken) == len(ids)
    await finish(queue, [complete(i, t, codec.encode(values[i]),
                                  keep=(0, 0) if n % 2 else (-1, -1))
                         for n, (i, t) in enumerate(taken)])
    raw = await queue.redis.xrange(queue.keys.events)
    assert any(f.get(b"ev") == b"completed" and b"ids" in f for _, f in raw)
    assert await asyncio.gather(*before) == [values[j.id] for j in jobs]
    after = await asyncio.gather(*(j.wait_until_finished(timeout=5) for j in jobs))
    assert after == [values[j.id] for j in jobs]


async def test_close_ends_an_iteration_stuck_in_its_first_read(
        queue: Queue, redis_url: str) -> None:
    """close() while the iteration's first read (taking "$") was in flight: that read was
    not cut short (and a broken one was retried on a new connection)."""
    events = QueueEvents(queue.name, url=redis_url)
    stuck = asyncio.Event()

    async def never(*args: Any, **kw: Any) -> Any:
        stuck.set()
        await asyncio.Event().wait()

    events._client.xrevrange = never

    async def consume() -> None:
        async for _ in events:
            raise AssertionError("no event expected")

    task = asyncio.create_task(consume())
    await asyncio.wait_for(stuck.wait(), 5)
    await events.close()
    await asyncio.wait_for(task, 3)
    assert _connected(events) == 0
