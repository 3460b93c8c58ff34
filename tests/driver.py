"""Drives the transition scripts directly, as a worker would, for deterministic tests."""

from __future__ import annotations

import asyncio
import itertools
from collections.abc import Awaitable, Callable
from typing import Any

from minique import Queue, scripts
from minique.worker import HEADER, JOB_FIELDS, encode_results, split_finish_reply

_calls = itertools.count(1)


async def finish(q: Queue, results: list[tuple[Any, ...]] = (), want: int = 0,  # type: ignore[assignment]
                 lease_ms: int = 30000, worker: str = "driver",
                 limiter: tuple[int, int] = (0, 0), hold: int = 0,
                 hold_ms: int = 0) -> tuple[list[int], list[tuple[str, str]], list[Any]]:
    """Reports ``results`` and fetches up to ``want`` jobs: (statuses, [(id, token)], header)."""
    # Results without a start time and attempt counts (Redis reads the counts).
    results = [(*r, *("", "")[len(r) - 8:]) if len(r) < 10 else r for r in results]
    args: list[Any] = [q.keys.job_prefix, want, lease_ms, worker, limiter[0], limiter[1], 1000,
                       hold, hold_ms, next(_calls), len(results), *encode_results(list(results))]
    reply = await scripts.run(q.redis, "finish", q.keys.vector, args)
    statuses, reply = split_finish_reply(reply, len(results))
    header = reply[:HEADER]
    body = reply[HEADER:]
    taken = [(body[i].decode(), body[i + 1].decode()) for i in range(0, len(body), JOB_FIELDS)]
    return statuses, taken, header


async def call_as(q: Queue, worker: str, call_id: int, results: list[tuple[Any, ...]],
                  hold: int = 0, lease_ms: int = 30000, hold_ms: int = 30000,
                  trust: str = "") -> tuple[list[int], list[tuple[str, str]], list[Any]]:
    """One finish call of ``worker`` with its own counting ``call_id`` (the calls record and
    trusted completions follow a worker's line of calls), holding up to ``hold`` jobs and
    naming ``trust`` ("<held version>:<take ms>:<take call>") for its C/T results:
    (statuses, [(id, token)], header)."""
    args: list[Any] = [q.keys.job_prefix, 0, lease_ms, worker, 0, 0, 1000, hold,
                       hold_ms if hold else 0, call_id, len(results),
                       *encode_results(results, trust)]
    reply = await scripts.run(q.redis, "finish", q.keys.vector, args)
    statuses, take = split_finish_reply(list(reply), len(results))
    body = take[HEADER:]
    jobs = [(body[i].decode(), body[i + 1].decode()) for i in range(0, len(body), JOB_FIELDS)]
    return [int(s) for s in statuses], jobs, take[:HEADER]


def as_an_older_version(change: Callable[[Queue, str, str], Awaitable[None]]
                        ) -> Callable[[Queue, str, str], Awaitable[None]]:
    """``change(q, job_id, token)``, as a process of a version before the held version
    made it: the same writes, with meta 'hv' left as it was (trusted completions)."""
    async def older(q: Queue, job_id: str, token: str) -> None:
        hv = await q.redis.hget(q.keys.meta, "hv")
        await change(q, job_id, token)
        if hv is None:
            await q.redis.hdel(q.keys.meta, "hv")
        else:
            await q.redis.hset(q.keys.meta, "hv", hv)
    older.__name__ = f"older_{change.__name__}"
    return older


async def fetch(q: Queue, want: int = 1, **kw: Any) -> list[tuple[str, str]]:
    return (await finish(q, [], want, **kw))[1]


def complete(job_id: str, token: str, value: bytes = b"\xc0",
             keep: tuple[int, int] = (-1, -1)) -> tuple[Any, ...]:
    return (job_id, token, "c", value, "", 0, keep[0], keep[1])


def fail(job_id: str, token: str, reason: str = "boom", keep: tuple[int, int] = (-1, -1)) -> tuple[Any, ...]:
    return (job_id, token, "f", reason, "stack", 0, keep[0], keep[1])


def retry(job_id: str, token: str, delay_ms: int = 0, reason: str = "again") -> tuple[Any, ...]:
    return (job_id, token, "r", reason, "", delay_ms, -1, -1)


