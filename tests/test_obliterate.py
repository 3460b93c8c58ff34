"""obliterate() leaves no key of the queue, after a run that used every feature, with a
worker process killed so that its heartbeat and its active job stay behind (issue #12, 5)."""

from __future__ import annotations

import signal
from typing import Any

from helpers import start_worker, wait_until

from minique import Queue


async def queue_keys(q: Queue) -> list[str]:
    match = q.keys.base.replace("{", "[{]").replace("}", "[}]") + "*"
    return sorted([k.decode() async for k in q.redis.scan_iter(match=match, count=1000)])


async def test_obliterate_leaves_no_key_after_every_feature(
        redis_url: str, procs: list[Any]) -> None:
    q = Queue("procs", url=redis_url, prefix="oblit", events_max_len=5000)
    await q.obliterate(force=True)
    await q.upsert_job_scheduler("hourly", every=3600, job_name="echo", data={"value": 1})
    await q.upsert_job_scheduler("nightly", cron="0 3 * * *", job_name="echo", data={})
    await q.add_bulk([("echo", {"value": i}) for i in range(20)])
    await q.add_bulk([("echo", {"error": "no"}, {"attempts": 2, "backoff": 0.01})
                      for _ in range(5)])
    logged = await q.add("echo", {"value": "logged"}, remove_on_complete={"age": 3600})
    await logged.log("a line")
    await logged.update_progress(30)
    at_once = await q.add("echo", {"value": "gone"}, remove_on_complete=True)
    worker = start_worker(redis_url, "procs", "--prefix", "oblit", "--limiter-max", "1000",
                          "--heartbeat-interval", "0.2")
    procs.append(worker)
    assert await logged.wait_until_finished(timeout=20) == "logged"
    assert await at_once.wait_until_finished(timeout=20) == "gone"

    async def finished() -> bool:
        stats = await q.get_stats()
        return stats["completed"] >= 21 and stats["failed"] == 5

    await wait_until(finished, timeout=20, message="jobs completed and failed")
    active = await q.add("echo", {"sleep": 60})
    await wait_until(lambda: _state(q, active.id, "active"), timeout=10, message="job active")
    await wait_until(lambda: q.get_workers(), timeout=10, message="heartbeat written")
    worker.send_signal(signal.SIGKILL)  # leaves its heartbeat and its active job
    worker.wait(5)
    await q.add_bulk([("echo", {"value": i}) for i in range(5)])
    await q.add("echo", {"value": "urgent"}, priority=1)
    await q.add("echo", {"value": "later"}, delay=600)
    await q.rate_limit(30)
    await q.set_global_concurrency(3)
    await q.pause()
    before = await queue_keys(q)
    base = q.keys.base
    for kind in (":j:", ":logs:", ":sch:h:", ":sch:t:", ":worker:", ":metrics:", ":limiter",
                 ":rate-limited", ":completed:keep:", ":completed:keeps", ":events", ":wake", ":schedulers"):
        assert any(k.startswith(base + kind) for k in before), f"no {kind} key to delete"
    await q.obliterate(force=True)
    assert await queue_keys(q) == []
    await q.close()


async def _state(q: Queue, job_id: str, state: str) -> bool:
    return await q.get_state(job_id) == state
