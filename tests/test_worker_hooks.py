"""A worker's start-up and shutdown hooks and its ctx (arq's on_startup, on_shutdown and
ctx): docs/guide/workers.md, "Start-up and shutdown hooks"."""

from __future__ import annotations

import asyncio
import logging
import subprocess
import sys
from typing import Any

import pytest
from helpers import ROOT, wait_until

from minique import Queue, Worker


async def test_hooks_run_around_the_jobs_and_share_ctx(queue: Queue, redis_url: str) -> None:
    events: list[str] = []

    async def startup(worker: Worker) -> None:
        assert await worker.redis.ping()  # Redis is reachable by then
        worker.ctx["client"] = "the client"
        events.append("startup")

    async def shutdown(worker: Worker) -> None:
        # After the last job ended and was reported.
        events.append(f"shutdown, {(await queue.get_stats())['completed']} completed")

    async def work(job: Any) -> None:
        events.append(f"job {job.data} with {job.ctx['client']}")

    await queue.add_bulk([("t", i) for i in range(3)])
    worker = Worker(queue.name, work, url=redis_url, on_startup=startup, on_shutdown=shutdown)
    task = asyncio.create_task(worker.run(handle_signals=False))

    async def done() -> bool:
        return (await queue.get_stats())["completed"] == 3
    await wait_until(done, timeout=20, message="3 jobs done")
    await worker.close()
    await task
    assert events[0] == "startup" and events[-1] == "shutdown, 3 completed"
    assert sorted(events[1:-1]) == [f"job {i} with the client" for i in range(3)]
    assert (await queue.get_job((await queue.get_job_ids("completed"))[0])).ctx is None


async def test_a_failing_startup_ends_run_before_any_job_is_taken(
        queue: Queue, redis_url: str) -> None:
    async def startup(worker: Worker) -> None:
        raise ConnectionRefusedError("the database is not there")

    async def work(job: Any) -> None:
        raise AssertionError("no job may run")

    job = await queue.add("t", 1)
    worker = Worker(queue.name, work, url=redis_url, on_startup=startup)
    with pytest.raises(ConnectionRefusedError):
        await asyncio.wait_for(worker.run(handle_signals=False), 20)
    assert await queue.get_state(job.id) == "waiting"


async def test_a_failing_shutdown_is_logged(queue: Queue, redis_url: str,
                                            caplog: pytest.LogCaptureFixture) -> None:
    async def shutdown(worker: Worker) -> None:
        raise RuntimeError("closing the pool failed")

    async def work(job: Any) -> None:
        return None

    worker = Worker(queue.name, work, url=redis_url, on_shutdown=shutdown, burst=True)
    with caplog.at_level(logging.ERROR, logger="minique"):
        await asyncio.wait_for(worker.run(handle_signals=False), 20)
    assert any("on_shutdown failed" in r.getMessage() for r in caplog.records)


def test_hooks_must_be_async_functions() -> None:
    def plain(worker: Worker) -> None:
        return None

    with pytest.raises(TypeError, match="on_startup must be an async function"):
        Worker("q", lambda job: None, on_startup=plain)  # type: ignore[arg-type]


def test_the_worker_command_runs_the_registrys_shutdown_hooks_after_its_workers(
        redis_url: str) -> None:
    import redis

    client = redis.Redis.from_url(redis_url)
    prefix = "hookcmd"
    q = Queue("hooked", url=redis_url, prefix=prefix)
    asyncio.run(_add_two(q, prefix))
    proc = subprocess.run(
        [sys.executable, "-m", "minique", "--log-level", "WARNING", "worker",
         "tests.hook_procs:registry", "--queue", "hooked", "--url", redis_url,
         "--prefix", prefix, "--burst"],
        cwd=ROOT, capture_output=True, timeout=60, text=True)
    assert proc.returncode == 0, proc.stderr
    notes = [n.decode() for n in client.lrange(f"hooks-test:{prefix}", 0, -1)]
    assert notes[0] == "startup" and notes[-2:] == ["shutdown", "shutdown-2"], notes
    assert len([n for n in notes if n.startswith("job ")]) == 2
    assert "a shutdown hook that fails" in proc.stderr  # logged, and the next one ran


async def _add_two(q: Queue, prefix: str) -> None:
    try:
        await q.add_bulk([("t", {"prefix": prefix}) for _ in range(2)])
    finally:
        await q.close()
