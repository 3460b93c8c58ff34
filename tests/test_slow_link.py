"""A worker whose Redis is far away (a round trip longer than the hold it is granted)."""

from __future__ import annotations

import asyncio
from typing import Any

from helpers import wait_until

from minique import Queue, Worker


async def test_a_worker_whose_round_trip_outlasts_the_hold_stops_holding_jobs(
        redis_url: str, qname: str) -> None:
    """A held job may start only within the 50 ms hold, counted from when the call was
    sent. Over a link slower than that, every held job came back after its hold had run
    out and was handed straight back: each call took up to 200 jobs only to return them
    with the next, doubling Redis's work for nothing. The worker now stops holding jobs
    while its round trips take more than half the hold."""
    q = Queue(qname, url=redis_url)

    async def noop(job: Any) -> None:
        return None

    w = Worker(qname, noop, url=redis_url, concurrency=2)
    handed_back: list[str] = []
    push = w._push

    def counting_push(job: Any, kind: str, *rest: Any) -> None:
        if kind == "h":
            handed_back.append(job.id)
        push(job, kind, *rest)

    w._push = counting_push  # type: ignore[method-assign]
    send = w._send_call

    async def far_away(args: list[Any]) -> Any:
        await asyncio.sleep(0.06)  # a round trip of 60 ms at least
        return await send(args)

    w._send_call = far_away  # type: ignore[method-assign]
    task = asyncio.create_task(w.run(handle_signals=False))
    try:
        await q.add_bulk([("t", None) for _ in range(200)])

        async def done() -> bool:
            return (await q.get_stats())["completed"] >= 200
        await wait_until(done, timeout=60, message="200 jobs done")
        # Measured before: 15,937 hand-backs for 600 jobs; now the first slow call's.
        assert len(handed_back) <= 30, (
            f"{len(handed_back)} held jobs handed back unstarted for 200 jobs run")
    finally:
        await w.close()
        await task
        await q.obliterate(force=True)
        await q.close()
