"""A connection of its own for a caller that makes one call at a time (a producer's adds).

Each command sent through a redis-py client goes through the client's machinery: a
connection taken from the pool and given back, the retry wrapper, redis-py's own metrics
hooks, response callbacks. For one awaited ``add`` that was about 40 µs of CPU and 60 µs of
wall time per call on this 2-core machine, a third of a bare EVALSHA's client cost. A
producer's adds go one at a time anyway (``Queue._add_lock``, for the order of their
sequence numbers), so they can keep one pooled connection for themselves and write to it
directly.

What is kept: the client's retry policy (its ``Retry`` on the connection: the same errors,
attempts and backoff; a failed attempt drops the connection, the next one reconnects), the
client's timeouts, its periodic health check, and redis-py's reply parser (errors come back
as the same exceptions). A call cancelled mid-way drops the connection (redis-py's read
and minique's send both do), so no reply is ever read by the wrong call.

Only for clients on a plain ``ConnectionPool`` (what ``minique.connection.connect`` builds):
a ``BlockingConnectionPool`` of a few connections could starve if one were kept, and
cluster clients have no pool. Other clients get ``None`` from ``own_link`` and keep using
the client itself.
"""

from __future__ import annotations

import os
from typing import Any

from redis.asyncio.connection import ConnectionPool


class OwnLink:
    """Duck-types the two client methods ``minique.scripts.run`` uses (``evalsha`` and
    ``script_load``) over one connection. Not for concurrent use: callers serialise."""

    __slots__ = ("_client", "_conn", "_pid", "_pool")

    def __init__(self, client: Any, pool: ConnectionPool) -> None:
        self._client = client
        self._pool: Any = pool
        self._conn: Any = None
        self._pid = os.getpid()

    async def _connection(self) -> Any:
        if self._pid != os.getpid():  # forked: the parent's socket is not ours to use
            self._conn, self._pid = None, os.getpid()
        if self._conn is None:
            try:
                self._conn = await self._pool.get_connection()
            except TypeError:  # pragma: no cover - redis-py < 5.3 wants a command name
                self._conn = await self._pool.get_connection("EVALSHA")
        return self._conn

    async def execute(self, *args: Any) -> Any:
        """Sends one command and returns redis-py's parsed reply (a raw reply: minique's
        clients do not decode, and script replies have no callbacks)."""
        conn = await self._connection()
        packed = conn.pack_command(*args)

        async def call() -> Any:
            await conn.send_packed_command(packed)
            return await conn.read_response()

        async def failed(_error: Exception) -> None:
            await conn.disconnect()

        return await conn.retry.call_with_retry(call, failed)

    async def evalsha(self, sha: str, numkeys: int, *keys_and_args: Any) -> Any:
        return await self.execute("EVALSHA", sha, numkeys, *keys_and_args)

    async def script_load(self, source: str) -> Any:
        return await self._client.script_load(source)

    async def release(self) -> None:
        """Gives the connection back to the pool (``Queue.close``)."""
        conn, self._conn = self._conn, None
        if conn is not None and self._pid == os.getpid():
            await self._pool.release(conn)


def own_link(client: Any) -> OwnLink | None:
    """An ``OwnLink`` over ``client``'s pool, or None when the client does not qualify
    (see the module docstring)."""
    pool = getattr(client, "connection_pool", None)
    if type(pool) is not ConnectionPool or getattr(client, "single_connection_client", False):
        return None
    return OwnLink(client, pool)


__all__ = ["OwnLink", "own_link"]

