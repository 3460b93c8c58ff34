"""Connections that pack commands in C (hiredis) rather than in redis-py's Python loop.

redis-py's asyncio ``pack_command`` encodes each argument in Python: about 15 µs for the
23 arguments of one ``add`` script call, and a visible share of a busy worker's CPU, since
every script call carries the queue's 12 keys. ``hiredis.pack_command`` builds the same
bytes in about 2 µs. Arguments hiredis refuses (None, bool, ...) go to redis-py's own
packer, so bad input still gets redis-py's ``DataError``.

Sending, too: redis-py writes each command under ``asyncio.wait_for(drain(), timeout)``,
which on Python 3.11 wraps the drain in a Task of its own, so every command cost a task
and an extra turn of the event loop (about 40 µs of CPU per call on this 2-core machine,
30% of a bare EVALSHA's client cost). The bytes are written the same way here, and the
timeout is armed only when the socket did not take them all at once: with an empty write
buffer ``drain()`` cannot block (it still raises if the link is lost).

And it keeps cancels: 3.11's ``wait_for`` swallows a cancel that lands as the awaited
write completes, so a task cancelled during a command (a job's timeout or cancel, a
shutdown, a keeper loop) could go on as if never cancelled (measured with redis-py 8.1: 40%
of cancels landing during a plain client's GET were lost). Every write here, the first on
a fresh connection too, goes through ``asyncio.timeout``, which does not.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Iterable
from typing import Any

from redis.asyncio.connection import Connection, SSLConnection, UnixDomainSocketConnection
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import TimeoutError as RedisTimeoutError

_hiredis_pack: Callable[[tuple[Any, ...]], bytes] | None
try:
    from hiredis import pack_command as _hiredis_pack
except ImportError:  # pragma: no cover - hiredis is a dependency; this keeps redis-py's
    _hiredis_pack = None


def _packed(args: tuple[Any, ...]) -> list[bytes] | None:
    if _hiredis_pack is None:
        return None
    # redis-py sends multi-word commands ("SCRIPT LOAD") as one string and splits them.
    if args and isinstance(args[0], str) and " " in args[0]:
        args = (*args[0].split(), *args[1:])
    try:
        return [_hiredis_pack(args)]
    except TypeError:
        return None


def packed_head(args: tuple[Any, ...]) -> bytes:
    """The bulk strings of ``args`` without the array header: the fixed start of a command
    whose other arguments ``plain_add`` packs."""
    packed = _hiredis_pack(args) if _hiredis_pack is not None else _python_pack(args)
    return packed[packed.index(b"\r\n") + 2:]


def _python_pack(args: tuple[Any, ...]) -> bytes:
    out = [b"*%d\r\n" % len(args)]
    for a in args:
        raw = a.encode() if isinstance(a, str) else b"%d" % a if isinstance(a, int) else a
        out.append(b"$%d\r\n%b\r\n" % (len(raw), raw))
    return b"".join(out)


# add.lua's call for one job with the plain option tail: FCALL <function> 1 <meta> <job
# prefix> 1 <producer> (the head, the same for every such call of a producer), then the
# call's sequence number, 0 option tails, the job's id, name and data, and tail number 0.
_PLAIN_ADD = b"*13\r\n%b$%d\r\n%b\r\n$1\r\n0\r\n$%d\r\n%b\r\n$%d\r\n%b\r\n$%d\r\n%b\r\n$1\r\n0\r\n"


def plain_add(head: bytes, seq: int, job_id: str, name: str, data: bytes) -> bytes:
    """One plain job's add call, packed as ``hiredis.pack_command`` would (tested): one
    bytes format instead of ~19k instructions of hiredis's per-argument packing, about a
    tenth of a one-job add's client cost."""
    s, i, n = b"%d" % seq, job_id.encode(), name.encode()
    return _PLAIN_ADD % (head, len(s), s, len(i), i, len(n), n, len(data), data)


async def _send(conn: Any, command: bytes | str | Iterable[bytes], check_health: bool) -> None:
    """Writes ``command`` as redis-py's ``send_packed_command`` does, without its per-call
    Task, connecting first when the connection is not open."""
    if not conn.is_connected:
        # redis-py's handshake, without a health check inside it, as its own
        # send_packed_command connects (redis-py >= 6): with one, the handshake's HELLO
        # PINGs first, and against a Redis that wants a password none was given for, the
        # PING's failure reconnects, whose HELLO PINGs... (RecursionError after ~8 s).
        handshake = getattr(conn, "connect_check_health", None)
        await (handshake(check_health=False) if handshake is not None else conn.connect())
    elif check_health:
        await conn.check_health()  # may reconnect, or disconnect on failure
        if not conn.is_connected:
            await conn.connect()
    writer = conn._writer
    try:
        if isinstance(command, str):
            command = command.encode()
        writer.writelines([command] if isinstance(command, bytes) else command)
        if writer.transport.get_write_buffer_size() and conn.socket_timeout:
            async with asyncio.timeout(conn.socket_timeout):
                await writer.drain()
        else:
            await writer.drain()
    except TimeoutError:
        await conn.disconnect(nowait=True)
        raise RedisTimeoutError("Timeout writing to socket") from None
    except OSError as e:
        await conn.disconnect(nowait=True)
        err_no, errmsg = ("UNKNOWN", e.args[0]) if len(e.args) == 1 else e.args[:2]
        raise RedisConnectionError(f"Error {err_no} while writing to socket. {errmsg}.") from e
    except BaseException:
        # Part of the command may be on the wire: the connection cannot be used again.
        await conn.disconnect(nowait=True)
        raise


class PackedConnection(Connection):
    def pack_command(self, *args: Any) -> list[bytes]:
        return _packed(args) or super().pack_command(*args)

    async def send_packed_command(self, command: Any, check_health: bool = True) -> None:
        await _send(self, command, check_health)


class PackedSSLConnection(SSLConnection):
    def pack_command(self, *args: Any) -> list[bytes]:
        return _packed(args) or super().pack_command(*args)

    async def send_packed_command(self, command: Any, check_health: bool = True) -> None:
        await _send(self, command, check_health)


class PackedUnixConnection(UnixDomainSocketConnection):
    def pack_command(self, *args: Any) -> list[bytes]:
        return _packed(args) or super().pack_command(*args)

    async def send_packed_command(self, command: Any, check_health: bool = True) -> None:
        await _send(self, command, check_health)


def connection_class_for(url: str) -> type[Connection] | type[UnixDomainSocketConnection]:
    """The packed counterpart of the class redis-py would pick for ``url``'s scheme."""
    if url.startswith("rediss://"):
        return PackedSSLConnection
    if url.startswith("unix://"):
        return PackedUnixConnection
    return PackedConnection
