"""Commands packed by hiredis: the same bytes as redis-py's packer, the same errors."""

from __future__ import annotations

import asyncio
from collections.abc import Iterable

import hiredis
import pytest
from redis.asyncio.connection import Connection
from redis.exceptions import DataError
from redis.exceptions import TimeoutError as RedisTimeoutError

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


# Sending: written without redis-py's per-call Task, the same outcomes (minique/packing.py).


async def test_a_command_larger_than_the_socket_buffer_is_sent_whole(redis_url: str) -> None:
    client = connect(redis_url)
    try:
        big = b"x" * (32 * 1024 * 1024)  # far beyond what the socket takes at once
        await client.set("packing:big", big)
        assert await client.strlen("packing:big") == len(big)
    finally:
        await client.delete("packing:big")
        await client.aclose()


async def test_a_killed_connection_is_reconnected_by_the_retry(redis_url: str) -> None:
    client = connect(redis_url)
    admin = connect(redis_url)
    try:
        await client.set("packing:k", "1")
        my_id = await client.client_id()
        assert await admin.client_kill_filter(_id=my_id) == 1
        assert await client.get("packing:k") == b"1"  # written on a new connection
        assert await client.client_id() != my_id
    finally:
        await client.delete("packing:k")
        await client.aclose()
        await admin.aclose()


async def test_a_peer_that_stops_reading_times_the_write_out() -> None:
    accepted: list[asyncio.StreamWriter] = []
    handshaken = asyncio.Event()

    async def never_read(r: asyncio.StreamReader, w: asyncio.StreamWriter) -> None:
        accepted.append(w)
        # The connection handshake gets "+OK" per command (CLIENT SETINFO...), and HELLO the
        # RESP3 map redis-py 8.2+ reads ("proto" from it); after that nothing is read, so the
        # socket buffers fill up.
        while not handshaken.is_set():
            try:
                chunk = await asyncio.wait_for(r.read(65536), 0.05)
            except TimeoutError:
                continue
            lines = chunk.split(b"\r\n")
            for i, line in enumerate(lines):
                if line[:1] == b"*":
                    hello = i + 2 < len(lines) and lines[i + 2].upper() == b"HELLO"
                    w.write(b"%1\r\n+proto\r\n:3\r\n" if hello else b"+OK\r\n")

    server = await asyncio.start_server(never_read, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    conn = PackedConnection(host="127.0.0.1", port=port, socket_timeout=0.3)
    try:
        await conn.connect()
        handshaken.set()
        await asyncio.sleep(0.1)  # the server's reader is done
        with pytest.raises(RedisTimeoutError, match="writing"):
            await conn.send_packed_command(conn.pack_command("SET", "k", b"x" * 64_000_000))
        assert not conn.is_connected  # a half-written command: the connection is dropped
    finally:
        await conn.disconnect()
        for w in accepted:
            w.close()
        server.close()
        await server.wait_closed()


@pytest.mark.parametrize("fresh", [True, False], ids=["first-command", "open-connection"])
async def test_a_cancel_that_lands_as_a_command_is_written_is_kept(
        redis_url: str, monkeypatch: pytest.MonkeyPatch, fresh: bool) -> None:
    """redis-py writes under ``asyncio.wait_for``, which on Python 3.11 swallows a cancel
    that lands as the write completes: the command then ran on as if never cancelled (a
    keeper loop renewed for ever so; a CI run hung). The write below cancels its caller as
    it completes, on a connection not yet open (redis-py's own path used to send on those)
    and on an open one."""
    client = connect(redis_url)
    # Not connected yet, as a connection is when a retry sends again after a lost link.
    conn = PackedConnection(**client.connection_pool.connection_kwargs)
    marker = b"cancel-as-written"
    target: asyncio.Task[object] | None = None
    wrote_marker = False
    writelines, drain = asyncio.StreamWriter.writelines, asyncio.StreamWriter.drain

    def spying_writelines(self: asyncio.StreamWriter, data: Iterable[bytes]) -> None:
        nonlocal wrote_marker
        data = list(data)
        wrote_marker = wrote_marker or any(marker in chunk for chunk in data)
        writelines(self, data)

    async def cancelling_drain(self: asyncio.StreamWriter) -> None:
        nonlocal wrote_marker
        await drain(self)
        if wrote_marker and target is not None:
            wrote_marker = False
            target.cancel()

    async def get() -> object:
        await conn.send_command("GET", marker)
        return await conn.read_response()

    try:
        if not fresh:
            await conn.connect()
        monkeypatch.setattr(asyncio.StreamWriter, "writelines", spying_writelines)
        monkeypatch.setattr(asyncio.StreamWriter, "drain", cancelling_drain)
        target = asyncio.create_task(get())
        with pytest.raises(asyncio.CancelledError):
            await target
    finally:
        monkeypatch.undo()
        await conn.disconnect()
        await client.aclose()


def test_a_plain_one_job_add_is_packed_as_hiredis_packs_it() -> None:
    from minique import packing

    head_args = ("FCALL", "mq0123456789ab_add", 1, "{minique:q}:meta", "{minique:q}:j:", 1,
                 "0123456789abcdef")
    head = packing.packed_head(head_args)
    for seq, job_id, name, data in [(1, "1", "n", b""), (123456, "ü-ïd 7", "名前", b"\x00\r\n$5"),
                                    (10**12, "x" * 600, "noop", bytes(range(256)) * 40)]:
        expected = hiredis.pack_command((*head_args, seq, 0, job_id, name, data, 0))
        assert packing.plain_add(head, seq, job_id, name, data) == expected
    assert packing._python_pack(head_args) == hiredis.pack_command(head_args)
