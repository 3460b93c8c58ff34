"""Events in order, progress, logs, and waiting for results."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest
from driver import complete, fetch, finish

from minique import JobFailed, Queue, QueueEvents, Worker


async def test_events_in_order_for_a_lifecycle(queue: Queue, redis_url: str) -> None:
    events = QueueEvents(queue.name, url=redis_url, last_id="0-0")

    async def proc(job: Any) -> str:
        await job.update_progress(40)
        return "ok"

    job = await queue.add("x", {"secret": "not in events"})
    worker = Worker(queue.name, proc, url=redis_url)
    task = asyncio.create_task(worker.run())
    seen: list[tuple[str, str | None]] = []
    while not seen or seen[-1][0] != "completed":
        event = await events.next(timeout=5)
        assert event is not None, f"no event after {seen}"
        seen.append((event.name, event.job_id))
        assert "not in events" not in str(event.fields)
    assert seen == [("added", job.id), ("waiting", job.id), ("active", job.id),
                    ("progress", job.id), ("completed", job.id)]
    await events.close()
    await worker.close()
    await task


async def test_events_resume_after_an_id(queue: Queue, redis_url: str) -> None:
    await queue.add("a", 1)
    first = [e async for e in _take(QueueEvents(queue.name, url=redis_url, last_id="0-0"), 2)]
    await queue.add("b", 2)
    resumed = QueueEvents(queue.name, url=redis_url, last_id=first[-1].event_id)
    later = [e async for e in _take(resumed, 2)]
    assert [e.name for e in later] == ["added", "waiting"] and later[0].fields["name"] == "b"


async def _take(events: QueueEvents, n: int) -> Any:
    async for event in events:
        yield event
        n -= 1
        if n == 0:
            break
    await events.close()


async def test_events_stream_is_capped(redis_url: str, qname: str) -> None:
    q = Queue(qname, url=redis_url, events_max_len=100)
    await q.add_bulk([("x", i) for i in range(1000)])
    assert await q.redis.xlen(q.keys.events) < 400  # MAXLEN ~ trims whole nodes
    await q.obliterate(force=True)
    await q.close()


async def test_wait_until_finished_on_an_already_finished_job(queue: Queue) -> None:
    job = await queue.add("x", 1)
    [(job_id, token)] = await fetch(queue, 1)
    from minique import codec

    await finish(queue, [complete(job_id, token, codec.encode({"r": 1}))])
    assert await job.wait_until_finished(timeout=1) == {"r": 1}
    with pytest.raises(TimeoutError):
        await (await queue.add("y", 1)).wait_until_finished(timeout=0.2)


async def test_wait_until_finished_raises_the_failure(queue: Queue, redis_url: str) -> None:
    async def proc(job: Any) -> None:
        raise KeyError("missing-thing")

    job = await queue.add("x", 1)
    worker = Worker(queue.name, proc, url=redis_url)
    task = asyncio.create_task(worker.run())
    with pytest.raises(JobFailed, match="missing-thing") as info:
        await job.wait_until_finished(timeout=5)
    assert info.value.job_id == job.id
    await worker.close()
    await task


async def test_progress_and_logs(queue: Queue) -> None:
    job = await queue.add("x", 1, keep_logs=3)
    await job.update_progress(42)
    assert (await queue.get_job(job.id)).progress == 42  # type: ignore[union-attr]
    await job.update_progress({"page": 3, "of": 10})
    assert (await queue.get_job(job.id)).progress == {"page": 3, "of": 10}  # type: ignore[union-attr]
    for i in range(5):
        await job.log(f"line {i}")
    assert await queue.get_job_logs(job.id) == ["line 2", "line 3", "line 4"]
    with pytest.raises(ValueError, match="between 0 and 100"):
        await job.update_progress(101)
    with pytest.raises(TypeError):
        await job.update_progress("half")  # type: ignore[arg-type]
    from minique import JobNotFound

    with pytest.raises(JobNotFound):
        await queue.update_progress("missing", 5)


async def test_metrics_count_per_minute_and_totals(queue: Queue) -> None:
    await queue.add_bulk([("x", i) for i in range(5)])
    taken = await fetch(queue, 5)
    from driver import fail, retry

    await finish(queue, [complete(*taken[0]), complete(*taken[1]), fail(*taken[2]),
                         retry(*taken[3])])
    metrics = await queue.get_metrics(minutes=5)
    assert len(metrics["minutes"]) == 5 and sum(metrics["completed"]) == 2
    assert sum(metrics["failed"]) == 1
    assert metrics["totals"] == {"completed": 2, "failed": 1, "retried": 1, "stalled": 0}


async def test_a_progress_event_carries_the_value(queue: Queue, redis_url: str) -> None:
    """A progress event gives the value as update_progress got it (a number or a dict);
    its MessagePack bytes were read as text into event.fields["pg"] (50 came out as '2')."""
    events = QueueEvents(queue.name, url=redis_url, last_id="0-0")
    job = await queue.add("x", 1)
    await job.update_progress(50)
    await job.update_progress({"page": 3, "of": 10, "note": "é"})
    await job.update_progress({"big": "x" * 300})  # over 256 bytes: stays with the job
    seen: list[Any] = []
    try:
        while len(seen) < 3:
            event = await events.next(timeout=5)
            assert event is not None, f"no progress event after {seen}"
            if event.name == "progress":
                assert event.job_id == job.id and "pg" not in event.fields
                seen.append(event.progress)
            else:
                assert event.progress is None
    finally:
        await events.close()
    assert seen == [50, {"page": 3, "of": 10, "note": "é"}, None]
    stored = await queue.get_job(job.id)
    assert stored is not None and stored.progress == {"big": "x" * 300}
