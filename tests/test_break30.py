"""Break round 30: trusted completions (lua/finish.lua kind C/T, minique/worker.py _trust).

Each reproducer drives finish.lua as a worker does (call ids counting up, the held
version and take time of its take's reply), and compares the trusted completion (C)
with the plain one (c) that reads the job first: the trust must change what Redis reads,
never what happens to a job."""

from __future__ import annotations

import uuid
from collections.abc import Awaitable, Callable
from typing import Any

import pytest
from driver import as_an_older_version
from driver import call_as as _call
from helpers import wait_until

from minique import Queue
from minique.worker import HEADER, HEADER_STARTED_MS

HELD_VERSION = HEADER - 1
Between = Callable[[Queue, str, str], Awaitable[None]]


async def _redis_ms(q: Queue) -> int:
    sec, usec = await q.redis.time()
    return int(sec) * 1000 + int(usec) // 1000


async def _case(redis_url: str, kind: str, between: Between, job_id: str = "x",
                hold_ms: int = 30000) -> dict[str, Any]:
    """Worker "w" holds `job_id` (call 1), makes a call without results (call 2), `between`
    acts, then call 3 reports the job completed as `kind` with the held version and take
    time its take replied. Returns the status, the job's state, the sets it is in and the
    queue's stats."""
    q = Queue(f"b30-{uuid.uuid4().hex[:8]}", url=redis_url)
    try:
        await q.add("j", 1, job_id=job_id)
        _, held, header = await _call(q, "w", 1, [], hold=1, hold_ms=hold_ms)
        assert held and held[0][0] == job_id
        token, hv = held[0][1], header[HELD_VERSION]
        started = int(header[HEADER_STARTED_MS])
        await _call(q, "w", 2, [])
        await between(q, job_id, token)
        result = (job_id, token, kind, b"\xa2ok", "", 0, -1, -1, started, ":0:1")
        statuses, _, _ = await _call(q, "w", 3, [result], trust=f"{hv.decode()}:{started}:1")
        st = await q.redis.hget(q.keys.job(job_id), "st")
        sets = {}
        for name in ("active", "held", "held_removed", "completed", "delayed", "pri"):
            sets[name] = await q.redis.zscore(getattr(q.keys, name), job_id) is not None
        stats = await q.get_stats()
        return {"status": statuses, "st": st, "sets": sets, "stats": stats}
    finally:
        await q.redis.hdel(q.keys.meta, "hu")
        await q.obliterate(force=True)
        await q.close()


async def _older_remove(q: Queue, job_id: str, token: str) -> None:
    await q._run("remove", [job_id, "0"])


async def _older_drain(q: Queue, job_id: str, token: str) -> None:
    await q._run("drain", ["0", 100, "mark"])


def _by_older_then_added_again(change: Between) -> Between:
    """An older process (rolling upgrade) removes or drains the held job: marked removed,
    the held version left as it was. Once the hold is over, a current producer adds a job
    with the same custom id: add.lua frees the removed one (free_removed) and adds it."""
    async def between(q: Queue, job_id: str, token: str) -> None:
        await as_an_older_version(change)(q, job_id, token)
        assert await q.redis.hget(q.keys.job(job_id), "st") == b"removed"
        rmu = int(await q.redis.hget(q.keys.job(job_id), "rmu"))

        async def over() -> bool:
            return await _redis_ms(q) > rmu
        await wait_until(over, timeout=5, message="the hold over")
        await q.add("j", 2, job_id=job_id)
        assert await q.redis.hget(q.keys.job(job_id), "st") == b"waiting"
    between.__name__ = change.__name__
    return between


async def _deleted_and_added_again(q: Queue, job_id: str, token: str) -> None:
    # The job's hash deleted behind the queue's back (redis-cli DEL of a stuck job), and
    # the job added again under its id.
    await q.redis.delete(q.keys.job(job_id))
    await q.add("j", 2, job_id=job_id)


async def _deleted_and_added_again_in_bulk(q: Queue, job_id: str, token: str) -> None:
    # The same, the id among others of an add_bulk (add.lua checks a call's ids at once).
    await q.redis.delete(q.keys.job(job_id))
    await q.add_bulk([("j", i, {"job_id": f"other-{i}"}) for i in range(3)]
                     + [("j", 2, {"job_id": job_id})])


@pytest.mark.parametrize("change", [_older_remove, _older_drain], ids=["remove", "drain"])
async def test_older_removal_then_same_id_added_again_is_not_completed(
        redis_url: str, change: Between) -> None:
    """During a rolling upgrade (docs/tutorials/production.md says trusted completions "need
    nothing of older processes: ... a removal or drain by an older process, is told apart
    without them"), an older process removes or drains a job that a new worker holds and
    has started; once the hold is over the user adds a job with the same custom id again.
    The new job must stay waiting and run: the old holder's completion is for the old job
    (a plain completion answers "another owner's now", status 0). Sent as C, the old
    holder's completion overwrites the NEW job as completed (status 1): get_job(x) says
    completed, get_stats counts the one job twice (waiting 1 in the ready stream and
    completed 1, total 2), and the next take hands the "completed" job out again (active
    and completed at once). Cause: free_removed (called by the current add.lua) deletes the
    marked job without moving meta 'hv', and finish.lua's trusted HSET tells a deleted
    hash only by "all 7 fields new", which a re-created hash (it has 'st') is not."""
    between = _by_older_then_added_again(change)
    plain = await _case(redis_url, "c", between, hold_ms=50)
    trusted = await _case(redis_url, "C", between, hold_ms=50)
    assert plain["status"] == [0] and plain["st"] == b"waiting"
    assert trusted == plain


@pytest.mark.parametrize("again", [_deleted_and_added_again, _deleted_and_added_again_in_bulk],
                         ids=["add", "add_bulk"])
async def test_deleted_hash_then_same_id_added_again_is_not_completed(
        redis_url: str, again: Between) -> None:
    """A held job's hash deleted behind the queue's back (an eviction under a maxmemory
    policy other than noeviction, or a redis-cli DEL of a stuck job; docs/design/lua.md
    says the trusted write "tells a hash deleted behind the queue's back ... and answers
    it as gone"), then a job added again with the same custom id. The new job must stay
    waiting (a plain completion answers status 0). Sent as C, the old holder's completion
    writes over the new job: status 1, get_job(x) says completed, get_stats counts it as
    waiting (its stream entry) and completed (total 2 for one job), and the next take runs
    it again while it stays in the completed set. The HSET's count of new fields cannot
    tell a re-created hash (it has 'st') from the held one."""
    plain = await _case(redis_url, "c", again)
    trusted = await _case(redis_url, "C", again)
    assert plain["status"] == [0] and plain["st"] == b"waiting"
    assert trusted == plain
