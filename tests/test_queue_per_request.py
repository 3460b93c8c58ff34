"""A Queue made per request on a shared client (RQ's idiom: ``Queue(connection=redis)`` in
each web request) must not use up the client's pool, nor leave sockets open.

Break round 37: each such Queue took one of the pool's connections for its adds at its
first add and kept it until ``close()``, even once garbage-collected; with a pool of 100,
request 101 failed with ``MaxConnectionsError``. The adds' own connection is now outside
the pool, closed by ``close()`` or when the Queue is garbage-collected
(minique/own_link.py).
"""

from __future__ import annotations

import gc
from typing import Any

import redis.asyncio as aredis
from helpers import wait_until

from minique import Queue


async def _clients(admin: Any) -> int:
    return len(await admin.client_list())


async def test_queues_made_per_request_and_never_closed_keep_the_pool_and_no_sockets(
        redis_url: str, qname: str) -> None:
    shared = aredis.Redis(connection_pool=aredis.ConnectionPool.from_url(redis_url,
                                                                         max_connections=5))
    admin = aredis.Redis.from_url(redis_url)
    try:
        before = await _clients(admin)
        for i in range(30):
            queue = Queue(qname, connection=shared)
            await queue.add("sync", {"request": i})
            del queue  # the request ends; nobody closes the Queue
        gc.collect()
        check = Queue(qname, connection=shared)
        assert (await check.get_stats())["waiting"] == 30
        await check.close()
        # Every abandoned Queue's socket is closed: at most the pool's 5 remain.
        await wait_until(lambda: _clients_at_most(admin, before + 5), timeout=10,
                         message="the abandoned Queues' sockets closed")
    finally:
        await shared.aclose()
        await admin.aclose()


async def _clients_at_most(admin: Any, n: int) -> bool:
    return await _clients(admin) <= n


async def test_close_closes_the_adds_connection(redis_url: str, qname: str) -> None:
    shared = aredis.Redis.from_url(redis_url)
    admin = aredis.Redis.from_url(redis_url)
    try:
        queue = Queue(qname, connection=shared)
        await queue.add("sync", None)
        with_link = await _clients(admin)
        await queue.close()
        await wait_until(lambda: _clients_at_most(admin, with_link - 1), timeout=10,
                         message="the adds' connection closed")
        await queue.add("sync", None)  # a Queue closed and used again opens a new one
        assert (await queue.get_stats())["waiting"] == 2
        await queue.close()
    finally:
        await shared.aclose()
        await admin.aclose()
