"""A producer's adds on a connection of their own (minique/own_link.py): the same retries,
errors and answers as through the client, and never a reply read by the wrong call."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest
import redis.asyncio as aioredis
from proxy import ChaosProxy

from minique import Queue
from minique.connection import connect
from minique.errors import AddOutcomeUnknown
from minique.own_link import OwnLink
from minique.server import RedisServer


async def test_adds_use_one_connection_of_their_own(redis_server: RedisServer) -> None:
    q = Queue("own-link-one", url=redis_server.url)
    try:
        link = q._link
        assert isinstance(link, OwnLink)
        await q.obliterate(force=True)
        await q.add("x", 0)
        first = await link.execute("CLIENT", "ID")
        jobs = [await q.add("x", i) for i in range(1, 21)]
        assert [j.id for j in jobs] == [str(i) for i in range(2, 22)]
        assert await link.execute("CLIENT", "ID") == first  # the same connection throughout
        assert first != await q.redis.client_id()  # not the one the client's commands use
        assert (await q.get_stats())["waiting"] == 21
    finally:
        await q.obliterate(force=True)
        await q.close()


async def test_a_killed_add_connection_is_reconnected_and_scripts_reloaded(
        redis_server: RedisServer) -> None:
    q = Queue("own-link-kill", url=redis_server.url)
    admin = aioredis.Redis.from_url(redis_server.url)
    try:
        await q.obliterate(force=True)
        await q.add("warm", 0)
        assert q._link is not None
        link_id = await q._link.execute("CLIENT", "ID")
        assert await admin.client_kill_filter(_id=link_id) == 1
        # And the next add finds its code gone too (a restarted or flushed Redis).
        await admin.function_flush()
        await admin.script_flush()
        job = await q.add("after", 1)
        got = await q.get_job(job.id)
        assert got is not None and got.data == 1
        assert (await q.get_stats())["waiting"] == 2
    finally:
        await q.obliterate(force=True)
        await q.close()
        await admin.aclose()


async def test_an_add_cancelled_while_its_reply_is_held_leaves_no_reply_behind(
        redis_server: RedisServer) -> None:
    proxy = await ChaosProxy(redis_server.port).start()
    direct = Queue("own-link-cancel", url=redis_server.url)
    await direct.obliterate(force=True)
    q = Queue("own-link-cancel", connection=connect(proxy.url, socket_timeout=5))
    try:
        await q.add("warm", 0)
        proxy.hold_replies = True
        stuck = asyncio.create_task(q.add("cancelled", 1))
        await asyncio.sleep(0.3)  # sent, ran; its reply is held by the proxy
        stuck.cancel()
        with pytest.raises(asyncio.CancelledError):
            await stuck
        proxy.hold_replies = False
        # Were the held reply read by the next call, it would answer with the wrong id.
        for i in range(5):
            job = await q.add("next", i)
            got = await direct.get_job(job.id)
            assert got is not None and got.name == "next" and got.data == i
    finally:
        await proxy.close()
        await q.close()
        await direct.obliterate(force=True)
        await direct.close()


async def test_a_dead_link_still_ends_in_add_outcome_unknown(redis_server: RedisServer) -> None:
    proxy = await ChaosProxy(redis_server.port).start()
    direct = Queue("own-link-dead", url=redis_server.url)
    await direct.obliterate(force=True)
    q = Queue("own-link-dead", connection=connect(proxy.url, socket_timeout=0.3))
    try:
        await q.add("warm", 0)
        proxy.blackhole = True
        with pytest.raises(AddOutcomeUnknown) as info:
            await q.add("lost", 1)
        assert info.value.job_ids == ["2"]
        proxy.blackhole = False
        proxy.drop_all()
        job = await q.add("healed", 2)  # a new connection once the link is back
        assert job.id == "3"
    finally:
        await proxy.close()
        await q.close()
        await direct.obliterate(force=True)
        await direct.close()


async def test_clients_that_do_not_qualify_add_through_the_client(redis_server: RedisServer) -> None:
    pool: Any = aioredis.BlockingConnectionPool.from_url(redis_server.url, max_connections=2)
    client = aioredis.Redis(connection_pool=pool)
    q = Queue("own-link-blocking", connection=client)
    try:
        assert q._link is None
        await q.obliterate(force=True)
        job = await q.add("x", 1)
        assert (await q.get_job(job.id)) is not None
    finally:
        await q.obliterate(force=True)
        await q.close()
        await client.aclose()


async def test_closing_the_client_under_a_queue_that_holds_its_link_does_not_hang(
        redis_server: RedisServer) -> None:
    client = connect(redis_server.url)
    q = Queue("own-link-close", connection=client)
    await q.obliterate(force=True)
    await q.add("x", 1)
    # The application closes its client without closing the queue first.
    await asyncio.wait_for(client.aclose(), 2.0)
    direct = Queue("own-link-close", url=redis_server.url)
    await direct.obliterate(force=True)
    await direct.close()


async def test_the_link_goes_back_to_the_pool_usable(redis_server: RedisServer) -> None:
    client = connect(redis_server.url, max_connections=2)
    q = Queue("own-link-back", connection=client)
    try:
        await q.obliterate(force=True)
        await q.add("x", 1)
        await q.close()  # the link's connection is back in the pool, closed
        # Both pooled connections serve the client's own commands again.
        assert await asyncio.gather(client.ping(), client.echo("a")) == [True, b"a"]
        q2 = Queue("own-link-back", connection=client)
        await q2.add("y", 2)
        assert (await q2.get_stats())["waiting"] == 2
        await q2.obliterate(force=True)
        await q2.close()
    finally:
        await client.aclose()
