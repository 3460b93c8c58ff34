"""A re-send of an add that Redis refuses (out of memory, read-only, its code missing) says
nothing of the first send: that one may have run with its reply lost, or may still arrive
late over its old connection. Before lua/fence_add.lua, the refusal was reported as the
outcome: ``add`` raised OutOfMemoryError and ``add_bulk`` raised it for 500 jobs that were
all in Redis (adding them again, as the error invites, added them twice), and a late first
send ran after the caller had been told "not added". Now the producer asks Redis whether
the call ran, and fences it off if it had not. Each test fails on the code before.
"""

from __future__ import annotations

import asyncio
from typing import Any

import pytest
import redis.asyncio as aredis
from helpers import producer_queue, wait_until
from redis.asyncio.retry import Retry
from redis.backoff import NoBackoff
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import OutOfMemoryError, ResponseError
from redis.exceptions import TimeoutError as RedisTimeoutError
from reply_proxy import ReplyProxy

from minique import Queue, scripts
from minique.errors import AddBulkIncomplete, AddOutcomeUnknown
from minique.server import RedisServer


def _is_call(request: Any, name: str) -> bool:
    return (bool(request) and request[0].upper() == b"FCALL"
            and request[1].decode().endswith("_" + name))


async def _stored(admin: Any, q: Queue) -> list[Any]:
    """The ``i`` (or name) of every job hash of ``q``, sorted (numbers first, from -1): repeats
    are jobs added twice."""
    out = []
    async for key in admin.scan_iter(match=q.keys.job_prefix + "*", count=1000):
        job = await q.get_job(key.decode()[len(q.keys.job_prefix):])
        assert job is not None
        out.append(job.data["i"] if isinstance(job.data, dict) and "i" in job.data else job.name)
    return sorted(out, key=lambda v: (isinstance(v, str), v if isinstance(v, str) else f"{v:012}"))


def _drop_first_reply(admin: Any, name: str, armed: list[bool], *,
                      then_fill_memory: bool = True) -> Any:
    """on_reply: the first reply of transition ``name`` once armed is lost with the
    connection, and (``then_fill_memory``) Redis is out of memory before the producer sends
    the call again."""
    async def on_reply(_no: int, request: Any, reply: Any) -> str | None:
        if armed[0] and _is_call(request, name) and isinstance(reply, list):
            armed[0] = False
            if then_fill_memory:
                await admin.config_set("maxmemory", "1")
            return "drop"
        return None
    return on_reply


async def test_add_whose_resend_is_refused_for_memory_after_the_first_ran_returns_the_job(
        library_server: tuple[RedisServer, Any]) -> None:
    """The first send ran, its reply was lost; the re-send was refused for memory, and add
    raised OutOfMemoryError for a job that was in Redis."""
    s, admin = library_server
    armed = [True]
    proxy = await ReplyProxy(s.port, _drop_first_reply(admin, "add", armed)).start()
    q = Queue("oom-add", url=proxy.url)
    try:
        job = await q.add("t", {"i": 1})
        assert not armed[0], "the reply was not dropped"
        await admin.config_set("maxmemory", "0")
        assert await admin.exists(q.keys.job(job.id))
        assert await _stored(admin, q) == [1]
    finally:
        await q.close()
        await proxy.close()


