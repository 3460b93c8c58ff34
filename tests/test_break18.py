"""Break round 18: attacks on "giving way" (commit bcbbeab): a take that holds nothing (a
ManualWorker, a Worker with prefetch=False, an idle worker) that finds jobs held by another
worker has their holders hand them back, waits for them and takes them in order."""

from __future__ import annotations

import asyncio
import time
from typing import Any

import pytest
import redis.exceptions
from held_procs import registry as held_registry
from held_support import fresh_prefix, frozen, last_held, started, warm_worker
from helpers import wait_until

from minique import ManualWorker, Queue
from minique import manual_worker as manual_worker_module
from minique.errors import LockLost
from minique.worker import GIVE_WAY_TELL, GIVE_WAY_TOLD


@pytest.fixture
def redis_url(module_redis_url: str) -> str:
    """A server of this module's own: its tests leave thousands of jobs behind, which
    the shared server's keyspace scans (the dashboard's discovery) would wade through."""
    return module_redis_url


async def _busy_holder(redis_url: str, procs: list[Any], q: Queue,
                       n: int = 20) -> tuple[Any, list[str]]:
    """A worker process at concurrency 1 that measured its jobs as short (so it holds
    ahead), then given a job that sleeps 30 s and ``n`` short jobs in one add: it runs the
    long one and holds some of the others. Returns the process and the ids of the short
    jobs (in their order)."""
    proc = await warm_worker(redis_url, procs, q, q.prefix, 1)
    added = await q.add_bulk([("tick", {"sleep": 30}, {}), *[("tick", {}, {})] * n])
    await wait_until(lambda: started(q, added[0].id), timeout=20,
                     message="the long job started")
    return proc, [j.id for j in added[1:]]


class _GiveWayHook:
    """Wraps a ManualWorker's _wait_for_work: ``entered`` is set when the wait of a give-way
    (ManualWorker._call, after a reply with status GAVE_WAY) begins. The wait itself runs
    as it would."""

    def __init__(self, manual: ManualWorker) -> None:
        self.entered = asyncio.Event()
        self.count = 0
        real = manual._wait_for_work
        self.manual = manual

        async def wait(wake_id: bytes, wake_only: bool, timeout: float) -> None:
            # The give-way wait is the one _call makes while it holds the lock.
            if manual._lock.locked():
                self.count += 1
                self.entered.set()
            await real(wake_id, wake_only, timeout)

        manual._wait_for_work = wait  # type: ignore[method-assign]


class _LoseGiveWayRetake:
    """Makes the finish call that takes after a give-way (hold GIVE_WAY_TOLD) run in Redis
    but lose its answer, as a socket timeout arriving with the reply would."""

    def __init__(self, monkeypatch: Any) -> None:
        self.lost = 0
        real = manual_worker_module.scripts.run

        async def run(client: Any, name: str, keys: Any, args: Any) -> Any:
            reply = await real(client, name, keys, args)
            if name == "finish" and not self.lost and int(args[7]) == GIVE_WAY_TOLD:
                self.lost += 1
                raise TimeoutError("answer lost")
            return reply

        monkeypatch.setattr(manual_worker_module.scripts, "run", run)


async def _idle_manual_with_a_job(redis_url: str, procs: list[Any],
                                  q: Queue) -> tuple[ManualWorker, Any, list[str]]:
    """A ManualWorker that took a job before any worker process ran and then found none
    (so its next take gives way), and a busy holder (_busy_holder): the worker, its job,
    and the ids of the short jobs."""
    manual = ManualWorker("held", url=redis_url, prefix=q.prefix, stalled_interval=0)
    await q.add("tick", {"manual": True})
    first = await manual.get_next_job()
    assert first is not None
    # Idle again (its last take found nothing): its next take gives way to held jobs.
    assert await manual.get_next_job() is None
    _, ids = await _busy_holder(redis_url, procs, q)
    return manual, first, ids


