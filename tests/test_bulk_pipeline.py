"""add_bulk's chunks pipelined over the producer's own link (``Queue._stream_adds``): each
chunk's call is written while Redis runs the one before, and each reply's jobs are made
while Redis runs the next. Whatever happens to one call of the pipeline, every job is
added once, in order, and the caller is told the truth."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest
import redis.asyncio
from redis.exceptions import ConnectionError as RedisConnectionError

from minique import Queue, scripts
from minique.errors import AddOutcomeUnknown
from minique.own_link import OwnLink
from minique.queue import BULK_CHUNK, PLAIN_TAIL, _add_call_args


async def _job_count(q: Queue) -> int:
    prefix = q.keys.job_prefix
    return len([k async for k in q.redis.scan_iter(match=f"{prefix}*", count=1000)])


async def _waiting_order(q: Queue) -> list[int]:
    """The ``i`` of each waiting job, in the order workers would take them."""
    jobs = await q.get_jobs("waiting", 0, 100_000)
    return [job.data["i"] for job in jobs]


def _items(n: int) -> list[tuple[str, dict[str, int]]]:
    return [("x", {"i": i}) for i in range(n)]


async def _bulk_after_a_refusal(q: Queue, refused: Callable[[], bool]) -> None:
    """Adds 60 chunks to ``q`` (which holds one job, ``i`` -1) while its first call is
    refused unrun; every job must be added once. (60: more calls than add.lua's window of
    48 below the highest number that ran, so the refused call must go again before the
    rest outrun it.)"""
    n = 60 * BULK_CHUNK
    jobs = await q.add_bulk(_items(n))
    assert refused()
    assert sorted(job.data["i"] for job in jobs) == list(range(n))
    assert await _job_count(q) == n + 1, "a refused chunk was reported added and lost"
    assert sorted(await _waiting_order(q)) == [-1, *range(n)]


async def test_a_bulk_of_many_chunks_goes_pipelined_and_adds_each_job_once_in_order(
        redis_url: str, qname: str, monkeypatch: pytest.MonkeyPatch) -> None:
    q = Queue(qname, url=redis_url)
    assert q._link is not None
    rounds = 0
    write_each = OwnLink.write_each

    async def counted(link: OwnLink, commands: Any) -> Any:
        nonlocal rounds
        rounds += 1
        return await write_each(link, commands)

    monkeypatch.setattr(OwnLink, "write_each", counted)
    try:
        n = 4 * BULK_CHUNK + 7
        jobs = await q.add_bulk(_items(n))
        assert rounds == 1, "the chunks did not go pipelined over the link"
        assert [job.data["i"] for job in jobs] == list(range(n))
        assert len({job.id for job in jobs}) == n
        assert await _job_count(q) == n
        assert await _waiting_order(q) == list(range(n))
        stored = await q.get_job(jobs[-1].id)
        assert stored is not None and stored.data == {"i": n - 1}
    finally:
        await q.obliterate(force=True)
        await q.close()


async def test_a_call_refused_unrun_after_a_later_call_ran_is_still_added(
        redis_url: str, qname: str, monkeypatch: pytest.MonkeyPatch) -> None:
    """A call Redis refuses without running it (here: a function name it lacks, as after a
    FUNCTION FLUSH that a FUNCTION LOAD by another client undoes halfway through the
    pipeline) goes again with its number. While add.lua's record kept only the highest
    number that ran, the later calls would have made it pass for a re-send: "seen", nothing
    added, its jobs reported added and lost. The record now knows it never ran."""
    q = Queue(qname, url=redis_url)
    assert q._link is not None
    await q.add("warm", {"i": -1})  # the library loaded
    write_each = OwnLink.write_each
    refused = False

    async def first_refused(link: OwnLink, commands: Any) -> Any:
        def altered() -> Any:
            nonlocal refused
            for command in commands:
                if not refused:
                    refused = True
                    command = (command[0], "minique_no_such_function", *command[2:])
                yield command
        return await write_each(link, altered())

    monkeypatch.setattr(OwnLink, "write_each", first_refused)
    try:
        await _bulk_after_a_refusal(q, lambda: refused)
    finally:
        await q.obliterate(force=True)
        await q.close()


@pytest.mark.parametrize("mode", ["functions", "eval"])
async def test_a_bulk_after_the_code_was_flushed_adds_each_job_once(
        redis_url: str, qname: str, mode: str, monkeypatch: pytest.MonkeyPatch) -> None:
    """Functions (the producer's own link) or EVALSHA scripts (a server without
    functions: the client's pipeline): every call refused unrun goes again once the code
    is loaded, with its number."""
    if mode == "eval":
        monkeypatch.setattr(scripts, "_use_functions", False)
    q = Queue(qname, url=redis_url)
    await q.add("warm", {"i": -1})
    try:
        await (q.redis.script_flush() if mode == "eval" else q.redis.function_flush())
        n = 3 * BULK_CHUNK + 1
        jobs = await q.add_bulk(_items(n))
        assert [job.data["i"] for job in jobs] == list(range(n))
        assert await _job_count(q) == n + 1
        assert await _waiting_order(q) == [-1, *range(n)]
    finally:
        await scripts.load_library(q.redis)
        await q.obliterate(force=True)
        await q.close()


async def test_a_connection_lost_halfway_through_the_pipeline_adds_each_job_once(
        redis_url: str, qname: str, monkeypatch: pytest.MonkeyPatch) -> None:
    """The link drops after the first reply: the calls left unanswered go again with
    their sequence numbers, and those that had run answer as re-sends (nothing added
    twice); the jobs returned are the ones stored."""
    q = Queue(qname, url=redis_url)
    link = q._link
    assert link is not None
    reply, write_each = OwnLink.reply, OwnLink.write_each
    replies = rounds = 0

    async def dropping(own: OwnLink, waiter: Any) -> Any:
        nonlocal replies
        out = await reply(own, waiter)
        replies += 1
        if replies == 1:
            await own.drop()
        return out

    async def counted(own: OwnLink, commands: Any) -> Any:
        nonlocal rounds
        rounds += 1
        return await write_each(own, commands)

    monkeypatch.setattr(OwnLink, "reply", dropping)
    monkeypatch.setattr(OwnLink, "write_each", counted)
    try:
        n = 10 * BULK_CHUNK
        jobs = await q.add_bulk(_items(n))
        assert rounds >= 2, "nothing was left unanswered: the drop came too late to test"
        assert [job.data["i"] for job in jobs] == list(range(n))
        assert len({job.id for job in jobs}) == n
        assert await _job_count(q) == n
        assert await _waiting_order(q) == list(range(n))
        for job in (jobs[0], jobs[BULK_CHUNK], jobs[-1]):
            stored = await q.get_job(job.id)
            assert stored is not None and stored.data == job.data
    finally:
        await q.obliterate(force=True)
        await q.close()


async def test_a_pipeline_that_redis_never_answers_names_the_unanswered_jobs(
        redis_url: str, qname: str, monkeypatch: pytest.MonkeyPatch) -> None:
    """When the retry policy gives up, the jobs of the calls answered are in Redis and
    those of the calls never answered are named as unknown."""
    q = Queue(qname, url=redis_url)
    link = q._link
    assert link is not None
    reply = OwnLink.reply
    replies = 0

    async def lost_after_two(own: OwnLink, waiter: Any) -> Any:
        nonlocal replies
        replies += 1
        if replies > 2:
            await own.drop()
            raise RedisConnectionError("test: the link is gone")
        return await reply(own, waiter)

    monkeypatch.setattr(OwnLink, "reply", lost_after_two)
    try:
        n = 4 * BULK_CHUNK
        with pytest.raises(AddOutcomeUnknown) as info:
            await q.add_bulk(_items(n))
        unknown = set(info.value.job_ids)
        stored = await _job_count(q)
        # Two chunks answered (added, not named); the rest named, whether or not they ran.
        assert stored >= 2 * BULK_CHUNK
        assert len(unknown) == n - 2 * BULK_CHUNK
        ids = {k.decode()[len(q.keys.job_prefix):]
               async for k in q.redis.scan_iter(match=f"{q.keys.job_prefix}*", count=1000)}
        assert len(ids - unknown) == 2 * BULK_CHUNK
    finally:
        await q.obliterate(force=True)
        await q.close()


async def test_without_an_own_link_a_call_refused_unrun_after_a_later_call_ran_is_added(
        redis_url: str, qname: str, monkeypatch: pytest.MonkeyPatch) -> None:
    """The same on the client's own pipeline (a client whose pool keeps no link for the
    producer, as a BlockingConnectionPool): the refused call went again with its number,
    after the later calls had run, and its jobs were reported added and lost."""
    client = redis.asyncio.Redis(connection_pool=redis.asyncio.BlockingConnectionPool.from_url(
        redis_url, max_connections=4))
    q = Queue(qname, connection=client)
    assert q._link is None
    await q.add("warm", {"i": -1})
    queue_call = scripts.queue_call
    refused = False

    def first_refused(pipe: Any, name: str, keys: Any, args: Any) -> None:
        nonlocal refused
        if not refused:
            refused = True
            pipe.fcall("minique_no_such_function", len(keys), *keys, *args)
            return
        queue_call(pipe, name, keys, args)

    monkeypatch.setattr(scripts, "queue_call", first_refused)
    try:
        await _bulk_after_a_refusal(q, lambda: refused)
    finally:
        await q.obliterate(force=True)
        await q.close()
        await client.aclose()


async def test_the_producers_record_knows_which_numbers_ran(redis_url: str, qname: str) -> None:
    """add.lua's record: a number that ran is a re-send, one below the highest that did
    not run runs (within 48 of the highest), one further below counts as seen."""
    q = Queue(qname, url=redis_url)
    producer = "p-record-test"

    async def send(seq: int, i: int) -> int:
        call = _add_call_args([[str(10_000 + i), "x", b"\x80", *PLAIN_TAIL]], producer, seq)
        reply = await scripts.run(q.redis, "add", q._add_keys, (q.keys.job_prefix, *call))
        return int(reply[0])  # 0 ran (2: ran, ids to reserve afresh), 1 a re-send

    try:
        await q.add("warm", {"i": -1})
        assert await send(1, 1) == 0
        assert await send(3, 3) in (0, 2)  # 2 never sent yet
        assert await send(2, 2) == 0, "a number below the highest that never ran must run"
        assert [await send(s, s) for s in (1, 2, 3)] == [1, 1, 1]
        assert await send(30, 30) == 0
        assert await send(10, 10) == 0 and await send(10, 10) == 1
        assert await send(80, 80) == 0  # 80 - 48: the numbers below 32 count as seen
        assert await send(31, 31) == 1
        assert await send(40, 40) == 0
        assert [await send(s, s) for s in (40, 80)] == [1, 1]
        assert await _job_count(q) == 1 + 7
    finally:
        await q.obliterate(force=True)
        await q.close()

