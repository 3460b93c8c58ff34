"""Break round 16b: ManualWorker (minique/manual_worker.py) next to real Workers, flows,
dedup, retries and Redis restarts; and held (prefetched) jobs under bursts of controls
(the '<what>|<control version>' message, worker.py). Each test here failed on f7c23a1
and passes on its fix.
Every test is bounded (deadlines, short blocks)."""

from __future__ import annotations

import asyncio
import contextlib
from typing import Any

import pytest

from minique import ManualWorker, Queue
from minique.server import RedisServer


async def _kill_blocked_reads(q: Queue) -> int:
    """Kills the connections blocked in XREAD (the ManualWorker's wait): what a proxy, a
    failover or a Redis restart does to them."""
    killed = 0
    for line in (await q.redis.execute_command("CLIENT", "LIST")).decode().splitlines():
        fields = dict(f.split("=", 1) for f in line.split(" ") if "=" in f)
        if fields.get("cmd") == "xread":
            killed += int(await q.redis.execute_command("CLIENT", "KILL", "ID", fields["id"]))
    return killed


@pytest.mark.parametrize("how", ["redis_restart", "connection_killed"])
async def test_a_blocking_get_next_job_dies_when_its_wait_connection_drops(
        tmp_path: Any, how: str) -> None:
    """What a user sees: the documented loop

        while (job := await worker.get_next_job(block=5.0)) is not None: ...

    crashes with `redis.exceptions.ConnectionError: Connection closed by server` when Redis
    restarts (or the blocked connection is dropped: a failover, a proxy, CLIENT KILL) while
    get_next_job is only *waiting* for work. Nothing was in flight: the XREAD of
    `_wait_for_work` is a wake-up, no state rides on it. BullMQ's getNextJob survives the
    same (Worker.waitForJob catches the error, waits and returns), and minique's own Worker
    does ("every loop survives connection errors"). What should happen: the wait goes on
    (reconnecting) until the block's deadline, and returns the job added once Redis is
    back, here within the 6 s block; at worst None at the deadline, never an exception
    out of a wait."""
    server = RedisServer(directory=str(tmp_path)).start()
    server2: RedisServer | None = None
    q = Queue("r", url=server.url)
    w = ManualWorker("r", url=server.url, stalled_interval=0)
    try:
        task = asyncio.create_task(w.get_next_job(block=6))
        await asyncio.sleep(0.3)
        if how == "redis_restart":
            port = server.port
            server.stop(kill=True)
            await asyncio.sleep(0.3)
            server2 = RedisServer(port=port, directory=str(tmp_path)).start()
        else:
            assert await _kill_blocked_reads(q) == 1
        await asyncio.sleep(0.5)
        await q.add("x", 1)
        job = await asyncio.wait_for(task, 10)
        assert job is not None and job.data == 1
        await w.complete(job)
    finally:
        with contextlib.suppress(Exception):
            await w.close()
        with contextlib.suppress(Exception):
            await q.close()
        if server2 is not None:
            server2.close()
        server.close()
