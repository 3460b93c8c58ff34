"""The worker as people deploy it: real processes, kill -9, SIGTERM, Redis restarts."""

from __future__ import annotations

import asyncio
import os
import signal
from typing import Any

from helpers import start_worker, wait_until

from minique import Queue
from minique.server import RedisServer


async def effects(q: Queue) -> dict[str, int]:
    raw = await q.redis.hgetall(f"{q.keys.base}:effects")
    return {k.decode(): int(v) for k, v in raw.items()}


async def test_kill_9_loses_nothing(redis_url: str, procs: list[Any]) -> None:
    q = Queue("procs", url=redis_url, prefix="kill9")
    await q.obliterate(force=True)
    jobs = await q.add_bulk([("effect", {"sleep": 0.3}) for _ in range(40)])
    fast = ("--lock-duration", "1", "--stalled-interval", "0.25", "--concurrency", "5",
            "--prefix", "kill9")
    victim = start_worker(redis_url, "procs", *fast)
    procs.append(victim)
    await wait_until(lambda: _count(q, 5), timeout=15, message="first jobs in flight")
    in_flight = set(await q.get_job_ids("active", 0, 100))
    victim.send_signal(signal.SIGKILL)
    victim.wait(5)
    # Jobs taken between the listing and the kill stay active until their lease expires.
    in_flight |= set(await q.get_job_ids("active", 0, 100))
    procs.append(start_worker(redis_url, "procs", *fast))
    await wait_until(lambda: _completed(q, 40), timeout=30, message="all 40 jobs completed")
    seen = await effects(q)
    assert set(seen) == {j.id for j in jobs}  # every job's side effect happened
    duplicated = {k for k, v in seen.items() if v > 1}
    assert duplicated <= in_flight  # only jobs in flight at the kill ran twice
    stats = await q.get_stats()
    assert stats["failed"] == 0 and stats["completed"] == 40
    await q.obliterate(force=True)
    await q.close()


async def _count(q: Queue, n: int) -> bool:
    return len(await effects(q)) >= n


async def _completed(q: Queue, n: int) -> bool:
    return (await q.get_stats())["completed"] >= n


async def test_sigterm_lets_the_running_job_finish(redis_url: str, procs: list[Any]) -> None:
    q = Queue("procs", url=redis_url, prefix="term")
    await q.obliterate(force=True)
    job = await q.add("effect", {"sleep": 1.0})
    worker = start_worker(redis_url, "procs", "--prefix", "term")
    procs.append(worker)
    await wait_until(lambda: _count(q, 1), timeout=15, message="job started")
    worker.send_signal(signal.SIGTERM)
    assert await asyncio.to_thread(worker.wait, 15) == 0
    done = await q.get_job(job.id)
    assert done is not None and done.state == "completed" and done.attempts_made == 1
    await q.obliterate(force=True)
    await q.close()


async def test_sigterm_past_the_grace_puts_the_job_back_without_using_an_attempt(
        redis_url: str, procs: list[Any]) -> None:
    q = Queue("procs", url=redis_url, prefix="grace")
    await q.obliterate(force=True)
    job = await q.add("effect", {"sleep": 30}, attempts=1)
    worker = start_worker(redis_url, "procs", "--prefix", "grace", "--shutdown-timeout", "0.2")
    procs.append(worker)
    await wait_until(lambda: _count(q, 1), timeout=15, message="job started")
    worker.send_signal(signal.SIGTERM)
    assert await asyncio.to_thread(worker.wait, 15) == 0
    back = await q.get_job(job.id)
    assert back is not None and back.state == "waiting" and back.attempts_made == 0
    await q.obliterate(force=True)
    await q.close()


async def test_workers_survive_a_redis_restart(procs: list[Any]) -> None:
    server = RedisServer().start()
    try:
        q = Queue("procs", url=server.url, prefix="restart")
        first = await q.add("effect", {"sleep": 0.01})
        worker = start_worker(server.url, "procs", "--prefix", "restart", "--block-timeout", "1")
        procs.append(worker)
        await first.wait_until_finished(timeout=15)
        server.stop(kill=True)
        await asyncio.sleep(1.5)  # the outage: the worker must ride it out, not exit
        assert worker.poll() is None
        server.start()
        q2 = Queue("procs", url=server.url, prefix="restart")
        await wait_until(lambda: _add_ok(q2), timeout=10, message="Redis back")
        job = await q2.add("effect", {"sleep": 0.01})
        assert await job.wait_until_finished(timeout=20) == "done"
        assert worker.poll() is None  # the same process, reconnected by itself
        await q.close()
        await q2.close()
    finally:
        server.close()


async def _add_ok(q: Queue) -> bool:
    try:
        return bool(await q.redis.ping())
    except Exception:
        return False


