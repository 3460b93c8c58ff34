"""Sync (plain ``def``) processors: a timeout, a cancel or a shutdown never lets two attempts
of one job run at once, a timeout counts only the job's own running time, and the
concurrency limit counts code that still runs. Threads are waited for; ``processes=N``
children are killed. Real worker processes where the scenario is about deployment."""

from __future__ import annotations

import asyncio
import os
import signal
import threading
from collections.abc import AsyncIterator
from typing import Any

import pytest
from helpers import start_worker, wait_until
from procs import sync_outcome, sync_run

from minique import JobFailed, Queue, Worker
from minique.job import Job
from minique.options import StoredOptions
from minique.sync_runner import ThreadRunner


@pytest.fixture
async def q(redis_url: str, qname: str) -> AsyncIterator[Queue]:
    queue = Queue("procs", url=redis_url, prefix=qname)
    yield queue
    await queue.obliterate(force=True)
    await queue.close()


def data(q: Queue, url: str, key: str, sleep: float, every: bool = False) -> dict[str, Any]:
    return {"url": url, "key": f"{q.keys.base}:{key}", "gauge": f"{q.keys.base}:gauge",
            "sleep": sleep, "every": every}


async def trace(q: Queue, key: str) -> list[list[str]]:
    return [e.decode().split() for e in await q.redis.lrange(f"{q.keys.base}:{key}:log", 0, -1)]


async def most_at_once(q: Queue) -> int:
    return int(await q.redis.get(f"{q.keys.base}:gauge:max") or 0)


async def state(q: Queue, job_id: str) -> str | None:
    job = await q.get_job(job_id)
    return job.state if job else None


def worker(url: str, q: Queue, *args: str) -> Any:
    prefix = q.keys.base[1:-len(":procs}")]
    return start_worker(url, "procs", "--prefix", prefix, "--lock-duration", "1", *args)


async def worker_on(url: str, qname: str, q: Queue, key: str,
                    **options: Any) -> tuple[Worker, asyncio.Task[None]]:
    """An in-process worker, returned once the job that logs under ``key`` runs."""
    w = Worker("procs", sync_run, url=url, prefix=qname, **options)
    task = asyncio.create_task(w.run())
    await wait_until(lambda: _started(q, [key]), timeout=30, message="job running")
    return w, task


async def test_a_timed_out_thread_keeps_its_slot_and_the_retry_waits_for_it(
        redis_url: str, q: Queue, procs: list[Any]) -> None:
    """The issue's scenario: a 1.5 s sync job, timeout 0.3 s, 2 attempts, concurrency 2.
    The retry starts only after the first attempt's thread returned, and the job fails
    (timed out) only after the second one's returned."""
    job = await q.add("sync_run", data(q, redis_url, "a", 1.5, every=True), timeout=0.3,
                      attempts=2)
    procs.append(worker(redis_url, q, "--concurrency", "2"))
    with pytest.raises(JobFailed, match=r"timed out after 0\.3s"):
        await job.wait_until_finished(timeout=20)
    # Both attempts ran to their end before the job failed, one after the other.
    assert [e[:3] for e in await trace(q, "a")] == [
        ["start", "0", "1"], ["end", "0"], ["start", "1", "1"], ["end", "1"]]
    done = await q.get_job(job.id)
    assert done is not None and done.attempts_made == 2 and done.attempts_started == 2


async def test_a_healthy_job_is_not_timed_out_by_threads_that_overran(
        redis_url: str, q: Queue, procs: list[Any]) -> None:
    """Both slots held by attempts that overran their timeout: the next job waits for a
    slot (its timeout not ticking) and then runs; never more bodies at once than slots."""
    slow = [await q.add("sync_run", data(q, redis_url, f"slow{i}", 1.5), timeout=0.3,
                        attempts=1) for i in range(2)]
    procs.append(worker(redis_url, q, "--concurrency", "2"))
    await wait_until(lambda: _started(q, ["slow0", "slow1"]), timeout=15,
                     message="both slow jobs running")
    healthy = await q.add("sync_run", data(q, redis_url, "ok", 0), timeout=0.5, attempts=1)
    assert await healthy.wait_until_finished(timeout=20) == "slept"
    for job in slow:
        with pytest.raises(JobFailed, match=r"timed out after 0\.3s"):
            await job.wait_until_finished(timeout=5)
    assert await most_at_once(q) == 2


async def _started(q: Queue, keys: list[str]) -> bool:
    for key in keys:
        if not await trace(q, key):
            return False
    return True


async def test_cancel_of_a_running_thread_ends_the_job_when_the_thread_returns(
        redis_url: str, q: Queue, procs: list[Any]) -> None:
    job = await q.add("sync_run", data(q, redis_url, "c", 1.0), attempts=3)
    procs.append(worker(redis_url, q))
    await wait_until(lambda: _started(q, ["c"]), timeout=15, message="job running")
    assert await q.cancel(job.id)
    with pytest.raises(JobFailed, match="cancelled"):
        await job.wait_until_finished(timeout=10)
    # The job stayed active (leased) until its code had returned: no second attempt.
    assert [e[:2] for e in await trace(q, "c")] == [["start", "0"], ["end", "0"]]