@pytest.mark.parametrize("pool", ["own link", "blocking pool"])
async def test_add_bulk_refused_for_memory_on_a_resend_reports_what_is_in_redis(
        library_server: tuple[RedisServer, Any], pool: str) -> None:
    """Call 1 of two ran, its reply lost; Redis is out of memory for every send after.
    add_bulk raised OutOfMemoryError for 500 jobs of which 250 or 500 were in Redis. Now
    the jobs returned or listed in ``added`` are in Redis, those in ``not_added`` are not,
    and none is there twice."""
    s, admin = library_server
    armed = [False]
    proxy = await ReplyProxy(s.port, _drop_first_reply(admin, "add", armed)).start()
    q = producer_queue(proxy.url, "oom-bulk", pool)
    try:
        await q.add("warm", {"i": -1})  # the library and the producer's record in place
        armed[0] = True
        try:
            jobs = await q.add_bulk([("t", {"i": i}) for i in range(500)])
        except AddBulkIncomplete as exc:
            added, not_added = [job.data["i"] for job in exc.added], exc.not_added
            assert isinstance(exc.__cause__, ResponseError)
        else:
            added, not_added = [job.data["i"] for job in jobs], []
        assert not armed[0], "the reply was not dropped"
        await admin.config_set("maxmemory", "0")
        assert sorted(added + not_added) == list(range(500))
        assert await _stored(admin, q) == [-1, *sorted(added)], "jobs told added/not added wrongly"
    finally:
        await q.close()
        await proxy.close()


async def test_add_with_a_parent_whose_resend_is_refused_for_memory_returns_the_child(
        library_server: tuple[RedisServer, Any]) -> None:
    """The same for add(parent=...), an add_flow call: it raised OutOfMemoryError for a
    child that was in Redis, under its parent."""
    s, admin = library_server
    armed = [False]
    proxy = await ReplyProxy(s.port, _drop_first_reply(admin, "add_flow", armed)).start()
    q = Queue("oom-child", url=proxy.url)
    try:
        parent = await q.add("parent", {}, delay=60)
        armed[0] = True
        child = await q.add("child", {"i": 1}, parent=parent)
        assert not armed[0], "the reply was not dropped"
        await admin.config_set("maxmemory", "0")
        assert await admin.exists(q.keys.job(child.id))
        assert await _stored(admin, q) == [1, "parent"]
    finally:
        await q.close()
        await proxy.close()


async def test_a_late_first_send_of_an_add_told_refused_adds_nothing(
        library_server: tuple[RedisServer, Any]) -> None:
    """The first send is held on the way (a slow path) until after the client timed out,
    sent the call again, and was refused for memory: add raised OutOfMemoryError. The first
    send then arrived and ran, and the job the caller was told was not added was in Redis
    (adding it again added it twice)."""
    s, admin = library_server
    release, held = asyncio.Event(), asyncio.Event()

    async def on_request(_no: int, request: Any) -> str | None:
        if not held.is_set() and _is_call(request, "add"):
            held.set()
            await admin.config_set("maxmemory", "1")  # the re-send will be refused
            await release.wait()
        return None

    proxy = await ReplyProxy(s.port, None, on_request).start()
    client = aredis.Redis.from_url(proxy.url, socket_timeout=0.5, retry=Retry(NoBackoff(), 2),
                                   retry_on_error=[RedisConnectionError, RedisTimeoutError])
    q = Queue("late-add", connection=client)
    try:
        with pytest.raises(OutOfMemoryError):
            await q.add("t", {"i": 1})
        assert held.is_set()
        await admin.config_set("maxmemory", "0")
        before = (await admin.info("commandstats"))["cmdstat_fcall"]["calls"]
        release.set()  # the late first send goes on to Redis

        async def late_send_ran() -> bool:
            return bool((await admin.info("commandstats"))["cmdstat_fcall"]["calls"] > before)
        await wait_until(late_send_ran, timeout=10, message="the late first send ran")
        assert await _stored(admin, q) == [], "a job told not added is in Redis"
        # The producer goes on: its next add is added, once.
        await q.add("u", {"i": 2})
        assert await _stored(admin, q) == [2]
    finally:
        release.set()
        await q.close()
        await proxy.close()