async def test_a_complete_retried_after_a_lost_answer_across_a_give_way_raises_lock_lost(
        redis_url: str, procs: list[Any], monkeypatch: Any) -> None:
    """A user calls ``complete(job, value, fetch_next=True)`` while another worker holds
    jobs; the call's answer is lost (a socket timeout), so the user retries ``complete()``
    as the guide says ("A complete() retried after such a loss returns as done"). What the
    user sees: ``LockLost: job ... is completed already (a second complete() or fail() for
    it)``. The complete went in the first call (the one that gave way, status 3), and the
    call whose answer was lost is the re-take after the give-way, which carries no result:
    the retry finds nothing recorded for the job and sends the result again. Expected: the
    retry returns as done (the next job, or None), as it does without a give-way."""
    q = Queue("held", url=redis_url, prefix=fresh_prefix("b18a"))
    manual, first, ids = await _idle_manual_with_a_job(redis_url, procs, q)
    try:
        lose = _LoseGiveWayRetake(monkeypatch)
        await last_held(q, ids)
        with pytest.raises(TimeoutError):
            await manual.complete(first, "v", fetch_next=True)
        assert lose.lost == 1, "no give-way happened (the setup missed the held jobs)"
        try:
            again = await manual.complete(first, "v", fetch_next=True)
        except LockLost as exc:
            pytest.fail(f"the retried complete() raised LockLost: {exc}")
        assert again is not None and again.id == ids[0]
    finally:
        await manual.close()
        await q.close()


async def test_a_complete_cancelled_while_it_gives_way_then_retried_raises_lock_lost(
        redis_url: str, procs: list[Any]) -> None:
    """``asyncio.wait_for(manual.complete(job, v, fetch_next=True), timeout)`` is cut short
    while the call waits for another worker's held jobs to come back (the give-way wait,
    up to the hold left + 200 ms). The guide: a call cut short is sent again before the
    next, and "A complete() retried after such a loss returns as done". What the user
    sees: the retried ``complete()`` raises ``LockLost: job ... is completed already (a
    second complete() or fail() for it)``, though the user never had an answer for the
    first. The result went in the call that gave way, whose answer did come, so nothing is
    kept as unanswered and nothing records that this worker completed it. Expected: the
    retry returns as done."""
    q = Queue("held", url=redis_url, prefix=fresh_prefix("b18b"))
    manual, first, ids = await _idle_manual_with_a_job(redis_url, procs, q)
    try:
        hook = _GiveWayHook(manual)
        await last_held(q, ids)
        task = asyncio.create_task(manual.complete(first, "v", fetch_next=True))
        entered = asyncio.create_task(hook.entered.wait())
        await asyncio.wait({task, entered}, timeout=10, return_when=asyncio.FIRST_COMPLETED)
        assert hook.entered.is_set(), "no give-way happened (the setup missed the held jobs)"
        task.cancel()  # the caller's timeout, while it waits for the held jobs
        with pytest.raises(asyncio.CancelledError):
            await task
        try:
            await manual.complete(first, "v", fetch_next=True)
        except LockLost as exc:
            pytest.fail(f"the retried complete() raised LockLost: {exc}")
    finally:
        await manual.close()
        await q.close()


async def test_close_while_a_take_gives_way_returns_a_job_left_active_for_its_lease(
        redis_url: str, procs: list[Any]) -> None:
    """``get_next_job()`` in one task, ``close()`` in another (a shutdown) while the take
    waits for another worker's held jobs to come back. The guide: "a get_next_job waiting
    in another task returns None", and a closed worker's calls raise. What the user sees:
    get_next_job returns a job after close() was called (close waits for the give-way to
    end, then the take goes on); the job is active under the closed worker's lease, and
    ``complete()`` of it raises RuntimeError, so it sits active for ``lock_duration``
    (30 s) before anyone runs it. Expected: None, and the job stays waiting."""
    q = Queue("held", url=redis_url, prefix=fresh_prefix("b18c"))
    manual = ManualWorker("held", url=redis_url, prefix=q.prefix, stalled_interval=0)
    try:
        _, ids = await _busy_holder(redis_url, procs, q)
        real = manual._wait_for_work
        closing: list[asyncio.Task[None]] = []

        async def wait(wake_id: bytes, wake_only: bool, timeout: float) -> None:
            if manual._lock.locked() and not closing:
                # close() comes while the take waits for the held jobs (its first step,
                # marking the worker closed, runs at once).
                closing.append(asyncio.create_task(manual.close()))
                await asyncio.sleep(0)
            await real(wake_id, wake_only, timeout)

        manual._wait_for_work = wait  # type: ignore[method-assign]
        await last_held(q, ids)
        got = await asyncio.wait_for(manual.get_next_job(), 10)
        assert closing, "no give-way happened (the setup missed the held jobs)"
        await asyncio.wait_for(closing[0], 10)
        active = [i for i in ids if await q.get_state(i) == "active"
                  and not await started(q, i)]
        assert got is None and not active, (
            f"get_next_job returned {got and got.id} after close(); jobs {active} are "
            "active under the closed worker's lease, run by nobody")
    finally:
        await manual.close()
        await q.close()