async def test_close_waits_for_a_running_thread_and_keeps_its_real_outcome(
        redis_url: str, qname: str, q: Queue) -> None:
    job = await q.add("sync_run", data(q, redis_url, "w", 1.0), attempts=1)
    w, task = await worker_on(redis_url, qname, q, "w", concurrency=1)
    await w.close(timeout=0.1)
    await task
    # A thread cannot be stopped: it ran to its end under the lease, so its result counts
    # and the job is not handed to another worker while it still ran.
    assert [e[:2] for e in await trace(q, "w")] == [["start", "0"], ["end", "0"]]
    done = await q.get_job(job.id)
    assert done is not None and done.state == "completed" and done.attempts_started == 1


async def test_sigterm_waits_for_a_running_thread(redis_url: str, q: Queue,
                                                  procs: list[Any]) -> None:
    job = await q.add("sync_run", data(q, redis_url, "t", 1.5), attempts=1)
    proc = worker(redis_url, q, "--shutdown-timeout", "0.2")
    procs.append(proc)
    await wait_until(lambda: _started(q, ["t"]), timeout=15, message="job running")
    proc.send_signal(signal.SIGTERM)
    assert await asyncio.to_thread(proc.wait, 15) == 0
    assert [e[:2] for e in await trace(q, "t")] == [["start", "0"], ["end", "0"]]
    done = await q.get_job(job.id)
    assert done is not None and done.state == "completed" and done.attempts_started == 1


# ----- processes=N: the child is killed -----------------------------------------------------


async def test_processes_kill_a_timed_out_child_before_the_retry(
        redis_url: str, q: Queue, procs: list[Any]) -> None:
    """The first attempt's child is killed at its deadline and is dead when the retry
    starts; the retry's timeout does not count its wait for a child."""
    job = await q.add("sync_run", data(q, redis_url, "p", 30), timeout=0.5, attempts=2)
    procs.append(worker(redis_url, q, "--cpu-processes", "1", "--concurrency", "2"))
    assert await job.wait_until_finished(timeout=30) == "slept"
    log = await trace(q, "p")
    assert [e[:3] for e in log] == [["start", "0", "1"], ["start", "1", "2"], ["end", "1"]]
    assert log[1][4] == "dead"  # the first attempt's process, when the second started
    done = await q.get_job(job.id)
    assert done is not None and done.failed_reason and "timed out after 0.5s" in done.failed_reason


async def test_processes_cancel_kills_the_child(redis_url: str, qname: str, q: Queue) -> None:
    job = await q.add("sync_run", data(q, redis_url, "k", 30), attempts=3)
    w, task = await worker_on(redis_url, qname, q, "k", processes=1)
    assert await q.cancel(job.id)
    with pytest.raises(JobFailed, match="cancelled"):
        await job.wait_until_finished(timeout=10)
    pid = int((await trace(q, "k"))[0][3])
    assert not _alive(pid)  # dead (and reaped) before the job was failed
    await w.close()
    await task


async def test_processes_close_kills_the_child_and_returns_the_job(
        redis_url: str, qname: str, q: Queue) -> None:
    job = await q.add("sync_run", data(q, redis_url, "s", 30), attempts=1)
    w, task = await worker_on(redis_url, qname, q, "s", processes=1)
    await asyncio.wait_for(w.close(timeout=0.2), 10)
    await task
    pid = int((await trace(q, "s"))[0][3])
    assert not _alive(pid)
    back = await q.get_job(job.id)
    assert back is not None and back.state == "waiting" and back.attempts_made == 0


async def test_sigterm_with_processes_kills_the_child_after_the_grace(
        redis_url: str, q: Queue, procs: list[Any]) -> None:
    job = await q.add("sync_run", data(q, redis_url, "g", 30), attempts=1)
    proc = worker(redis_url, q, "--cpu-processes", "1", "--shutdown-timeout", "0.2")
    procs.append(proc)
    await wait_until(lambda: _started(q, ["g"]), timeout=30, message="job running")
    proc.send_signal(signal.SIGTERM)
    assert await asyncio.to_thread(proc.wait, 15) == 0
    pid = int((await trace(q, "g"))[0][3])
    assert not _alive(pid)
    back = await q.get_job(job.id)
    assert back is not None and back.state == "waiting" and back.attempts_made == 0


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return True