async def test_a_resent_fence_still_answers_not_run(library_server: tuple[RedisServer, Any]) -> None:
    """The fence itself can be re-sent by redis-py after a timeout: its first send marks
    the number as run, so without its call id a re-send would answer "it ran" and the
    producer would report jobs that never were added as added."""
    _s, admin = library_server
    q = Queue("fence", connection=admin)
    fn = scripts.library().function("fence_add")
    args = (1, q.keys.meta, q.keys.job_prefix, "p1", 7, "add")
    assert await admin.fcall(fn, *args, "call-a") is None
    assert await admin.fcall(fn, *args, "call-a") is None  # the re-send: the first reply
    # Another fence of the number (a new call): it counts as run now, with no ids added.
    assert (await admin.fcall(fn, *args, "call-b"))[0] == 1
    # A late add of that number is answered as a re-send and adds nothing.
    await q.add("other", {"i": 0})  # (another producer: a job to tell apart)
    reply = await scripts.run(admin, "add", (q.keys.meta,),
                              (q.keys.job_prefix, 1, "p1", 7, 0, "99", "t", b"\x80", 0))
    assert int(reply[0]) == 1
    assert not await admin.exists(q.keys.job("99"))


def _memory_refuses_add_number(admin: Any, proxy_of: list[ReplyProxy], refused: int) -> Any:
    """on_request, once armed: the producer's add call number ``refused`` (from 1) is
    refused for memory; memory is free again for the next (as when workers remove jobs)."""
    seen = [0]

    async def on_request(no: int, request: Any) -> str | None:
        if _is_call(request, "add") and seen[0] <= refused:
            seen[0] += 1
            if seen[0] in (refused, refused + 1):
                await proxy_of[0].settled(no)  # the calls before it have run
                await admin.config_set("maxmemory", "1" if seen[0] == refused else "0")
        return None
    return on_request


@pytest.mark.parametrize("pool", ["own link", "blocking pool"])
@pytest.mark.parametrize(("calls", "warm"), [(2, False), (52, True)])
async def test_a_refused_bulk_call_is_never_told_added(
        library_server: tuple[RedisServer, Any], pool: str, calls: int, warm: bool) -> None:
    """Call 1 of an add_bulk is refused for memory and the later calls run. Two ways the
    fence answered "it ran" for a call that never did, and its 250 jobs were returned as
    added and lost: a new producer's first call (the record that call 2 made knew nothing
    below it), and a call refused while 50 later ones ran before it was fenced (the record
    is exact only 48 below its top; an out-of-memory refusal did not stop the pipeline)."""
    s, admin = library_server
    proxy_of: list[ReplyProxy] = []
    proxy = await ReplyProxy(s.port, None, _memory_refuses_add_number(
        admin, proxy_of, 2 if warm else 1)).start()
    proxy_of.append(proxy)
    q = producer_queue(proxy.url, "refused-bulk", pool)
    try:
        if warm:
            await q.add("warm", {"i": -1})  # call 1; the bulk's first is call 2
        with pytest.raises(AddBulkIncomplete) as info:
            await q.add_bulk([("t", {"i": i}) for i in range(calls * 250)])
        assert info.value.not_added == list(range(250))
        await admin.config_set("maxmemory", "0")
        added = sorted(job.data["i"] for job in info.value.added)
        assert added == list(range(250, calls * 250))
        assert await _stored(admin, q) == ([-1] if warm else []) + added
    finally:
        await q.close()
        await proxy.close()


async def test_the_fence_tells_unknown_below_what_the_record_knows(
        library_server: tuple[RedisServer, Any]) -> None:
    """A number more than 48 below the record's top may have run or not: the fence says so
    (FENCEUNKNOWN) rather than "it ran", and the add raises AddOutcomeUnknown."""
    _s, admin = library_server
    q = Queue("fence-window", connection=admin)
    fn = scripts.library().function("fence_add")
    await admin.hset(q.keys.base + ":producers", "p1", "100|1")
    with pytest.raises(ResponseError, match="FENCEUNKNOWN"):
        await admin.fcall(fn, 1, q.keys.meta, q.keys.job_prefix, "p1", 51, "add", "c1")
    assert (await admin.fcall(fn, 1, q.keys.meta, q.keys.job_prefix, "p1", 52, "add", "c2"))[0] == 1
    # A record made by a producer's later call knows nothing below it: gaps.
    await admin.delete(q.keys.base + ":producers")
    await q.add("x", {})  # call 1 of this Queue's producer: no gaps
    q._add_seq += 3  # its next call is number 5, as if 2-4 were on their way
    await q.add("y", {})
    record = (await admin.hget(q.keys.base + ":producers", q._producer)).decode()
    assert record.split("|")[0] == "5:2,3,4"
    await admin.delete(q.keys.base + ":producers")
    await q.add("z", {})  # number 6, its record gone: 48 gaps below it
    record = (await admin.hget(q.keys.base + ":producers", q._producer)).decode()
    assert record.split("|")[0] == "6:1,2,3,4,5"


