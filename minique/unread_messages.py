"""Whether a pub/sub message has reached the worker and is not read yet.

A worker's runner may start held (prefetched) jobs one after another without giving the
event loop a turn (processors that never await). A control message (a job put ahead by
another process, a pause, a removal) that reaches the worker meanwhile waits on the socket,
or in the connection's buffer, until the listener task runs, while held jobs go on
starting: with jobs of a few µs, a hundred or more. A worker taking one job at a time
would have heard of it at its next fetch. So before each held start the runner asks here,
for the cost of a ``poll`` with no timeout, and gives the loop turns until the listener
has read what was there (worker.py ``_catch_up_controls``).

The peek reads redis-py's connection (``_reader``) and asyncio's StreamReader
(``_buffer``, ``_transport``) internals; where they are not there, it says False and the
runner yields as before (every RUNNER_SLICE).
"""

from __future__ import annotations

import select
from typing import Any


class UnreadMessages:
    """``pending()``: True when bytes are waiting on the pub/sub connection of ``watch``,
    on its socket or read into its buffer but not parsed. Never raises."""

    __slots__ = ("_fd", "_poll", "_pubsub")

    def __init__(self) -> None:
        self._pubsub: Any = None
        self._poll = select.poll()
        self._fd = -1

    def watch(self, pubsub: Any) -> None:
        """The redis-py ``PubSub`` whose connection to peek at (a new one after a
        reconnect)."""
        self._pubsub = pubsub

    def pending(self) -> bool:
        try:
            reader = self._pubsub.connection._reader
            if reader is None:
                return False
            if reader._buffer:  # read by the loop, not parsed by the listener yet
                return True
            sock = reader._transport.get_extra_info("socket")
            fd = sock.fileno() if sock is not None else -1
        except AttributeError:
            return False
        if fd < 0:
            return False
        if fd != self._fd:
            if self._fd >= 0:
                self._poll.unregister(self._fd)
            self._poll.register(fd, select.POLLIN)
            self._fd = fd
        return bool(self._poll.poll(0))
