"""The ready stream's entries name what the take reads of a job (lua/includes/base.lua
enqueue_ready): ``b`` for a new job with no options, priority, group, dedup id or parent
and no attempt yet (the take reads its name, data and time alone), ``i`` for any other.
A job taken through either reads every field it has."""

from __future__ import annotations

from typing import Any

from driver import HEADER, JOB_FIELDS, finish, retry, take

from minique import Queue
from minique.options import decode_stored
from minique.queue import ready_entry_job_id


async def _entry_names(queue: Queue) -> dict[str, str]:
    """job id -> the field name of its ready-stream entry."""
    return {ready_entry_job_id(f).decode(): next(iter(f)).decode()
            for _, f in await queue.redis.xrange(queue.keys.ready)}


def _jobs(reply: list[Any]) -> dict[str, list[Any]]:
    body = reply[HEADER:]
    return {body[i].decode(): body[i:i + JOB_FIELDS] for i in range(0, len(body), JOB_FIELDS)}


async def test_only_a_bare_new_job_gets_a_bare_entry(queue: Queue) -> None:
    await queue.add("plain", {"x": 1}, job_id="plain")
    await queue.add("opts", 2, job_id="opts", attempts=3, timeout=7)
    await queue.add("dedup", 3, job_id="dedup", dedup={"id": "d1"})
    await queue.add_bulk([("bulk", 4, {"job_id": "bulk"}), ("bulk", 5, {"job_id": "bulk-o",
                                                                         "attempts": 2})])
    await queue.add("later", 6, job_id="later", delay=60)
    names = await _entry_names(queue)
    assert names == {"plain": "b", "opts": "i", "dedup": "i", "bulk": "b", "bulk-o": "i"}
    # A delayed job made waiting by a transition that reads nothing of it: 'i'.
    await queue.promote_job("later")
    assert (await _entry_names(queue))["later"] == "i"
    jobs = _jobs(await take(queue, "w1", 10, 0))
    assert set(jobs) == {"plain", "opts", "dedup", "bulk", "bulk-o", "later"}
    for job_id, f in jobs.items():
        assert f[2].decode() == {"plain": "plain", "opts": "opts", "dedup": "dedup",
                                 "bulk-o": "bulk", "later": "later"}.get(job_id, "bulk")
        assert int(f[5]) == 0 and int(f[6]) == 1  # attempts made, started (this one)
        assert int(f[7]) > 0  # added at
    assert decode_stored(jobs["plain"][4]).attempts == 1
    assert decode_stored(jobs["opts"][4]).attempts == 3
    assert decode_stored(jobs["opts"][4]).timeout == 7
    assert decode_stored(jobs["bulk-o"][4]).attempts == 2



async def test_a_retried_job_goes_back_with_a_full_entry_and_keeps_its_counts(
        queue: Queue) -> None:
    await queue.add("plain", None, job_id="r1", attempts=2)  # options: an 'i' entry
    await queue.add("plain", None, job_id="r2")
    assert await _entry_names(queue) == {"r1": "i", "r2": "b"}
    jobs = _jobs(await take(queue, "w1", 2, 0))
    statuses, _, _ = await finish(queue, [retry("r2", jobs["r2"][1].decode())])
    assert statuses == [1]
    # Back to waiting after an attempt: its hash has 'atm' now, so the take must read it.
    assert await _entry_names(queue) == {"r2": "i"}
    again = _jobs(await take(queue, "w1", 1, 0))
    assert int(again["r2"][5]) == 1 and int(again["r2"][6]) == 2