async def test_a_connection_drop_during_a_give_way_wait_raises_from_get_next_job(
        redis_url: str, procs: list[Any]) -> None:
    """A holder that stops answering (SIGSTOP: a GC pause, a frozen VM) while a
    ManualWorker's take gives way to its jobs: the take waits up to the hold left + 200 ms.
    A Redis restart, a failover or a proxy dropping idle connections cuts that wait. The
    guide: "A wait whose connection drops (a Redis restart, a failover) asks again; only a
    call that cannot reach Redis raises." What the user sees: ``get_next_job()`` raises
    ConnectionError out of the give-way wait, though Redis answers the next call at once.
    (The wait of get_next_job itself handles the drop; the give-way wait in _call does
    not.) Expected: the take asks again and returns a job."""
    q = Queue("held", url=redis_url, prefix=fresh_prefix("b18d"))
    manual = ManualWorker("held", url=redis_url, prefix=q.prefix, stalled_interval=0)
    try:
        # More jobs than a worker holds (200 at most): some stay waiting, to be taken.
        holder, ids = await _busy_holder(redis_url, procs, q, n=300)
        real = manual._wait_for_work
        killed: list[int] = []

        async def wait(wake_id: bytes, wake_only: bool, timeout: float) -> None:
            if manual._lock.locked() and not killed:
                # The wait is blocked in Redis; then every client connection is dropped.
                async def drop() -> None:
                    await asyncio.sleep(0.03)
                    killed.append(int(await q.redis.execute_command(
                        "CLIENT", "KILL", "TYPE", "normal", "SKIPME", "yes")))
                dropper = asyncio.create_task(drop())
                try:
                    await real(wake_id, wake_only, timeout)
                finally:
                    await dropper
                return
            await real(wake_id, wake_only, timeout)

        manual._wait_for_work = wait  # type: ignore[method-assign]
        await last_held(q, ids)
        with frozen(holder.pid):
            try:
                job = await asyncio.wait_for(manual.get_next_job(), 10)
            except (ConnectionError, redis.exceptions.ConnectionError) as exc:
                pytest.fail(f"get_next_job raised {exc!r} after a connection drop during "
                            "its give-way wait")
            assert killed, "no give-way wait happened (the setup missed the held jobs)"
            assert job is not None
    finally:
        await manual.close()
        await q.close()


async def test_a_frozen_holders_jobs_make_every_take_wait_while_another_worker_holds(
        redis_url: str, procs: list[Any]) -> None:
    """take.lua: a give-way waits "only while a hold may still run ...: a dead holder's
    jobs wait for its lease, and no take waits on them". One holder freezes (SIGSTOP)
    holding jobs: they stay in the held set for its lease (30 s). A second, live worker
    process holds ahead as usual. What the user sees: ``get_next_job(block=0)`` of a
    ManualWorker, which returns in a round trip when no worker holds jobs, takes about a
    quarter of a second (the hold left + 200 ms) again and again: the live holder's hold
    keeps the give-way open, its jobs come back at once, but the frozen holder's jobs still
    make the held set non-empty, so the take waits for them to its deadline. Expected: a
    take waits for held jobs only while their holder may hand them back: a holder's jobs
    count while its last call is less than a hold plus 200 ms old (the calls hash)."""
    q = Queue("held", url=redis_url, prefix=fresh_prefix("b18e"))
    manual = ManualWorker("held", url=redis_url, prefix=q.prefix, stalled_interval=0)
    try:
        holder, ids = await _busy_holder(redis_url, procs, q)
        await last_held(q, ids)
        with frozen(holder.pid):
            frozen_ids = [i for i in ids if await q.get_state(i) == "waiting"
                      and await q.redis.hget(q.keys.job(i), "st") == b"held"]
            assert frozen_ids, "the frozen holder holds nothing"
            frozen_at = time.monotonic()
            # A second worker process: warm, short jobs, holds ahead.
            await warm_worker(redis_url, procs, q, q.prefix, 2)
            # Within a hold (50 ms) plus 200 ms of a holder's last call, a take cannot
            # tell a frozen holder from a slow one, and waits for it: measured past that.
            await wait_until(lambda: time.monotonic() > frozen_at + 0.3,
                             message="the frozen holder's last hold long over")
            slow: list[float] = []
            took = 0
            end = time.monotonic() + 3.0
            while time.monotonic() < end:
                await q.add_bulk([("tick", {}, {})] * 200)
                t0 = time.monotonic()
                job = await manual.get_next_job(block=0)
                dt = time.monotonic() - t0
                if job is not None:
                    took += 1
                    await manual.complete(job)
                if dt > 0.1:
                    slow.append(round(dt, 3))
            assert took, "the ManualWorker took nothing"
            assert not slow, (
                f"{len(slow)} of {took} get_next_job(block=0) calls took over 100 ms "
                f"(waiting on the frozen holder's jobs {frozen_ids[:3]}...): {slow[:10]}")
    finally:
        await manual.close()
        await q.close()


