"""A connection of its own for a caller that makes one call at a time (a producer's adds).

Each command sent through a redis-py client goes through the client's machinery: a
connection taken from the pool and given back, the retry wrapper, redis-py's own metrics
hooks, then a read through asyncio's StreamReader under a timeout context. For one awaited
``add`` the machinery cost more client CPU than the call itself: a bare EVALSHA took about
85 µs of CPU through a redis-py connection and 40 µs through a plain asyncio Protocol that
feeds hiredis (this 2-core machine, loaded). A producer's adds go one at a time anyway
(``Queue._add_lock``, for the order of their sequence numbers), so they keep one pooled
connection for themselves: redis-py opens it (AUTH, SELECT, TLS, HELLO: whatever the
client is configured with), then the link takes its transport over with a small protocol
of its own that parses replies with hiredis as they arrive.

What is kept: the client's retry policy (its ``Retry``: the same errors, attempts and
backoff; a failed attempt drops the connection, the next one reconnects), its socket
timeout (a reply that does not come in time drops the connection and raises redis-py's
``TimeoutError``), and redis-py's error classes (``NoScriptError``, ``ResponseError``...).
A call cancelled or timed out drops the connection, so no reply is ever read by the wrong
call.

The connection is made with the pool's settings but is not one of the pool's: a Queue
made per web request on a shared client (RQ's idiom) took one of its connections at its
first add and kept it until ``close()``, even once garbage-collected, and request 101 of a
pool of 100 failed with ``MaxConnectionsError`` (break round 37). It is closed by
``release`` (``Queue.close``), or by ``abandon`` once its Queue is garbage-collected.

Only for clients on a plain ``ConnectionPool`` (what ``minique.connection.connect`` builds):
a ``BlockingConnectionPool`` of a few connections could starve if one were kept, and
cluster clients have no pool. Other clients get ``None`` from ``own_link`` and keep using
the client itself.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
from collections import deque
from collections.abc import Awaitable, Iterable
from typing import Any

from redis._parsers.base import BaseParser
from redis.asyncio.connection import ConnectionPool
from redis.asyncio.retry import Retry
from redis.backoff import NoBackoff
from redis.exceptions import BusyLoadingError, InvalidResponse, RedisError, ResponseError
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import TimeoutError as RedisTimeoutError

from .packing import _packed

try:
    import hiredis

    HAVE_HIREDIS = True
except ImportError:  # pragma: no cover - hiredis is a dependency; without it, no own link
    HAVE_HIREDIS = False


class _Replies(asyncio.Protocol):
    """Replies, parsed by hiredis as bytes arrive, handed to the calls in order."""

    def __init__(self, encoding: str | None, replaced: asyncio.BaseProtocol) -> None:
        # redis-py's protocol, still told when the connection closes: its close waits
        # (``disconnect()``, a client's ``aclose()``) listen there.
        self._replaced = replaced
        kwargs: dict[str, Any] = {"protocolError": InvalidResponse,
                                  "replyError": BaseParser.parse_error}
        if encoding:
            kwargs["encoding"] = encoding
        self._reader = hiredis.Reader(**kwargs)
        self._push = getattr(hiredis, "PushNotification", None)
        self.waiters: deque[asyncio.Future[Any]] = deque()
        self.lost: Exception | None = None

    def data_received(self, data: bytes) -> None:
        self._reader.feed(data)
        while True:
            try:
                reply = self._reader.gets()
            except InvalidResponse as exc:  # the stream cannot be trusted any more
                self.connection_lost(exc)
                return
            if reply is False:
                return
            if self._push is not None and isinstance(reply, self._push):
                continue  # RESP3 push messages answer no call
            if self.waiters:
                waiter = self.waiters.popleft()
                if not waiter.done():
                    waiter.set_result(reply)

    def connection_lost(self, exc: Exception | None) -> None:
        if self.lost is None:
            self.lost = RedisConnectionError(f"Connection closed by server ({exc or 'EOF'})")
            self._replaced.connection_lost(exc)
        while self.waiters:
            waiter = self.waiters.popleft()
            if not waiter.done():
                waiter.set_exception(self.lost)


def _raised(reply: Any) -> Any:
    """``reply``, or the error it is raised: redis-py's exception for an error reply, a
    ``ResponseError`` or, for ``-LOADING``, ``BusyLoadingError`` (a ``ConnectionError``)."""
    if isinstance(reply, RedisError):
        raise reply
    return reply


class OwnLink:
    """Duck-types the client methods ``minique.scripts.run`` uses (``fcall``, ``evalsha``,
    ``function_load``, ``script_load``) over one connection. Not for concurrent use:
    callers serialise."""

    __slots__ = ("_client", "_conn", "_inflight", "_pid", "_pool", "_proto", "_since", "_timer",
                 "_timer_loop")

    def __init__(self, client: Any, pool: ConnectionPool) -> None:
        self._client = client
        self._pool: Any = pool
        self._conn: Any = None
        self._proto: _Replies | None = None
        self._pid = os.getpid()
        # The reply timeout's one timer (see _watch).
        self._inflight: asyncio.Future[Any] | None = None
        self._since = 0.0
        self._timer: asyncio.TimerHandle | None = None
        self._timer_loop: asyncio.AbstractEventLoop | None = None

    async def _ready(self) -> tuple[Any, _Replies]:
        if self._pid != os.getpid():  # forked: the parent's socket is not ours to use
            self._conn = self._proto = None
            self._pid = os.getpid()
        if self._conn is None:
            self._conn = self._pool.make_connection()  # (see the module docstring)
        conn, proto = self._conn, self._proto
        if proto is not None and proto.lost is None and conn.is_connected:
            return conn, proto
        if conn.is_connected and proto is not None:
            await conn.disconnect(nowait=True)
        await conn.connect()  # redis-py's handshake: AUTH, SELECT, HELLO, TLS...
        transport = conn._writer.transport
        if conn._reader is not None and len(getattr(conn._reader, "_buffer", b"")):
            await conn.disconnect(nowait=True)
            raise RedisConnectionError("unexpected bytes after the connection handshake")
        encoder = conn.encoder
        proto = _Replies(encoder.encoding if encoder.decode_responses else None,
                         transport.get_protocol())
        transport.set_protocol(proto)
        self._proto = proto
        return conn, proto

    async def _drop(self) -> None:
        conn, self._proto = self._conn, None
        if conn is not None:
            await conn.disconnect(nowait=True)

    def execute(self, *args: Any) -> Awaitable[Any]:
        """Sends one command and returns its raw reply (minique's clients do not decode,
        and script replies have no response callbacks); an error reply is raised as
        redis-py's exception for it."""
        return self._run(_packed(args), args)

    def execute_packed(self, packed: bytes) -> Awaitable[Any]:
        """``execute`` of a command the caller packed itself (minique/packing.py)."""
        return self._run([packed], ())

    async def write_each(self, commands: Iterable[tuple[Any, ...]]) -> list[asyncio.Future[Any]]:
        """Pipelines ``commands`` (argument tuples, made by the iterable as it goes): each is
        written as soon as it is made, so Redis runs one while the caller makes the next.
        Returns the futures of their replies, in order, for ``reply``. Connects first if need
        be; a failed connect raises redis-py's error with nothing sent. No retry here: the
        caller decides what may go again (``Queue._stream_adds``)."""
        conn, proto = await self._ready()
        loop = asyncio.get_running_loop()
        transport = conn._writer.transport
        waiters: list[asyncio.Future[Any]] = []
        for args in commands:
            waiter: asyncio.Future[Any] = loop.create_future()
            proto.waiters.append(waiter)
            transport.writelines(_packed(args) or conn.pack_command(*args))
            waiters.append(waiter)
        return waiters

    async def reply(self, waiter: asyncio.Future[Any]) -> Any:
        """The reply ``write_each`` promised, or its error raised (an error reply as
        redis-py's exception for it). The client's socket timeout counts from this wait
        on, so a long pipeline is timed by its progress. A timeout, a lost connection or a
        cancel drops the connection: no later reply can be read by the wrong command."""
        if not waiter.done() and self._conn is not None and self._conn.socket_timeout:
            self._watch(asyncio.get_running_loop(), waiter, self._conn.socket_timeout)
        try:
            return _raised(await waiter)
        except (ResponseError, BusyLoadingError):
            raise  # Redis's answer (a LOADING one refused the command unrun): the link is fine
        except BaseException:
            await self._drop()
            raise

    def retry_policy(self) -> Any:
        """The client's retry policy (redis-py's ``Retry``)."""
        return self._retry()

    async def drop(self) -> None:
        """Closes the connection (the next call reconnects)."""
        await self._drop()

    async def _run(self, packed: list[bytes] | None, args: tuple[Any, ...]) -> Any:
        """On an open connection the first attempt is made right here; only when it fails
        does the client's retry policy take over, counting it as its first failure. (Going
        through the policy's wrapper for every call, with a closure, a coroutine per layer
        and a timer handle each, had cost about a fifth of a one-job add's client
        instructions.)"""
        conn, proto = self._conn, self._proto
        if (proto is None or proto.lost is not None or self._pid != os.getpid()
                or not conn.is_connected):
            return await self._retry().call_with_retry(lambda: self._call(packed, args),
                                                        self._failed)
        try:
            reply = _raised(await self._send(conn, proto, packed, args))
        except ResponseError:
            raise  # Redis's answer: the link is fine
        except BaseException as exc:
            # Timed out, lost or cancelled: an answer may still come; nobody must read it.
            # (Or refused unrun by a Redis still loading its data: tried again, as redis-py
            # does, by the retry policy.)
            await self._drop()
            if not isinstance(exc, Exception):
                raise
            first = [exc]

            async def again() -> Any:
                if first:
                    raise first.pop()
                return await self._call(packed, args)

            return await self._retry().call_with_retry(again, self._failed)
        return reply

    async def _call(self, packed: list[bytes] | None, args: tuple[Any, ...]) -> Any:
        """One attempt, connecting first if need be (the retry policy's)."""
        conn, proto = await self._ready()
        try:
            return _raised(await self._send(conn, proto, packed, args))
        except ResponseError:
            raise
        except BaseException:
            await self._drop()
            raise

    async def _failed(self, _error: Exception) -> None:
        await self._drop()

    def _send(self, conn: Any, proto: _Replies, packed: list[bytes] | None,
              args: tuple[Any, ...]) -> asyncio.Future[Any]:
        """Writes the command; returns the future of its reply."""
        loop = asyncio.get_running_loop()
        waiter: asyncio.Future[Any] = loop.create_future()
        proto.waiters.append(waiter)
        transport = conn._writer.transport
        if packed is not None and len(packed) == 1:
            transport.write(packed[0])
        else:
            transport.writelines(packed or conn.pack_command(*args))
        timeout = conn.socket_timeout
        if timeout:
            self._watch(loop, waiter, timeout)
        return waiter

    def _watch(self, loop: asyncio.AbstractEventLoop, waiter: asyncio.Future[Any],
               timeout: float) -> None:
        """Times the reply out after ``timeout`` seconds. Calls go one at a time, so one
        timer serves them all: it is armed when none runs, and when it fires it expires
        the call in flight if that one is overdue, else waits for it again. (A timer per
        call cost a handle, a heap push and a cancel each.)"""
        self._inflight, self._since = waiter, loop.time()
        if self._timer is None or self._timer_loop is not loop:
            self._timer_loop = loop
            self._timer = loop.call_at(self._since + timeout, self._check, loop, timeout)

    def _check(self, loop: asyncio.AbstractEventLoop, timeout: float) -> None:
        self._timer = None
        waiter = self._inflight
        if waiter is None or waiter.done():
            self._inflight = None
            return  # idle: the next call arms the timer again
        due = self._since + timeout
        if loop.time() >= due:
            _expire(waiter)
        else:
            self._timer = loop.call_at(due, self._check, loop, timeout)

    def _retry(self) -> Any:
        """The client's retry policy (redis-py keeps it in the pool's connection kwargs)."""
        retry = self._pool.connection_kwargs.get("retry")
        return retry if retry is not None else Retry(NoBackoff(), 0)

    # Plain functions returning execute's coroutine: a coroutine layer less per call.
    def fcall(self, function: str, numkeys: int, *keys_and_args: Any) -> Awaitable[Any]:
        return self.execute("FCALL", function, numkeys, *keys_and_args)

    def evalsha(self, sha: str, numkeys: int, *keys_and_args: Any) -> Awaitable[Any]:
        return self.execute("EVALSHA", sha, numkeys, *keys_and_args)

    # Loading code is rare: through the client.
    async def function_load(self, source: str) -> Any:
        return await self._client.function_load(source)

    async def script_load(self, source: str) -> Any:
        return await self._client.script_load(source)

    async def release(self) -> None:
        """Closes the connection (``Queue.close``); a later call opens a new one."""
        conn, self._conn, self._proto = self._conn, None, None
        if conn is not None and self._pid == os.getpid():
            # nowait: redis-py's wait for the close listens on its own protocol, not ours.
            await conn.disconnect(nowait=True)

    def abandon(self) -> None:
        """Closes the connection's socket without waiting (its Queue was garbage-collected
        unclosed: see the module docstring). Safe from a finalizer: does nothing in a
        forked child or once the loop is closed."""
        conn, self._conn, self._proto = self._conn, None, None
        writer = getattr(conn, "_writer", None)
        if writer is not None and self._pid == os.getpid():
            with contextlib.suppress(Exception):  # (a loop closed, at interpreter exit)
                writer.transport.close()


def _expire(waiter: asyncio.Future[Any]) -> None:
    if not waiter.done():
        waiter.set_exception(RedisTimeoutError("Timeout reading from the add connection"))


def own_link(client: Any) -> OwnLink | None:
    """An ``OwnLink`` over ``client``'s pool, or None when the client does not qualify
    (see the module docstring)."""
    pool = getattr(client, "connection_pool", None)
    if (not HAVE_HIREDIS or type(pool) is not ConnectionPool
            or getattr(client, "single_connection_client", False)):
        return None
    return OwnLink(client, pool)


__all__ = ["OwnLink", "own_link"]
