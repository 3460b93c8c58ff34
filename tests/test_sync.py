"""SyncQueue and SyncJob: the blocking facade, against a real Redis and a running worker."""

from __future__ import annotations

import asyncio
import inspect
import threading
import uuid
from collections.abc import Iterator
from typing import Any

import pytest

from minique import InvalidJobState, Job, JobFailed, Queue, SyncJob, SyncQueue, Worker, local_controls


def test_every_queue_and_job_method_has_a_blocking_form() -> None:
    for name, fn in inspect.getmembers(Queue, inspect.iscoroutinefunction):
        if name.startswith("_"):
            continue
        assert hasattr(SyncQueue, name), f"SyncQueue lacks {name}"
        assert not inspect.iscoroutinefunction(getattr(SyncQueue, name)), name
        sync_params = list(inspect.signature(getattr(SyncQueue, name)).parameters)
        assert sync_params == list(inspect.signature(fn).parameters), name
    for name, _ in inspect.getmembers(Job, inspect.iscoroutinefunction):
        if not name.startswith("_"):
            assert hasattr(SyncJob, name) and not inspect.iscoroutinefunction(getattr(SyncJob, name)), name


class WorkerThread:
    """A worker on an event loop of its own thread, as a separate process would be."""

    def __init__(self, queue: str, url: str, fn: Any) -> None:
        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(target=self.loop.run_forever, daemon=True)
        self.thread.start()
        made = asyncio.run_coroutine_threadsafe(self._make(queue, url, fn), self.loop)
        self.worker: Worker = made.result(10)
        self.done = asyncio.run_coroutine_threadsafe(self.worker.run(), self.loop)

    @staticmethod
    async def _make(queue: str, url: str, fn: Any) -> Worker:
        return Worker(queue, fn, url=url, heartbeat_interval=0.5)

    def close(self) -> None:
        asyncio.run_coroutine_threadsafe(self.worker.close(timeout=2), self.loop).result(10)
        self.done.result(10)
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(5)


@pytest.fixture
def sync_queue(redis_url: str, qname: str) -> Iterator[SyncQueue]:
    with SyncQueue(qname, url=redis_url) as q:
        q.obliterate(force=True)
        yield q
        q.obliterate(force=True)


def test_a_sync_caller_gets_sync_jobs(sync_queue: SyncQueue, redis_url: str) -> None:
    gate = threading.Event()

    async def proc(job: Any) -> Any:
        if job.name == "fail":
            raise ValueError("bad row 7")
        if job.name == "hang":
            await job.update_progress(10)
            await asyncio.sleep(60)
        if job.name == "gated":
            await asyncio.get_running_loop().run_in_executor(None, gate.wait, 10)
        return {"echo": job.data}

    q = sync_queue
    later = q.add("ok", {"n": 0}, delay=3600)
    assert isinstance(later, SyncJob) and later.get_state() == "delayed"
    later.promote()
    assert later.get_state() == "waiting" and later.data == {"n": 0}
    worker = WorkerThread(q.name, redis_url, proc)
    try:
        assert later.wait_until_finished(timeout=10) == {"echo": {"n": 0}}
        done = later.refresh()
        assert done.state == "completed" and done.return_value == {"echo": {"n": 0}}
        assert [a.outcome for a in done.get_attempts()] == ["completed"]

        failed = q.add("fail", None, attempts=1)
        with pytest.raises(JobFailed, match="bad row 7"):
            failed.wait_until_finished(timeout=10)
        assert q.get_job_attempts(failed.id)[0].outcome == "failed"
        with pytest.raises(InvalidJobState):
            q.get_job(later.id).promote()  # type: ignore[union-attr]

        hang = q.add("hang", None, attempts=1)
        for _ in range(1000):
            if hang.get_state() == "active":
                break
            threading.Event().wait(0.01)
        assert hang.cancel() is True
        with pytest.raises(JobFailed, match="cancel"):
            hang.wait_until_finished(timeout=10)

        gated = q.add("gated", 5)
        assert gated.log("queued by a script") == 1 and gated.get_logs() == ["queued by a script"]
        gate.set()
        assert gated.wait_until_finished(timeout=10) == {"echo": 5}
        failed.retry()
        assert failed.get_state() in ("waiting", "active", "failed")
        bulk = q.add_bulk([("ok", i) for i in range(3)])
        assert [b.wait_until_finished(timeout=10) for b in bulk] == [{"echo": i} for i in range(3)]
        assert all(isinstance(j, SyncJob) for j in q.get_jobs("completed"))
        assert q.get_stats()["completed"] >= 5 and q.get_metrics()["totals"]["completed"] >= 5
        assert q.get_workers() and not q.is_paused()
        assert bulk[0].remove() is True and q.get_job(bulk[0].id) is None
    finally:
        worker.close()
    with pytest.raises(TimeoutError):
        q.add("ok", 1).wait_until_finished(timeout=0.2)  # no worker any more
    assert q.drain() == 1