async def test_a_busy_worker_with_prefetch_off_does_not_give_way_at_every_take(
        redis_url: str, procs: list[Any], monkeypatch: Any) -> None:
    """A fleet of prefetching worker processes and one worker with prefetch=False (a
    process started with --no-prefetch, say): the queue got about half as fast as the
    prefetching workers alone (measured 18.6-19.1k jobs/s against 33.8-36.2k, below three
    prefetch=False workers' 22k), because every take of the prefetch=False worker that met
    held jobs gave way, sending the holders' jobs back and turning holding off for the
    queue for a second. Only an idle taker (its last take found nothing) gives way; a busy
    one takes as a busy prefetching worker does (benchmarks/mixed_fleet.py measures the
    throughput)."""
    from minique import Worker
    from minique import worker as worker_module

    prefix = fresh_prefix("b18f")
    q = Queue("held", url=redis_url, prefix=prefix)
    await warm_worker(redis_url, procs, q, prefix, 10)
    told: list[int] = []
    real = worker_module.scripts.run

    async def run(client: Any, name: str, keys: Any, args: Any) -> Any:
        if name == "finish" and int(args[7]) == GIVE_WAY_TELL and args[3] == plain.ident:
            told.append(int(args[7]))
        return await real(client, name, keys, args)

    monkeypatch.setattr(worker_module.scripts, "run", run)
    plain = Worker("held", held_registry, url=redis_url, prefix=prefix, concurrency=10,
                   prefetch=False)
    await q.add_bulk([("tick", {}, {"remove_on_complete": False})] * 5000)
    task = asyncio.create_task(plain.run(handle_signals=False))
    try:
        # (Retention keeps the last 1000 of the warm-up's jobs: 5000 kept, at least 5000.)
        await wait_until(lambda: _completed(q, 5000), timeout=60, message="the jobs done")
        assert plain.jobs_done > 100, "the prefetch=False worker took too few jobs to tell"
        assert len(told) <= 10, (
            f"the busy prefetch=False worker gave way {len(told)} times in "
            f"{plain.jobs_done} jobs")
    finally:
        await plain.close()
        await asyncio.wait_for(task, 10)
        await q.close()


async def _completed(q: Queue, n: int) -> bool:
    return (await q.get_stats())["completed"] >= n


@pytest.mark.parametrize("outcome", ["complete", "fail"])
async def test_a_result_retried_twice_after_two_lost_answers_is_done_once(
        redis_url: str, monkeypatch: Any, outcome: str) -> None:
    """Break round 25 (helper-75): ``complete()`` runs in Redis but its answer is lost; the
    retry re-sends that call (answered: applied), then its own follow-up call runs and its
    answer is lost too; the second retry must still find the result done. It raised
    LockLost ("completed already"; for a fail() that retries, "its lease ran out"): the
    record of the applied result was dropped before the follow-up call was answered."""
    plan: list[bool] = []
    real = manual_worker_module.scripts.run

    async def run(client: Any, name: str, keys: Any, args: Any) -> Any:
        reply = await real(client, name, keys, args)
        if name == "finish" and plan and plan.pop(0):
            raise TimeoutError("answer lost")
        return reply

    monkeypatch.setattr(manual_worker_module.scripts, "run", run)
    q = Queue("lost-twice", url=redis_url, prefix=fresh_prefix("b18l"))
    manual = ManualWorker("lost-twice", url=redis_url, prefix=q.prefix, stalled_interval=0)
    try:
        await q.add("j", {"i": 1}, attempts=2)
        job = await manual.get_next_job()
        assert job is not None
        plan[:] = [True, False, True]  # the call, its re-send, the follow-up
        lost = 0
        for _ in range(4):
            try:
                if outcome == "complete":
                    await manual.complete(job, "done")
                else:
                    await manual.fail(job, "boom")
                break
            except TimeoutError:
                lost += 1
        else:
            raise AssertionError("never answered")
        assert lost == 2
        stored = await q.get_job(job.id)
        assert stored is not None
        if outcome == "complete":
            assert stored.state == "completed" and stored.return_value == "done"
            assert stored.attempts_made == 1
        else:
            assert stored.state in ("waiting", "delayed") and stored.attempts_made == 1
    finally:
        await manual.close()
        await q.obliterate(force=True)
        await q.close()
