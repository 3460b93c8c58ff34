"""Connections that pack commands in C (hiredis) rather than in redis-py's Python loop.

redis-py's asyncio ``pack_command`` encodes each argument in Python: about 15 µs for the
23 arguments of one ``add`` script call, and a visible share of a busy worker's CPU, since
every script call carries the queue's 12 keys. ``hiredis.pack_command`` builds the same
bytes in about 2 µs. Arguments hiredis refuses (None, bool, ...) go to redis-py's own
packer, so bad input still gets redis-py's ``DataError``.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from redis.asyncio.connection import Connection, SSLConnection, UnixDomainSocketConnection

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


class PackedConnection(Connection):
    def pack_command(self, *args: Any) -> list[bytes]:
        return _packed(args) or super().pack_command(*args)


class PackedSSLConnection(SSLConnection):
    def pack_command(self, *args: Any) -> list[bytes]:
        return _packed(args) or super().pack_command(*args)


class PackedUnixConnection(UnixDomainSocketConnection):
    def pack_command(self, *args: Any) -> list[bytes]:
        return _packed(args) or super().pack_command(*args)


def connection_class_for(url: str) -> type[Connection] | type[UnixDomainSocketConnection]:
    """The packed counterpart of the class redis-py would pick for ``url``'s scheme."""
    if url.startswith("rediss://"):
        return PackedSSLConnection
    if url.startswith("unix://"):
        return PackedUnixConnection
    return PackedConnection
