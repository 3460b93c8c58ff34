"""Waiting jobs counted per priority (BullMQ's ``getCountsPerPriority``).

Where the waiting jobs of a priority are (lua/includes/base.lua, lua/includes/groups.lua):

- plain jobs (priority 0) in the ready stream; LIFO jobs and plain jobs handed back by a
  worker in the priority set at scores of 2^53 and above (the LIFO and return bands);
- jobs with priority p in the priority set at scores [p * 2^32, (p + 1) * 2^32);
- jobs sent back to the head of the line (from a dead worker, rate limited) below 2^32,
  whatever their priority: read from their hash (field 'p');
- jobs workers hold ahead (waiting, to everyone else) in the held set, any priority: read
  from their hash;
- grouped jobs in their group's set, in the same bands (plus a FIFO band above 2^55).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

from .options import MAX_PRIORITY

if TYPE_CHECKING:
    from .queue import Queue

PRIO_SHIFT = 2**32
PLAIN_FROM = 2**53  # the LIFO band, the return band and a group's FIFO band: priority 0
MAX_ASKED = 1000  # priorities per call: each costs a ZCOUNT per set
GROUP_PAGE = 200  # groups per pipeline


def _checked(priorities: Sequence[int]) -> list[int]:
    if isinstance(priorities, str | bytes) or not isinstance(priorities, Sequence):
        raise TypeError(f"priorities must be a list of integers, got {priorities!r}")
    asked: list[int] = []
    for p in priorities:
        if isinstance(p, bool) or not isinstance(p, int) or not 0 <= p <= MAX_PRIORITY:
            raise ValueError(f"a priority is an integer from 0 to {MAX_PRIORITY}, got {p!r}")
        if p not in asked:
            asked.append(p)
    if len(asked) > MAX_ASKED:
        raise ValueError(f"at most {MAX_ASKED} priorities per call, got {len(asked)}")
    return asked


def _count_bands(pipe: Any, key: str, asked: list[int]) -> None:
    """Queues the reads of one sorted set: the plain bands, each asked priority's band,
    and the ids of the front band (priority read from the job)."""
    pipe.zcount(key, PLAIN_FROM, "+inf")
    for p in asked:
        if p:
            pipe.zcount(key, p * PRIO_SHIFT, f"({(p + 1) * PRIO_SHIFT}")
    pipe.zrangebyscore(key, "-inf", f"({PRIO_SHIFT}")


def _add_bands(counts: dict[int, int], replies: list[Any], asked: list[int],
               unknown: list[bytes]) -> list[Any]:
    """Adds one set's replies (as _count_bands queued them) to ``counts``; the front band's
    ids go to ``unknown``. Returns the replies left."""
    counts[0] = counts.get(0, 0) + int(replies[0])
    i = 1
    for p in asked:
        if p:
            counts[p] += int(replies[i])
            i += 1
    unknown.extend(replies[i])
    return replies[i + 1:]


async def counts_per_priority(queue: Queue, priorities: Sequence[int]) -> dict[int, int]:
    """``{priority: waiting jobs}`` for each priority asked (0: jobs without a priority,
    LIFO ones included), as ``get_stats()`` counts waiting jobs: held (prefetched) and
    grouped jobs included. The queue's own sets are read in one snapshot (MULTI/EXEC, as
    get_stats); the groups' sets follow, GROUP_PAGE groups per round trip, and the
    priorities of held jobs and of jobs sent back to the head of the line are read from
    their hashes. TypeError or
    ValueError for a bad list (at most MAX_ASKED priorities, each 0 to MAX_PRIORITY)."""
    asked = _checked(priorities)
    counts = dict.fromkeys(asked, 0)
    if not asked:
        return counts
    counts[0] = 0
    k, r = queue.keys, queue.redis
    atomic = getattr(r, "connection_pool", None) is not None  # not on Cluster
    unknown: list[bytes] = []
    async with r.pipeline(transaction=atomic) as pipe:
        pipe.xlen(k.ready)
        _count_bands(pipe, k.pri, asked)
        pipe.zrange(k.held, 0, -1)
        pipe.hget(k.meta, "gwn")
        replies = await pipe.execute()
    counts[0] += int(replies[0])
    held, grouped = _add_bands(counts, replies[1:], asked, unknown)
    unknown.extend(held)
    if int(grouped or 0) > 0:
        names = await r.zrangebyscore(f"{k.base}:groups", 1, "+inf")
        for at in range(0, len(names), GROUP_PAGE):
            async with r.pipeline(transaction=False) as pipe:
                for g in names[at:at + GROUP_PAGE]:
                    _count_bands(pipe, f"{k.base}:gw:{g.decode()}", asked)
                replies = await pipe.execute()
            while replies:
                replies = _add_bands(counts, replies, asked, unknown)
    if unknown:
        async with r.pipeline(transaction=False) as pipe:
            for job_id in unknown:
                pipe.hmget(k.job(job_id.decode()), "st", "p")
            for st, raw in await pipe.execute():
                p = max(0, int(raw or 0))  # -1: a LIFO job, priority 0
                if st is not None and p in counts:  # (a job deleted since: not counted)
                    counts[p] += 1
    return {p: counts[p] for p in asked}