async def test_add_with_a_parent_that_redis_never_answers_raises_add_outcome_unknown(
        library_server: tuple[RedisServer, Any]) -> None:
    """Every reply of the add_flow call is lost: add(parent=...) raised redis-py's raw
    ConnectionError, where an add raises AddOutcomeUnknown (the child was in Redis)."""
    s, admin = library_server
    armed = [False]

    async def on_reply(_no: int, request: Any, reply: Any) -> str | None:
        return "drop" if armed[0] and _is_call(request, "add_flow") else None

    proxy = await ReplyProxy(s.port, on_reply).start()
    q = Queue("child-unknown", url=proxy.url)
    try:
        parent = await q.add("parent", {}, delay=60)
        armed[0] = True
        with pytest.raises(AddOutcomeUnknown, match="dependencies"):
            await q.add("child", {"i": 1}, parent=parent)
        with pytest.raises(AddOutcomeUnknown) as info:
            await q.add("named", {"i": 2}, parent=parent, job_id="kid-2")
        assert info.value.job_ids == ["kid-2"]
        assert await _stored(admin, q) == [1, 2, "parent"]
    finally:
        await q.close()
        await proxy.close()


@pytest.mark.parametrize("pool", ["own link", "blocking pool"])
async def test_a_resent_call_with_an_id_twice_reports_each_place(
        library_server: tuple[RedisServer, Any], pool: str) -> None:
    """One call sends job id "x" twice, the first a dedup duplicate of another job and the
    second a new job; the reply is lost and the call sent again. Its notes were keyed by the
    id sent, so both places came back as the duplicate, and the job made was never
    reported (break round 36)."""
    s, admin = library_server
    armed = [False]
    proxy = await ReplyProxy(s.port, _drop_first_reply(admin, "add", armed,
                                                       then_fill_memory=False)).start()
    q = producer_queue(proxy.url, "id-twice", pool)
    try:
        holder = await q.add("holder", {"i": 0}, dedup={"id": "d"})
        armed[0] = True
        jobs = await q.add_bulk([("a", {"i": 1}, {"job_id": "x", "dedup": {"id": "d"}}),
                                 ("b", {"i": 2}, {"job_id": "x"})])
        assert not armed[0], "the reply was not dropped"
        assert [(job.id, job.name) for job in jobs] == [(holder.id, "holder"), ("x", "b")]
        assert await _stored(admin, q) == [0, 2]
    finally:
        await q.close()
        await proxy.close()


async def test_add_bulk_reports_a_duplicate_whose_job_is_gone_as_add_does(
        library_server: tuple[RedisServer, Any]) -> None:
    """The dedup id outlives its job (a ttl): add_bulk returned a waiting job of that id
    with the item's name and data, a job never made (break round 36)."""
    _s, admin = library_server
    q = Queue("gone-holder", connection=admin)
    held = await q.add("first", {"i": 0}, dedup={"id": "d", "ttl": 60})
    assert await q.remove_job(held.id)
    single = await q.add("again", {"i": 1}, dedup={"id": "d", "ttl": 60})
    [bulk] = await q.add_bulk([("again", {"i": 2}, {"dedup": {"id": "d", "ttl": 60}})])
    for job in (single, bulk):
        assert (job.id, job.state, job.data) == (held.id, "unknown", None)
    assert await _stored(admin, q) == []
