"""Break round 33: add_bulk's pipelined calls (Queue._stream_adds) and their re-sends.

Found by a break run against the pipelined add_bulk through a proxy that acts at an exact
command (tests/reply_proxy.py). add.lua's producer record kept the highest sequence number
that ran, and a call with a number at or below it counted as a re-send. With calls
pipelined, that could not tell a call that ran from one that did not: a call whose re-send
was refused unrun was sent once more with a new number and added twice; a refusal lost
with the connection, while a later call ran, was re-sent with its number and taken for a
re-send, its jobs told added and lost. The record now knows which of the last 48 numbers
ran, and every call keeps its number. Each test fails on the code before the fix.
"""

from __future__ import annotations

import asyncio
import os
from typing import Any

import pytest
import redis.asyncio as aredis
from helpers import producer_queue, server_binary, wait_until
from reply_proxy import ReplyProxy

from minique import Queue, scripts
from minique.errors import AddBulkIncomplete, AddOutcomeUnknown
from minique.server import RedisServer


def _is_add(request: Any) -> bool:
    return bool(request) and request[0].upper() == b"FCALL"


async def _items_stored(admin: Any, q: Queue) -> list[int]:
    """The ``i`` of every job hash of ``q``, sorted (repeats mean a job added twice)."""
    out = []
    async for key in admin.scan_iter(match=q.keys.job_prefix + "*", count=1000):
        job = await q.get_job(key.decode()[len(q.keys.job_prefix):])
        assert job is not None
        out.append(job.data["i"])
    return sorted(out)


async def _jobs_stored(admin: Any, q: Queue, n: int) -> bool:
    return len([k async for k in admin.scan_iter(match=q.keys.job_prefix + "*", count=1000)]) >= n


@pytest.mark.parametrize("pool", ["own link", "blocking pool"])
async def test_a_call_that_ran_and_whose_resend_was_refused_unrun_is_added_once(
        library_server: tuple[RedisServer, Any], pool: str) -> None:
    """Call 1 runs; the functions are flushed and the connection drops before its reply.
    Its re-send is refused unrun ("Function not found"). That refusal says nothing of the
    first send: sent again with a new number, its 250 jobs were added twice (1,000 hashes
    for 500 items)."""
    s, admin = library_server
    dropped = False

    async def on_reply(_no: int, request: Any, reply: Any) -> str | None:
        nonlocal dropped
        if not dropped and _is_add(request) and isinstance(reply, list) and reply[0] in (0, 2):
            dropped = True
            await admin.function_flush()
            return "drop"
        return None

    proxy = await ReplyProxy(s.port, on_reply).start()
    q = producer_queue(proxy.url, "ran-refused", pool)
    try:
        jobs = await q.add_bulk([("t", {"i": i}) for i in range(500)])  # two calls of 250
        assert dropped
        assert [job.data["i"] for job in jobs] == list(range(500))
        assert await _items_stored(admin, q) == list(range(500)), "jobs added twice"
    finally:
        await q.close()
        await proxy.close()


async def test_not_added_never_names_a_job_that_is_in_redis(
        library_server: tuple[RedisServer, Any]) -> None:
    """As above, and the functions are flushed again right after the producer reloads
    them: the re-sent call was refused twice, and its items were listed in
    ``AddBulkIncomplete.not_added`` while the first send had added them (adding them again,
    as the error says to, added them twice). Now every outcome is truthful: all added
    once, or the items listed as not added are absent."""
    s, admin = library_server
    dropped = reflushed = False

    async def on_reply(_no: int, request: Any, reply: Any) -> str | None:
        nonlocal dropped, reflushed
        if not dropped and _is_add(request) and isinstance(reply, list) and reply[0] in (0, 2):
            dropped = True
            await admin.function_flush()
            return "drop"
        if dropped and not reflushed and request and request[0].upper() == b"FUNCTION":
            reflushed = True  # the producer's reload: flushed again at once
            await admin.function_flush()
        return None

    proxy = await ReplyProxy(s.port, on_reply).start()
    q = Queue("not-added", url=proxy.url)
    try:
        try:
            jobs = await q.add_bulk([("t", {"i": i}) for i in range(500)])
        except AddBulkIncomplete as exc:
            stored = await _items_stored(admin, q)
            assert not set(exc.not_added) & set(stored), "not_added names jobs in Redis"
            assert sorted(job.data["i"] for job in exc.added) == stored
        else:
            assert [job.data["i"] for job in jobs] == list(range(500))
        assert reflushed
        stored = await _items_stored(admin, q)
        assert len(stored) == len(set(stored)), "jobs added twice"
    finally:
        await q.close()
        await proxy.close()