def test_a_sync_job_hands_out_no_coroutine(sync_queue: SyncQueue) -> None:
    job = sync_queue.add("x", {"a": 1})
    # Fields pass through to the snapshot; an async method of Job never does.
    with pytest.raises(AttributeError, match="blocking method"):
        job.__getattr__("get_state")
    assert job.attempts_made == 0 and job.timestamp > 0 and job.opts.attempts >= 1
    sync_queue.upsert_job_scheduler("every-minute", every=60.0, job_name="x")
    assert [s.id for s in sync_queue.get_job_schedulers()] == ["every-minute"]
    assert sync_queue.remove_job_scheduler("every-minute") is True


def test_groups_through_the_blocking_facade(redis_url: str) -> None:
    q = SyncQueue(f"sync-groups-{uuid.uuid4().hex[:6]}", url=redis_url)
    try:
        q.set_group_defaults(concurrency=2)
        q.set_group_options("acct", limiter={"max": 5, "duration": 1.0})
        q.add("j", None, group="acct")
        q.pause_group("acct")
        info, = q.get_groups()
        assert info.id == "acct" and info.waiting == 1 and info.paused
        q.resume_group("acct")
        assert not q.get_groups()[0].paused
    finally:
        q.obliterate(force=True)
        q.close()


async def test_a_sync_queue_in_another_thread_tells_the_worker_on_its_own_loop(
        redis_url: str) -> None:
    # A SyncQueue (here from a thread, as a sync processor would) adding a job with a
    # priority tells the workers of its process at once (minique/local_controls.py). The
    # worker's state belongs to its event loop: the notice must run there, not in the
    # caller's thread, where it would change the worker's buffer and set its asyncio
    # events from outside the loop.
    from helpers import wait_until

    name = f"lc-{uuid.uuid4().hex[:8]}"

    async def work(job: Any) -> None:
        return None

    worker = Worker(name, work, url=redis_url, concurrency=2)
    seen: list[int] = []
    told = worker._on_local_control

    def spy(what: str, delay: float, job_id: str | None = None) -> None:
        seen.append(threading.get_ident())
        told(what, delay, job_id)

    worker._on_local_control = spy  # type: ignore[method-assign]
    task = asyncio.create_task(worker.run())
    sq = SyncQueue(name, url=redis_url)
    try:
        # Listening, not merely started: run() registers its listener after a few awaits
        # (the eviction check, the cancel subscription), which a loaded machine stretches.
        await wait_until(lambda: worker.keys.base in local_controls._listeners,
                         message="the worker listening")
        await asyncio.to_thread(sq.add, "t", {}, priority=1)
        await wait_until(lambda: bool(seen), message="the worker told")
        assert seen == [threading.get_ident()], "the notice ran off the worker's loop"
    finally:
        await worker.close(timeout=2)
        await task
        await asyncio.to_thread(sq.obliterate, force=True)
        await asyncio.to_thread(sq.close)
