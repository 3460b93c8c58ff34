"""Calls whose first send runs while its reply is lost, so that redis-py sends them again:
the harness of the "re-sends never duplicate" tests (tests/test_break_wire.py,
tests/test_break_once.py)."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

from chaos.proxy import ChaosProxy
from helpers import wait_until

from minique import Queue, scripts
from minique.connection import connect
from minique.server import RedisServer


async def script_calls(client: Any) -> int:
    """Script calls the server has run so far (FCALL or EVALSHA; a re-send counts again)."""
    stats = await client.info("commandstats")
    return sum(int(stats.get(c, {}).get("calls", 0)) for c in ("cmdstat_fcall", "cmdstat_evalsha"))


async def ran(admin: Any, calls: int) -> bool:
    """Whether the server has run at least ``calls`` script calls so far."""
    return await script_calls(admin) >= calls


async def held_replies(proxy: ChaosProxy, admin: Any, calls: list[Awaitable[Any]]) -> list[Any]:
    """Runs ``calls`` at once on a client behind ``proxy`` (0.3 s socket timeout) so that
    each first send runs but its reply is lost: replies are held until the server has run
    them and the client, timed out, has dropped those connections; redis-py then re-sends
    each on a fresh one. Returns their outcomes (exceptions included)."""
    before = await script_calls(admin)
    n = len(calls)
    proxy.hold_replies = True
    tasks = [asyncio.ensure_future(c) for c in calls]
    try:
        await wait_until(lambda: ran(admin, before + n), timeout=10,
                         message="the first sends ran")
        pipes = len(proxy._pipes)
        await wait_until(lambda: len(proxy._pipes) <= pipes - n, timeout=10,
                         message="the client dropped the connections")
    finally:
        proxy.hold_replies = False
    await wait_until(lambda: ran(admin, before + 2 * n), timeout=10, message="the re-sends ran")
    return list(await asyncio.gather(*tasks, return_exceptions=True))


@contextlib.asynccontextmanager
async def proxied_queue(redis_server: RedisServer, name: str
                        ) -> AsyncIterator[tuple[Queue, Queue, ChaosProxy]]:
    """(queue through a proxy with a 0.3 s socket timeout, the same queue direct, proxy)."""
    proxy = await ChaosProxy(redis_server.port).start()
    direct = Queue(name, url=redis_server.url)
    await direct.obliterate(force=True)
    q = Queue(name, connection=connect(proxy.url, socket_timeout=0.3))
    try:
        # Two connections open and warm (a connection made while replies are held would
        # time out in its handshake).
        await asyncio.gather(q.redis.get("warm"), q.redis.get("warm"))
        if q._link is not None:  # the adds' own connection too (minique/own_link.py)
            await q._link.execute("PING")
        await q._write_meta()
        # Loaded before: a first call that finds its script missing would count as a send.
        await scripts.load_all(direct.redis)
        yield q, direct, proxy
    finally:
        await proxy.close()
        await q.redis.aclose()
        await q.close()
        await direct.obliterate(force=True)
        await direct.close()


async def held_around(proxy: ChaosProxy, admin: Any, call: Awaitable[Any],
                       between: Callable[[], Awaitable[Any]]) -> Any:
    """As held_replies for one call, with ``between`` run (on a direct client) after the
    first send ran and before redis-py re-sends it: another client's call that came in
    meanwhile."""
    before = await script_calls(admin)
    proxy.hold_replies = True
    task = asyncio.ensure_future(call)
    try:
        await wait_until(lambda: ran(admin, before + 1), timeout=10,
                         message="the first send ran")
        await between()
        pipes = len(proxy._pipes)
        await wait_until(lambda: len(proxy._pipes) < pipes, timeout=10,
                         message="the client dropped the connection")
    finally:
        proxy.hold_replies = False
    await wait_until(lambda: ran(admin, before + 3), timeout=10, message="the re-send ran")
    return await task