async def test_rate_limit_holds_across_two_processes(redis_url: str, procs: list[Any]) -> None:
    q = Queue("procs", url=redis_url, prefix="rl")
    await q.obliterate(force=True)
    await q.add_bulk([("stamp", None) for _ in range(45)])
    args = ("--prefix", "rl", "--limiter-max", "15", "--limiter-duration", "0.5", "--concurrency", "20")
    procs.extend([start_worker(redis_url, "procs", *args), start_worker(redis_url, "procs", *args)])
    await wait_until(lambda: _completed(q, 45), timeout=30, message="45 jobs done")
    starts = sorted(float(x) for x in await q.redis.lrange(f"{q.keys.base}:starts", 0, -1))
    assert len(starts) == 45
    for i, s in enumerate(starts):
        window = [t for t in starts[i:] if t < s + 0.5]
        assert len(window) <= 15, f"{len(window)} starts within 0.5 s from {s}"
    assert starts[-1] - starts[0] >= 1.0  # 45 jobs at 15 per 0.5 s need two windows more
    await q.obliterate(force=True)
    await q.close()


async def test_supervisor_restarts_a_dead_child(redis_url: str, procs: list[Any]) -> None:
    q = Queue("procs", url=redis_url, prefix="sup")
    await q.obliterate(force=True)
    sup = start_worker(redis_url, "procs", "--prefix", "sup", "--processes", "2")
    procs.append(sup)
    await wait_until(lambda: _workers(q, 2), timeout=20, message="two children live")
    victim = (await q.get_workers())[0]
    os.kill(victim.pid, signal.SIGKILL)
    await wait_until(lambda: _new_pid(q, victim.pid), timeout=20, message="child restarted")
    sup.send_signal(signal.SIGTERM)
    assert await asyncio.to_thread(sup.wait, 20) == 0
    await q.obliterate(force=True)
    await q.close()


async def _workers(q: Queue, n: int) -> bool:
    return len(await q.get_workers()) >= n


async def _new_pid(q: Queue, old: int) -> bool:
    pids = {w.pid for w in await q.get_workers() if w.last_seen}
    # The dead child's heartbeat lingers until its TTL; wait for a third pid to appear.
    return len(pids - {old}) >= 2


async def test_worker_command_applies_the_registry_worker_options(redis_url: str,
                                                                 procs: list[Any]) -> None:
    q = Queue("procs", url=redis_url, prefix="regopts")
    await q.obliterate(force=True)
    await q.add_bulk([("stamp", None) for _ in range(15)])
    procs.append(start_worker(redis_url, "procs", "--prefix", "regopts",
                              target="tests.procs:limited"))
    await wait_until(lambda: _completed(q, 15), timeout=30, message="15 jobs done")
    starts = sorted(float(x) for x in await q.redis.lrange(f"{q.keys.base}:starts", 0, -1))
    for i, s in enumerate(starts):
        assert len([t for t in starts[i:] if t < s + 0.5]) <= 5
    assert starts[-1] - starts[0] >= 1.0  # the registry's 5 per 0.5 s limiter was applied
    [info] = await q.get_workers()
    assert info.concurrency == 7
    await q.obliterate(force=True)
    await q.close()


async def test_worker_command_takes_backoff_strategies_from_the_registry(
        redis_url: str, procs: list[Any], qname: str) -> None:
    """A custom backoff type could not be given to `minique worker` (no option, no flag):
    every job that named it failed for good at its first failure."""
    q = Queue("procs", url=redis_url, prefix=qname)
    job = await q.add("fails", None, attempts=2, backoff={"type": "tenth"})
    procs.append(start_worker(redis_url, "procs", "--prefix", qname,
                              target="tests.procs:with_backoff"))

    async def failed() -> bool:
        return await job.get_state() == "failed"

    await wait_until(failed, timeout=30, message="the job failed for good")
    done = await q.get_job(job.id)
    assert done is not None and done.attempts_made == 2, "the second attempt never ran"
    assert "not registered" not in (done.failed_reason or "")
    await q.obliterate(force=True)
    await q.close()


async def test_a_worker_made_from_the_registry_takes_its_backoff_strategies(
        redis_url: str, qname: str) -> None:
    """Registry(worker_options={"backoff_strategies": ...}) reached `minique worker` only:
    an app's own Worker(registry) (and MiniqueTesting, built on it) failed the job for good,
    "strategy 'tenth' is not registered on this worker"."""
    from minique import Worker
    from tests.procs import with_backoff

    q = Queue("procs", url=redis_url, prefix=qname)
    job = await q.add("fails", None, attempts=2, backoff={"type": "tenth"})
    worker = Worker("procs", with_backoff, url=redis_url, prefix=qname)
    assert set(worker.backoff_strategies) == {"tenth"}
    task = asyncio.create_task(worker.run(handle_signals=False))
    try:
        async def failed() -> bool:
            return await job.get_state() == "failed"

        await wait_until(failed, timeout=30, message="the job failed for good")
        done = await q.get_job(job.id)
        assert done is not None and done.attempts_made == 2
    finally:
        await worker.close()
        await asyncio.wait_for(task, 10)
        await q.obliterate(force=True)
        await q.close()
