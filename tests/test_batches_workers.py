"""Batch processors in real ``minique worker`` processes (tests/batch_procs.py): batches of
one group across two processes with per-job outcomes, and a batch under the queue's rate
limit shrinking to what the limiter allows."""

from __future__ import annotations

import json
from typing import Any

from helpers import start_worker, wait_until

from minique import Queue


async def calls(q: Queue) -> list[dict[str, Any]]:
    return [json.loads(x) for x in await q.redis.lrange(f"{q.keys.base}:batch-calls", 0, -1)]


async def finished(q: Queue, ids: list[str]) -> bool:
    return all([await q.get_state(i) in ("completed", "failed") for i in ids])


async def test_two_processes_batch_per_group_with_per_job_outcomes(
        redis_url: str, procs: list[Any]) -> None:
    q = Queue("batches-groups", url=redis_url, prefix="bgroups")
    await q.obliterate(force=True)
    outcomes = {0: "retry", 1: "fatal"}
    jobs = await q.add_bulk([("deliver", {"outcome": outcomes.get(i, "ok")},
                              {"group": f"endpoint-{i % 3}", "attempts": 2})
                             for i in range(24)])
    for _ in range(2):
        procs.append(start_worker(redis_url, "batches-groups", "--prefix", "bgroups",
                                  target="tests.batch_procs:registry"))
    ids = [j.id for j in jobs]
    await wait_until(lambda: finished(q, ids), timeout=60, message="all jobs finished")
    seen = await calls(q)
    assert all(len(set(c["groups"])) == 1 for c in seen), seen
    assert max(len(c["ids"]) for c in seen) > 1
    by_id = {j.id: j for j in jobs}
    for job_id in ids:
        got = await q.get_job(job_id)
        assert got is not None
        outcome = by_id[job_id].data["outcome"]
        if outcome == "ok":
            assert got.state == "completed" and got.return_value == {"delivered": job_id}
        elif outcome == "retry":
            assert got.state == "failed" and got.attempts_made == 2  # retried once
        else:
            assert got.state == "failed" and got.attempts_made == 1  # no retry
    await q.obliterate(force=True)
    await q.close()


async def test_a_batch_under_a_rate_limit_shrinks_across_two_processes(
        redis_url: str, procs: list[Any]) -> None:
    q = Queue("batches", url=redis_url, prefix="blimit")
    await q.obliterate(force=True)
    jobs = await q.add_bulk([("j", {}) for _ in range(24)])
    for _ in range(2):
        procs.append(start_worker(redis_url, "batches", "--prefix", "blimit", "--limiter-max",
                                  "4", "--limiter-duration", "0.5",
                                  target="tests.batch_procs:registry"))
    ids = [j.id for j in jobs]
    await wait_until(lambda: finished(q, ids), timeout=60, message="all jobs finished")
    seen = await calls(q)
    assert sum(len(c["ids"]) for c in seen) == 24
    assert max(len(c["ids"]) for c in seen) <= 4  # the batch size is 5: it shrank
    starts = sorted([(await q.get_job(i)).processed_on or 0.0 for i in ids])  # type: ignore[union-attr]
    for i in range(len(starts) - 4):  # no window of 0.5 s sees more than 4 starts
        assert starts[i + 4] - starts[i] >= 0.5 - 1e-9, starts
    await q.obliterate(force=True)
    await q.close()
