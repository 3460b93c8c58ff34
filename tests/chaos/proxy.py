"""A small TCP proxy on 127.0.0.1 that the chaos tests put between workers and Redis.

Modes: pass traffic, add latency, drop every connection, or black-hole (accept and read,
forward nothing) for as long as the test wants.
"""

from __future__ import annotations

import asyncio
import contextlib


class ChaosProxy:
    def __init__(self, upstream_port: int) -> None:
        self.upstream_port = upstream_port
        self.latency = 0.0
        self.blackhole = False
        # Replies (Redis -> client) are held back while set: the commands run, the client
        # times out waiting and re-sends, as after a stalled network.
        self.hold_replies = False
        # Everything sent while set is swallowed for good: a request or reply lost on a
        # link that went dead, which only a timeout or a re-send gets past.
        self.swallow = False
        # New connections are closed at once, as while Redis is down (connection refused).
        self.refuse = False
        self._server: asyncio.base_events.Server | None = None
        self._pipes: set[asyncio.Task[None]] = set()
        self._writers: set[asyncio.StreamWriter] = set()
        self.port = 0

    async def start(self) -> ChaosProxy:
        self._server = await asyncio.start_server(self._accept, "127.0.0.1", 0)
        self.port = self._server.sockets[0].getsockname()[1]
        return self

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    async def _accept(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        if self.refuse:
            writer.close()
            return
        try:
            up_reader, up_writer = await asyncio.open_connection("127.0.0.1", self.upstream_port)
        except OSError:
            writer.close()
            return
        self._writers.update((writer, up_writer))
        for src, dst, replies in ((reader, up_writer, False), (up_reader, writer, True)):
            task = asyncio.create_task(self._pipe(src, dst, replies))
            self._pipes.add(task)
            task.add_done_callback(self._pipes.discard)

    async def _pipe(self, src: asyncio.StreamReader, dst: asyncio.StreamWriter,
                    replies: bool) -> None:
        try:
            while data := await src.read(65536):
                if self.swallow:
                    continue
                while self.blackhole or (replies and self.hold_replies):
                    await asyncio.sleep(0.05)  # deliver nothing for now: the link is stalled
                if self.latency:
                    await asyncio.sleep(self.latency)
                dst.write(data)
                await dst.drain()
        except (OSError, asyncio.IncompleteReadError):
            pass
        finally:
            with contextlib.suppress(Exception):
                dst.close()

    def drop_all(self) -> None:
        """Cuts every open connection, as a failover or a flaky network would."""
        for w in list(self._writers):
            with contextlib.suppress(Exception):
                w.transport.abort()
        self._writers.clear()

    async def close(self) -> None:
        self.drop_all()
        if self._server:
            self._server.close()
        for task in list(self._pipes):
            task.cancel()
