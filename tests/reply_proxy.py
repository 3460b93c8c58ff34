"""A loopback TCP proxy in front of a real Redis that pairs each request with its reply
(hiredis parses both directions), so that a test can act at an exact command: run
something on the server before a request goes on (``on_request``), or at a reply and then
drop the client's connection without forwarding that reply (``on_reply`` returns
"drop"). With ``refuse`` set, new connections are closed at once (Redis unreachable).

A request forwarded is not yet run: Redis reads each connection in its own turn, so a
command another client sends from ``on_request`` may run before requests forwarded just
earlier on this connection. ``on_request`` awaits ``settled(no)`` first when its action must
come after them (CI: a FUNCTION LOAD ran before the call it was to follow, which then ran).

Written for break round 33 (tests/test_break33.py).
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Awaitable, Callable
from typing import Any

import hiredis

OnRequest = Callable[[int, Any], Awaitable[str | None]]
OnReply = Callable[[int, Any, Any], Awaitable[str | None]]


class ReplyProxy:
    def __init__(self, upstream_port: int, on_reply: OnReply | None = None,
                 on_request: OnRequest | None = None) -> None:
        self.upstream_port = upstream_port
        self.on_reply = on_reply  # (connection number, request args, reply) -> "drop" | None
        self.on_request = on_request  # (connection number, request args) -> "drop" | None
        self.refuse = False
        self.server: asyncio.Server | None = None
        self.port = 0
        self.conns = 0
        self.writers: list[asyncio.StreamWriter] = []
        self._unanswered: dict[int, list[Any]] = {}
        self._answered = asyncio.Condition()

    async def start(self) -> ReplyProxy:
        self.server = await asyncio.start_server(self._handle, "127.0.0.1", 0)
        self.port = self.server.sockets[0].getsockname()[1]
        return self

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    async def settled(self, no: int, timeout: float = 10.0) -> None:
        """Returns once Redis has answered every request forwarded on connection ``no``
        (their replies read, whether or not passed on); AssertionError after ``timeout``
        seconds."""
        async def answered() -> None:
            async with self._answered:
                await self._answered.wait_for(lambda: not self._unanswered.get(no))
        try:
            await asyncio.wait_for(answered(), timeout)
        except TimeoutError:
            raise AssertionError(f"connection {no}: requests unanswered after {timeout} s") from None

    async def close(self) -> None:
        if self.server is not None:
            self.server.close()
        for w in self.writers:
            w.close()

    async def _handle(self, creader: asyncio.StreamReader, cwriter: asyncio.StreamWriter) -> None:
        if self.refuse:
            cwriter.transport.abort()
            return
        self.conns += 1
        no = self.conns
        sreader, swriter = await asyncio.open_connection("127.0.0.1", self.upstream_port)
        self.writers += [cwriter, swriter]
        requests: list[Any] = []
        self._unanswered[no] = requests
        done = asyncio.Event()

        def abort() -> None:
            done.set()
            cwriter.transport.abort()
            swriter.transport.abort()

        async def up() -> None:
            tail = b""
            try:
                while not done.is_set():
                    data = await creader.read(65536)
                    if not data:
                        break
                    raws, tail = _split(tail, data)
                    for raw in raws:
                        request = _parsed(raw)
                        if self.on_request is not None and await self.on_request(no, request) == "drop":
                            abort()
                            return
                        requests.append(request)
                        swriter.write(raw)
                    await swriter.drain()
            except (ConnectionError, OSError):
                pass
            finally:
                done.set()
                swriter.close()
                cwriter.close()

        async def down() -> None:
            tail = b""
            try:
                while not done.is_set():
                    data = await sreader.read(65536)
                    if not data:
                        break
                    raws, tail = _split(tail, data)
                    out = bytearray()
                    for raw in raws:
                        request = requests.pop(0) if requests else None
                        async with self._answered:
                            self._answered.notify_all()
                        if (self.on_reply is not None
                                and await self.on_reply(no, request, _parsed(raw)) == "drop"):
                            cwriter.write(bytes(out))
                            abort()
                            return
                        out += raw
                    cwriter.write(bytes(out))
                    await cwriter.drain()
            except (ConnectionError, OSError):
                pass
            finally:
                done.set()
                swriter.close()
                cwriter.close()

        with contextlib.suppress(asyncio.CancelledError):
            await asyncio.gather(up(), down())


def _parsed(raw: bytes) -> Any:
    reader = hiredis.Reader()
    reader.feed(raw)
    return reader.gets()


def _split(tail: bytes, data: bytes) -> tuple[list[bytes], bytes]:
    """Whole RESP messages of ``tail + data``, and the partial one left for next time."""
    buf = tail + data
    out: list[bytes] = []
    pos = 0
    while (end := _message_end(buf, pos)) is not None:
        out.append(buf[pos:end])
        pos = end
    return out, buf[pos:]


def _message_end(buf: bytes, pos: int) -> int | None:
    if pos >= len(buf):
        return None
    nl = buf.find(b"\r\n", pos)
    if nl < 0:
        return None
    kind, line, nxt = buf[pos:pos + 1], buf[pos + 1:nl], nl + 2
    if kind in (b"+", b"-", b":", b",", b"#", b"_", b"("):
        return nxt
    if kind in (b"$", b"!", b"="):
        n = int(line)
        if n < 0:
            return nxt
        return nxt + n + 2 if nxt + n + 2 <= len(buf) else None
    if kind in (b"*", b"~", b">", b"%", b"|"):
        n = int(line) * (2 if kind in (b"%", b"|") else 1)
        p: int | None = nxt
        for _ in range(max(n, 0)):
            assert p is not None
            p = _message_end(buf, p)
            if p is None:
                return None
        return p
    raise ValueError(f"bad RESP at {pos}: {buf[pos:pos + 20]!r}")