async def test_processes_carry_outcomes_and_survive_a_dead_child(redis_url: str, qname: str,
                                                                 q: Queue) -> None:
    """A child that exits mid-job fails that attempt only (a fresh child runs the retry);
    UnrecoverableError and Delayed keep their meaning across the process boundary."""
    def outcome(first: str) -> dict[str, Any]:
        return {"url": redis_url, "key": f"{q.keys.base}:outcome:{first}", "first": first}

    exits = await q.add("sync_outcome", outcome("exit"), attempts=2)
    bad = await q.add("sync_outcome", outcome("unrecoverable"), attempts=3)
    later = await q.add("sync_outcome", outcome("delayed"), attempts=1)
    w = Worker("procs", sync_outcome, url=redis_url, prefix=qname, processes=1)
    task = asyncio.create_task(w.run())
    assert await exits.wait_until_finished(timeout=30) == "ok"
    assert await later.wait_until_finished(timeout=30) == "ok"
    with pytest.raises(JobFailed, match="UnrecoverableError: bad input"):
        await bad.wait_until_finished(timeout=30)
    done = await q.get_job(exits.id)
    assert done is not None and "died (exit code 3)" in (done.failed_reason or "")
    failed = await q.get_job(bad.id)
    assert failed is not None and failed.attempts_made == 1
    await w.close()
    await task


async def test_kill_9_of_the_worker_takes_its_job_processes_along(
        redis_url: str, q: Queue, procs: list[Any]) -> None:
    """Else the job's code would run on beside the attempt that another worker starts once
    the lease expires."""
    await q.add("sync_run", data(q, redis_url, "o", 30), attempts=2)
    proc = worker(redis_url, q, "--cpu-processes", "1")
    procs.append(proc)
    await wait_until(lambda: _started(q, ["o"]), timeout=30, message="job running")
    pid = int((await trace(q, "o"))[0][3])
    proc.send_signal(signal.SIGKILL)
    await wait_until(lambda: not _alive(pid), timeout=10, message="the job's process gone")


# ----- the thread runner on its own ---------------------------------------------------------


async def test_thread_runner_times_only_the_call_and_withdraws_what_never_started(
        queue: Queue) -> None:
    def job(job_id: str) -> Job:
        return Job(queue, job_id, "x", None, StoredOptions())

    release = threading.Event()
    ran: list[str] = []

    def hold(j: Job) -> str:
        ran.append(j.id)
        release.wait(10)
        return j.id

    def own_timeout(j: Job) -> None:
        raise TimeoutError("upstream")

    runner = ThreadRunner(1)
    first = asyncio.create_task(runner.run(hold, job("a"), None))
    await wait_until(lambda: ran == ["a"], message="the one thread busy")
    # Queued behind "a" far longer than its own timeout: the wait does not count.
    queued = asyncio.create_task(runner.run(lambda j: j.id, job("b"), 0.05))
    never = asyncio.create_task(runner.run(hold, job("c"), None))
    await asyncio.sleep(0)
    never.cancel()  # not started: withdrawn at once, never runs
    with pytest.raises(asyncio.CancelledError):
        await never
    await asyncio.sleep(0.1)  # "b" waits past its timeout for the thread
    release.set()
    assert await first == "a" and await queued == "b" and ran == ["a"]
    with pytest.raises(TimeoutError, match=r"^upstream$"):  # the processor's own, not ours
        await runner.run(own_timeout, job("d"), 5.0)
    runner.shutdown()


async def test_an_async_processors_own_timeout_error_is_not_taken_for_the_jobs(
        queue: Queue, redis_url: str) -> None:
    async def upstream(job: Any) -> None:
        raise TimeoutError("upstream")

    job = await queue.add("x", None, timeout=5, attempts=1)
    w = Worker(queue.name, upstream, url=redis_url)
    task = asyncio.create_task(w.run())
    with pytest.raises(JobFailed, match="TimeoutError: upstream"):
        await job.wait_until_finished(timeout=10)
    await w.close()
    await task


async def test_max_tasks_per_child_starts_a_fresh_child_after_that_many_jobs(
        redis_url: str, qname: str, q: Queue) -> None:
    """Celery's max_tasks_per_child: each child runs at most 2 jobs; no job is lost or run
    twice across the changes of child."""
    from procs import child_pid

    jobs = await q.add_bulk([("child_pid", i) for i in range(5)])
    w = Worker("procs", child_pid, url=redis_url, prefix=qname, processes=1,
               max_tasks_per_child=2, concurrency=1)
    task = asyncio.create_task(w.run())
    try:
        pids = [await j.wait_until_finished(timeout=30) for j in jobs]
    finally:
        await w.close()
        await task
    assert len(set(pids)) == 3 and pids[0] == pids[1] and pids[2] == pids[3] != pids[0]
    assert os.getpid() not in pids
    assert all(not _alive(p) for p in pids)  # retired children exited and were reaped
    assert (await q.get_stats())["completed"] == 5


@pytest.mark.parametrize("options", [{"max_tasks_per_child": 0, "processes": 1},
                                     {"max_tasks_per_child": 2},
                                     {"max_tasks_per_child": True, "processes": 1}])
def test_max_tasks_per_child_needs_processes_and_a_count(redis_url: str,
                                                         options: dict[str, Any]) -> None:
    with pytest.raises(ValueError, match="max_tasks_per_child must be an integer >= 1"):
        Worker("procs", lambda j: None, url=redis_url, **options)