def back_to_wait(job_id: str, token: str, pause_ms: int = 0) -> tuple[Any, ...]:
    return (job_id, token, "w", "rate limited", "", pause_ms, -1, -1)


async def take(q: Queue, worker: str, count: int, hold: int, lease_ms: int = 30000,
               hold_ms: int = 30000) -> Any:
    """One take as a worker's call makes it (lua/fetch.lua): ``count`` jobs for free slots,
    ``hold`` more to hold ahead for ``hold_ms``. The raw reply (header, then the jobs)."""
    return await q._run("fetch", [count, lease_ms, worker, 0, 0, 1000, hold,
                                  hold_ms if hold else 0])


async def hold(q: Queue, n: int, hold_ms: int, worker: str = "holder") -> dict[str, str]:
    """``worker`` holds the first ``n`` waiting jobs for ``hold_ms``: {id: token}."""
    raw = await take(q, worker, 0, n, hold_ms=hold_ms)
    body = raw[HEADER:]
    return {body[i].decode(): body[i + 1].decode() for i in range(0, len(body), JOB_FIELDS)}


async def hand_back(q: Queue, tokens: dict[str, str], worker: str = "holder") -> list[int]:
    """``worker`` hands back the held jobs ``tokens`` ({id: token}): their statuses."""
    statuses, _, _ = await finish(q, [(i, t, "h", "", "", 0, -1, -1) for i, t in tokens.items()],
                                  worker=worker)
    return [int(x) for x in statuses]


async def die_holding(q: Queue, job_ids: list[str]) -> None:
    """Worker "dead" holds the first waiting jobs, ``job_ids`` (lease 1 ms), and dies, as
    after a kill -9; another worker's stalled sweep (the real lua/stalled.lua) takes them
    back, marked 'hrc'."""
    from helpers import wait_until

    await take(q, "dead", 0, len(job_ids), lease_ms=1)
    for i in job_ids:
        assert await q.redis.hget(q.keys.job(i), "st") == b"held"

    async def swept() -> bool:
        await q._run("stalled", [1, 100, 100, -1, "sweeper"])
        return all([await q.redis.hget(q.keys.job(i), "hrc") == b"1"
                    and await q.redis.hget(q.keys.job(i), "st") == b"waiting" for i in job_ids])
    await wait_until(swept, timeout=5, message="the dead worker's holds taken back")


async def forget_holds(q: Queue) -> None:
    """At a test's end: the driver's holders (holds of up to 30 s, where a worker asks for at
    most 50 ms) are gone, so obliterate() need not wait their holds out."""
    await q.redis.hdel(q.keys.meta, "hu")


async def asking_holders(q: Queue, call: Any) -> asyncio.Task[Any]:
    """Starts ``call`` (a coroutine that asks the workers holding jobs of ``q`` to hand them
    back, e.g. a removal) as a task and returns it once Redis has the request (the control
    version moved), so that the test can answer as the holding worker would."""
    from helpers import wait_until

    cv = await q.redis.hget(q.keys.meta, "cv")
    task = asyncio.create_task(call)

    async def asked() -> bool:
        return await q.redis.hget(q.keys.meta, "cv") != cv
    await wait_until(asked, message="the holders asked to hand back")
    return task


async def legacy_held_firing(q: Queue, worker: str = "w") -> tuple[str, str]:
    """A scheduler's pending firing as a worker of an earlier version held it ahead (counted
    as run when taken, listed in the scheduler's 'lid'): firings are never held now (lua/
    includes/take.lua), but the upsert and removal still treat such a firing as waiting.
    Taken for a free slot, then moved to the held set with its lease, not started: (id,
    token)."""
    reply = await take(q, worker, 1, 0)
    firing, token = reply[HEADER].decode(), reply[HEADER + 1].decode()
    assert firing.startswith("sched:"), firing
    jk = q.keys.job(firing)
    score = await q.redis.zscore(q.keys.active, firing)
    async with q.redis.pipeline(transaction=True) as pipe:
        pipe.zrem(q.keys.active, firing)
        pipe.zadd(q.keys.held, {firing: score})
        pipe.hset(jk, mapping={"st": "held", "ats": 0})
        pipe.hdel(jk, "pon")
        await pipe.execute()
    return firing, token
