"""A worker process for tests/test_break23.py: ``python tests/break23_procs.py URL QUEUE
KILL PREFETCH CONCURRENCY``. Each start is recorded in Redis (``<queue base>:starts``,
``<id>|<pid>``). With KILL=1 the process kills itself (SIGKILL) just after the call sent in
the window went out, once a reply with at least 4 held jobs (or, without prefetch, 5 jobs
taken for free slots) waits in ``_incoming``. (After the first calls, a reply of this
worker holds 1-5 jobs, rarely more: a threshold of 6 was at times never met in 900 jobs.)"""

from __future__ import annotations

import asyncio
import os
import signal
import sys
from typing import Any

import redis as syncredis

from minique import Worker
from minique.worker import JOB_FIELDS


async def main(url: str, queue: str, kill: bool, prefetch: bool, concurrency: int) -> None:
    worker: Worker

    async def work(job: Any) -> None:
        await job.queue.redis.rpush(f"{job.queue.keys.base}:starts", f"{job.id}|{os.getpid()}")
        await asyncio.sleep(0.0005 * (int(job.data["i"]) % 7))

    worker = Worker(queue, work, url=url, concurrency=concurrency, prefetch=prefetch,
                    lock_duration=1.0, stalled_interval=0.3)
    send = worker._send_call
    seen = {"calls": 0}

    async def send_call(args: list[Any]) -> Any:
        incoming = worker._incoming
        seen["calls"] += 1
        if kill and incoming is not None and seen["calls"] > 5:
            held = incoming.jobs - incoming.active_n
            if (prefetch and held >= 4) or (not prefetch and incoming.active_n >= 5):
                ids = [incoming.body[i].decode() for i in range(0, len(incoming.body), JOB_FIELDS)]
                # Synchronously: the window stays open (the loop does not turn).
                r = syncredis.Redis.from_url(url)
                r.rpush(f"{worker.keys.base}:window", ",".join(ids), str(incoming.active_n))
                r.close()
                asyncio.get_running_loop().call_later(0.0003, os.kill, os.getpid(),
                                                      signal.SIGKILL)
        return await send(args)

    worker._send_call = send_call  # type: ignore[method-assign]
    await worker.run(handle_signals=True)


if __name__ == "__main__":
    u, q, k, p, c = sys.argv[1:6]
    asyncio.run(main(u, q, k == "1", p == "1", int(c)))
