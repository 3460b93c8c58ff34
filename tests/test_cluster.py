"""The engine on a real 3-master Redis Cluster: several queues spread over the slots."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from typing import Any

import pytest
from cluster import LocalCluster
from helpers import wait_until

from minique import JobFailed, Queue, Worker


@pytest.fixture(scope="module")
def cluster() -> Iterator[LocalCluster]:
    with LocalCluster() as c:
        yield c


async def test_queues_on_different_slots_run_the_full_lifecycle(cluster: LocalCluster) -> None:
    names = [f"cq{i}" for i in range(6)]
    queues = [Queue(n, url=cluster.url) for n in names]
    slots = {queues[0].redis.keyslot(q.keys.meta) for q in queues}
    assert len(slots) > 1  # the queues really are spread over the cluster

    async def proc(job: Any) -> Any:
        if job.name == "bad":
            raise ValueError("no")
        await job.update_progress(50)
        await job.log("ran")
        return job.data["n"] * 2

    workers = [Worker(n, proc, url=cluster.url, concurrency=5, lock_duration=5,
                      heartbeat_interval=0.5) for n in names]
    tasks = [asyncio.create_task(w.run()) for w in workers]
    try:
        for q in queues:
            await q.obliterate(force=True)
            jobs = await q.add_bulk([("ok", {"n": i}) for i in range(20)])
            delayed = await q.add("ok", {"n": 100}, delay=0.2)
            prio = await q.add("ok", {"n": 7}, priority=1)
            bad = await q.add("bad", {"n": 0}, attempts=2, backoff=0.05)
            assert [await j.wait_until_finished(timeout=10) for j in jobs[:3]] == [0, 2, 4]
            assert await delayed.wait_until_finished(timeout=10) == 200
            assert await prio.wait_until_finished(timeout=10) == 14
            with pytest.raises(JobFailed, match="ValueError: no"):
                await bad.wait_until_finished(timeout=10)
            await wait_until(lambda q=q: _done(q, 22), timeout=10)  # type: ignore[misc]
            assert await q.get_job_logs(jobs[0].id) == ["ran"]
            await q.pause()
            assert await q.is_paused()
            await q.resume()
            assert await q.retry_jobs("failed") == 1
        # obliterate() removed the heartbeats too: each worker writes its own again.
        async def each_worker_seen() -> bool:
            return [len(await q.get_workers()) for q in queues] == [1] * len(queues)

        await wait_until(each_worker_seen, timeout=10, message="a heartbeat from every worker")
    finally:
        for w, t in zip(workers, tasks, strict=True):
            await w.close()
            await t
        for q in queues:
            await q.obliterate(force=True)
            await q.close()


async def _done(q: Queue, n: int) -> bool:
    return (await q.get_stats())["completed"] >= n


async def test_cancel_and_scheduler_on_cluster(cluster: LocalCluster) -> None:
    q = Queue("cq-extra", url=cluster.url)
    await q.obliterate(force=True)
    started = asyncio.Event()

    async def proc(job: Any) -> str:
        if job.name == "long":
            started.set()
            await asyncio.sleep(30)
        return "tick"

    worker = Worker("cq-extra", proc, url=cluster.url)
    task = asyncio.create_task(worker.run())
    try:
        long = await q.add("long", None)
        await asyncio.wait_for(started.wait(), 10)
        assert await q.cancel(long.id)
        with pytest.raises(JobFailed, match="cancelled"):
            await long.wait_until_finished(timeout=10)
        await q.upsert_job_scheduler("tick", every=0.2, job_name="tick")
        await wait_until(lambda: _done(q, 2), timeout=10, message="two scheduled firings")
    finally:
        await worker.close()
        await task
        await q.obliterate(force=True)
        await q.close()


async def test_kill_9_round_on_cluster(cluster: LocalCluster) -> None:
    import signal

    from helpers import start_worker

    q = Queue("procs", url=cluster.url, prefix="ckill",
              default_job_options={"remove_on_complete": False})
    await q.obliterate(force=True)
    jobs = await q.add_bulk([("effect", {"sleep": 0.05}) for _ in range(300)])
    args = ("--prefix", "ckill", "--concurrency", "10", "--lock-duration", "1",
            "--stalled-interval", "1", "--max-stalled-count", "10")
    victim = start_worker(cluster.url, "procs", *args)
    survivor = start_worker(cluster.url, "procs", *args)
    try:
        await wait_until(lambda: _effects_at_least(q, 30), timeout=20, message="jobs in flight")
        victim.send_signal(signal.SIGKILL)
        await wait_until(lambda: _done(q, 300), timeout=60, message="all 300 jobs completed")
        raw = await q.redis.hgetall(f"{q.keys.base}:effects")
        assert {k.decode() for k in raw} == {j.id for j in jobs}
        assert (await q.get_stats())["failed"] == 0
    finally:
        for p in (victim, survivor):
            p.kill()
            p.wait(5)
        await q.obliterate(force=True)
        await q.close()


async def _effects_at_least(q: Queue, n: int) -> bool:
    return int(await q.redis.hlen(f"{q.keys.base}:effects")) >= n


async def test_a_flow_across_queues_on_cluster(cluster: LocalCluster) -> None:
    from minique import FlowError, FlowProducer

    names = ("c-reports", "c-accounts", "c-syncs")
    # The default prefix spreads the queues over slots: the flow is refused, nothing written.
    plain = FlowProducer(url=cluster.url)
    assert len({plain.redis.keyslot(Queue(n, connection=plain.redis).keys.meta)
                for n in names}) > 1
    with pytest.raises(FlowError, match="one hash slot"):
        await plain.add({"name": "r", "queue": "c-reports", "children": [
            {"name": "a", "queue": "c-accounts", "children": [{"name": "s", "queue": "c-syncs"}]}]})
    for n in names:
        assert await Queue(n, connection=plain.redis).get_stats() == {
            "waiting": 0, "active": 0, "completed": 0, "failed": 0, "delayed": 0,
            "waiting-children": 0, "total": 0}
    await plain.close()

    # A hash-tag prefix puts them in one slot: the tree runs bottom up on the cluster.
    flow = FlowProducer(url=cluster.url, prefix="{cflow}")

    async def proc(job: Any) -> Any:
        values = await job.get_children_values()
        return job.data if not values else sum(values.values()) + job.data

    workers = [Worker(n, proc, url=cluster.url, prefix="{cflow}", concurrency=5,
                      lock_duration=5) for n in names]
    tasks = [asyncio.create_task(w.run()) for w in workers]
    try:
        node = await flow.add({"name": "r", "queue": "c-reports", "data": 100, "children": [
            {"name": "a", "queue": "c-accounts", "data": 10, "children": [
                {"name": "s", "queue": "c-syncs", "data": 1},
                {"name": "s", "queue": "c-syncs", "data": 2}]},
            {"name": "s", "queue": "c-syncs", "data": 3}]})
        assert node.job.state == "waiting-children"
        assert await node.job.wait_until_finished(timeout=15) == 116
    finally:
        for w, t in zip(workers, tasks, strict=True):
            await w.close()
            await t
        for n in names:
            await Queue(n, connection=flow.redis, prefix="{cflow}").obliterate(force=True)
        await flow.close()
