"""Commands packed by hiredis: the same bytes as redis-py's packer, the same errors."""

from __future__ import annotations

import pytest
from redis.asyncio.connection import Connection
from redis.exceptions import DataError

from minique.connection import connect
from minique.packing import (
    PackedConnection,
    PackedSSLConnection,
    PackedUnixConnection,
    connection_class_for,
)

ARGS = [
    ("EVALSHA", "a" * 40, 12, *[f"{{minique:q}}:k{i}" for i in range(12)], "", b"\x81\xa1i\x05"),
    ("SET", "ключ", "ü" * 3, 0.1, 1e20, 2**70, -5, 1 / 3, b"x" * 10_000),
    ("SCRIPT LOAD", "return 1"),
    ("CONFIG GET", "maxmemory-policy"),
]


@pytest.mark.parametrize("args", ARGS)
def test_same_bytes_as_redis_py(args: tuple[object, ...]) -> None:
    ours = b"".join(PackedConnection().pack_command(*args))
    theirs = b"".join(Connection().pack_command(*args))
    assert ours == theirs


def test_connection_class_follows_the_url_scheme() -> None:
    assert connection_class_for("redis://h:1/0") is PackedConnection
    assert connection_class_for("rediss://h:1/0") is PackedSSLConnection
    assert connection_class_for("unix:///tmp/redis.sock") is PackedUnixConnection


async def test_real_server_round_trip_and_bad_input(redis_url: str) -> None:
    client = connect(redis_url)
    try:
        assert client.connection_pool.connection_class is PackedConnection
        await client.set("packing:k", "ü")
        assert await client.get("packing:k") == "ü".encode()
        sha = await client.script_load("return ARGV[1]")  # a two-word command
        assert await client.evalsha(sha, 0, "x") == b"x"
        with pytest.raises(DataError):  # redis-py's own error, not hiredis' TypeError
            await client.execute_command("SET", "packing:k", None)
        assert await client.get("packing:k") == "ü".encode()
    finally:
        await client.delete("packing:k")
        await client.aclose()
