"""A reply's jobs are made into buffered jobs only after the worker's next call has gone
(minique/worker.py ``_start_jobs``), so that Redis works on that call meanwhile. In that
window a control (a pause here) must reach them as if they had been buffered: they go
back, none starts."""

from __future__ import annotations

import asyncio
from typing import Any

from helpers import wait_until

from minique import Queue, Worker
from minique.worker import JOB_FIELDS


async def test_a_pause_between_a_reply_and_the_start_of_its_jobs_sends_them_back(
        queue: Queue, redis_url: str) -> None:
    started: list[str] = []

    async def work(job: Any) -> None:
        started.append(job.id)
        # Ends spread out: some end while a call is out, so results wait at its reply.
        await asyncio.sleep(0.0005 * (int(job.data["i"]) % 7))

    await queue.add_bulk([("t", {"i": i}) for i in range(400)])
    # Without prefetch every job of a reply is taken for a free slot (held ones would go
    # back on any control through their hold's end; these only by the check).
    worker = Worker(queue.name, work, url=redis_url, concurrency=20, prefetch=False)
    send = worker._send_call
    caught: dict[str, Any] = {}

    async def send_call(args: list[Any]) -> Any:
        incoming = worker._incoming
        # A reply whose jobs wait for this call to go.
        if not caught and incoming is not None and incoming.active_n > 0:
            body = incoming.body
            caught["ids"] = {body[i].decode() for i in range(0, len(body), JOB_FIELDS)}
            caught["before"] = len(started)
            await worker.pause(wait_active=False)
        return await send(args)

    worker._send_call = send_call  # type: ignore[method-assign]
    task = asyncio.create_task(worker.run())
    try:
        await wait_until(lambda: "ids" in caught, timeout=20,
                         message="a reply with active jobs left for after the next call")
        # Paused: what was running ends, and every job of that reply is back in the queue.
        async def back() -> bool:
            if worker._running:
                return False
            states = [await queue.redis.hget(queue.keys.job(i), "st") for i in caught["ids"]]
            return all(s == b"waiting" for s in states)
        await wait_until(back, timeout=10, message="the reply's jobs back to waiting")
        assert not caught["ids"] & set(started), "a job of the reply started after the pause"
        worker.resume()
        await wait_until(lambda: len(started) >= 400, timeout=30, message="all jobs run")
        await wait_until(lambda: _completed(queue, 400), timeout=10, message="all completed")
        assert len(started) == len(set(started)) == 400  # each once
    finally:
        await worker.close(timeout=2)
        await task


async def _completed(queue: Queue, n: int) -> bool:
    return (await queue.get_stats())["completed"] == n
