"""A plain ``await worker.run()`` on the main thread stops gracefully on SIGTERM/SIGINT, as
arq's does; ``handle_signals=False`` leaves the signals to the application."""

from __future__ import annotations

import asyncio
import signal
import subprocess
import sys
import textwrap
from typing import Any

import pytest
from helpers import ROOT, wait_until

from minique import Queue

SCRIPT = textwrap.dedent("""
    import asyncio, sys
    from minique import Worker

    async def slow(job):
        await job.queue.redis.set(job.queue.keys.base + ":started", 1)
        await asyncio.sleep(1.0)
        return "done"

    async def main():
        worker = Worker(sys.argv[2], slow, url=sys.argv[1], concurrency=1)
        await worker.run(**({"handle_signals": False} if sys.argv[3] == "off" else {}))

    asyncio.run(main())
""")


def _start(url: str, queue: str, mode: str) -> subprocess.Popen[bytes]:
    return subprocess.Popen([sys.executable, "-c", SCRIPT, url, queue, mode], cwd=ROOT)


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGINT])
async def test_plain_run_finishes_the_running_job_on_a_signal(
        queue: Queue, redis_url: str, sig: signal.Signals) -> None:
    job = await queue.add("slow", None)
    proc = _start(redis_url, queue.name, "default")
    try:
        await wait_until(lambda: queue.redis.exists(queue.keys.base + ":started"), timeout=15,
                         message="job started")
        proc.send_signal(sig)
        assert await asyncio.to_thread(proc.wait, 15) == 0
        done = await queue.get_job(job.id)
        assert done is not None and done.state == "completed"
        assert await queue.get_workers() == []  # it said goodbye
    finally:
        if proc.poll() is None:
            proc.kill()


async def test_handle_signals_false_leaves_sigterm_to_the_application(
        queue: Queue, redis_url: str, procs: list[Any]) -> None:
    await queue.add("slow", None)
    proc = _start(redis_url, queue.name, "off")
    procs.append(proc)
    await wait_until(lambda: queue.redis.exists(queue.keys.base + ":started"), timeout=15,
                     message="job started")
    proc.send_signal(signal.SIGTERM)
    assert await asyncio.to_thread(proc.wait, 15) == -signal.SIGTERM  # the default action
