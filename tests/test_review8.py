"""Review 8 findings (session 194ec46..d28c578)."""

from __future__ import annotations

from typing import Any

from helpers import wait_until

from minique import Queue


async def _fetch(q: Queue, worker: str, count: int, hold: int, lease_ms: int = 30000,
                 hold_ms: int = 30000) -> Any:
    """One take as a worker's call makes it (lua/fetch.lua), as tests/test_break_once.py."""
    return await q._run("fetch", [count, lease_ms, worker, 0, 0, 1000, hold,
                                  hold_ms if hold else 0])


async def _held_by_a_dead_worker(q: Queue, job_id: str, max_stalled: int) -> None:
    """Worker "dead" holds the first waiting job (lease 1 ms) and dies; another worker's
    sweep (lua/stalled.lua, max_stalled_count ``max_stalled``) takes it back."""
    await _fetch(q, "dead", 0, 1, lease_ms=1)
    assert await q.redis.hget(q.keys.job(job_id), "st") == b"held"

    async def swept() -> bool:
        await q._run("stalled", [max_stalled, 100, 100, -1, "sweeper"])
        return bool(await q.redis.hget(q.keys.job(job_id), "st") != b"held")
    await wait_until(swept, timeout=5, message="the dead worker's hold taken back")


async def test_a_retried_job_starts_its_held_stall_count_afresh(queue: Queue) -> None:
    """retry_job gives a job fresh attempts and stalled count (requeue.lua resets atm, ats,
    stc), so the first dead holder after it goes back uncounted, as for any job
    (leases.md: counted "from the second time on"). requeue.lua leaves 'hrc', so that
    first hold is counted at once, and with max_stalled_count 0 the job fails again
    without ever having run."""
    await queue.add("x", 1, job_id="h", remove_on_fail=False)
    await _held_by_a_dead_worker(queue, "h", 0)  # first time: back uncounted
    assert await queue.get_state("h") == "waiting"
    await _held_by_a_dead_worker(queue, "h", 0)  # second time: counted, > 0: failed
    assert await queue.get_state("h") == "failed"
    await queue.retry_job("h")
    assert await queue.get_state("h") == "waiting"
    await _held_by_a_dead_worker(queue, "h", 0)  # first time since the retry
    state = await queue.get_state("h")
    stc = await queue.redis.hget(queue.keys.job("h"), "stc")
    assert state == "waiting", (
        f"a retried job's first dead holder counted a stall (stc={stc!r}): {state}")