@pytest.mark.parametrize("pool", ["own link", "blocking pool"])
async def test_a_refusal_lost_with_the_connection_while_a_later_call_ran_is_added(
        library_server: tuple[RedisServer, Any], pool: str) -> None:
    """The functions are flushed before call 2 reaches Redis and loaded back by another
    client before call 3, which runs; the connection drops before the producer reads call
    2's refusal. Re-sent with its number, call 2 was taken for a re-send (call 3's number
    was higher): add_bulk returned 1,000 jobs, and items 250-499 were not in Redis."""
    s, admin = library_server
    source = scripts.library().source
    adds, third_sent, dropped = 0, asyncio.Event(), False

    async def on_request(no: int, request: Any) -> str | None:
        nonlocal adds
        if dropped or not _is_add(request):
            return None
        adds += 1
        if adds in (2, 3):
            # Calls 1 and 2 have run (or been refused) before the library goes or comes
            # back: otherwise call 2 could run after the load, and nothing is refused.
            await proxy.settled(no)
        if adds == 2:
            await admin.function_flush()
        elif adds == 3:
            await admin.function_load(source)
            third_sent.set()
        return None

    async def on_reply(_no: int, request: Any, reply: Any) -> str | None:
        nonlocal dropped
        if not dropped and _is_add(request) and isinstance(reply, Exception):
            await third_sent.wait()
            # Call 3 has run once calls 1 and 3 have added their 500 jobs.
            await wait_until(lambda: _jobs_stored(admin, q, 500), timeout=10,
                             message="call 3 ran")
            dropped = True
            return "drop"
        return None

    proxy = await ReplyProxy(s.port, on_reply, on_request).start()
    q = producer_queue(proxy.url, "refusal-lost", pool)
    try:
        jobs = await q.add_bulk([("t", {"i": i}) for i in range(1000)])  # four calls
        assert dropped
        assert [job.data["i"] for job in jobs] == list(range(1000))
        absent = [job.data["i"] for job in jobs if not await admin.exists(q.keys.job(job.id))]
        assert not absent, f"{len(absent)} jobs returned as added are not in Redis"
        assert await _items_stored(admin, q) == list(range(1000))
    finally:
        await q.close()
        await proxy.close()


@pytest.mark.parametrize("refusal", ["out of memory", "functions flushed"])
async def test_outcome_unknown_names_every_job_not_added(
        library_server: tuple[RedisServer, Any], refusal: str) -> None:
    """Call 2 is refused, then Redis becomes unreachable before call 3. The jobs of call 2
    were neither added nor named in ``AddOutcomeUnknown.job_ids``: told "the jobs not
    named were added", the caller lost them."""
    s, admin = library_server
    source = scripts.library().source
    adds = 0
    proxy: ReplyProxy | None = None

    async def on_request(no: int, request: Any) -> str | None:
        nonlocal adds
        if not _is_add(request):
            return None
        adds += 1
        if adds in (2, 3):
            assert proxy is not None
            await proxy.settled(no)  # call 1 runs, call 2 alone is refused
        if adds == 2:
            if refusal == "out of memory":
                await admin.config_set("maxmemory", "1")
            else:
                await admin.function_flush()
        elif adds == 3:
            await admin.config_set("maxmemory", "0")
            await admin.function_load(source, replace=True)
            assert proxy is not None
            proxy.refuse = True
            return "drop"
        return None

    proxy = await ReplyProxy(s.port, None, on_request).start()
    q = Queue("unknown", url=proxy.url)
    try:
        with pytest.raises(AddOutcomeUnknown) as info:
            await q.add_bulk([("t", {"i": i}) for i in range(1000)])
        named = set(info.value.job_ids)
        present = {key.decode()[len(q.keys.job_prefix):]
                   async for key in admin.scan_iter(match=q.keys.job_prefix + "*", count=1000)}
        # Automatic ids come from one block, in order: item i has the first id plus i.
        first = min(int(x) for x in present | named)
        lost = [i for i in range(1000) if str(first + i) not in present | named]
        assert not lost, f"{len(lost)} jobs neither added nor named as unknown"
    finally:
        await admin.config_set("maxmemory", "0")
        await q.close()
        await proxy.close()


def test_a_forked_childs_add_with_a_parent_is_a_producer_of_its_own() -> None:
    """A forked child whose first add had a parent (``add(parent=...)``) sent it under the
    parent process's producer id and next number (the fork check was in ``_send_adds``
    alone): the parent's next add was taken for a re-send and returned a Job that was not
    in Redis."""
    with RedisServer(binary=server_binary()) as s:
        q = Queue("fork", url=s.url)
        loop = asyncio.new_event_loop()
        try:
            boss = loop.run_until_complete(q.add("boss", {"who": "boss"}))
            # (asyncio connections cannot cross into the child's loop: idle ones closed.)
            loop.run_until_complete(q.redis.connection_pool.disconnect())
            read_end, write_end = os.pipe()
            pid = os.fork()
            if pid == 0:  # the child: one add with a parent, through the inherited Queue
                try:
                    job = asyncio.run(q.add("kid", {"who": "kid"}, parent=boss))
                    os.write(write_end, job.id.encode())
                finally:
                    os._exit(0)
            os.close(write_end)
            os.waitpid(pid, 0)
            kid_id = os.read(read_end, 100).decode()
            os.close(read_end)
            assert kid_id, "the child's add raised"
            mine = loop.run_until_complete(q.add("mine", {"who": "parent"}))

            async def present(job_id: str) -> bool:
                admin = aredis.Redis.from_url(s.url)
                try:
                    return bool(await admin.exists(q.keys.job(job_id)))
                finally:
                    await admin.aclose()

            missing = [who for who, job_id in (("child", kid_id), ("parent", mine.id))
                       if not loop.run_until_complete(present(job_id))]
            assert not missing, f"the {missing} add returned a Job that is not in Redis"
        finally:
            loop.run_until_complete(q.close())
            loop.close()
