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


async def test_a_held_job_goes_back_uncounted_however_many_holders_die(queue: Queue) -> None:
    """A job held (not started, as far as Redis knows) by a worker that died goes back to
    its place uncounted every time, marked suspect ('hrc'): a suspect job starts only once
    Redis has its start note, so a crash at its start is counted through its lease. It
    used to count a stall from the second dead holder on, so with max_stalled_count 0 a
    job that only waited beside a poison job failed without ever having run (found by
    tests/test_break_differential.py); a retry_job() since changes nothing to that."""
    await queue.add("x", 1, job_id="h", remove_on_fail=False)
    for _ in range(3):
        await _held_by_a_dead_worker(queue, "h", 0)
        assert await queue.get_state("h") == "waiting"
    f = await queue.redis.hmget(queue.keys.job("h"), "stc", "hrc", "ats")
    assert f[0] in (None, b"0") and f[1] == b"3" and f[2] in (None, b"0"), f
