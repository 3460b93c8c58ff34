"""SIGTERM/SIGINT for workers that run on the main thread's event loop.

Every worker of one loop joins one handler: the first signal closes them all gracefully
(running jobs get their shutdown grace, held jobs go back), a second one exits at once
(leases then return the running jobs). The handler is removed when the last worker stops.

The handlers are plain ``signal.signal`` ones, not the event loop's: Python runs them
between two bytecodes of the main thread even while a job holds the loop (an async
processor in a CPU loop that never yields), where a loop's handler would never run. The
first signal hands the graceful close to the loop; the second exits from the handler.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import signal
import threading
from collections.abc import Callable
from types import FrameType
from typing import Any, Protocol

log = logging.getLogger("minique.worker")
SIGNALS = (signal.SIGTERM, signal.SIGINT)


class Closable(Protocol):
    shutdown_timeout: float

    async def close(self, timeout: float | None = None) -> None: ...


def handle(on_first: Callable[[str], None]) -> Callable[[], None]:
    """Handles SIGTERM and SIGINT on the running loop's thread (the main thread): the first
    signal calls ``on_first(name)`` on the loop, a later one exits at once, from the handler
    itself, whatever the loop is doing. Returns a function that puts the previous handlers
    back."""
    loop = asyncio.get_running_loop()
    received = 0

    def on_signal(signum: int, _frame: FrameType | None) -> None:
        nonlocal received
        received += 1
        name = signal.Signals(signum).name
        if received > 1:
            log.warning("second %s: exiting now; leases will return the running jobs", name)
            os._exit(1)
        loop.call_soon_threadsafe(on_first, name)

    previous = {sig: signal.getsignal(sig) for sig in SIGNALS}
    for sig in SIGNALS:
        # The loop's own handler only for its wake-up (a signal fd): a signal that another
        # thread receives then still wakes the main thread at once, to run the one below.
        loop.add_signal_handler(sig, _nothing)
        signal.signal(sig, on_signal)

    def restore() -> None:
        for sig, handler in previous.items():
            with contextlib.suppress(RuntimeError):  # the loop is closed already
                loop.remove_signal_handler(sig)
            # None: a handler not installed from Python, which cannot be put back as such.
            signal.signal(sig, signal.SIG_DFL if handler is None else handler)

    return restore


def _nothing() -> None:
    pass


class _Group:
    def __init__(self) -> None:
        self.workers: set[Closable] = set()
        self.closing: list[asyncio.Future[Any]] = []
        self.restore: Callable[[], None] = lambda: None

    def on_signal(self, name: str) -> None:
        grace = max((w.shutdown_timeout for w in self.workers), default=0.0)
        log.warning("%s received: finishing running jobs (grace %.0fs)", name, grace)
        self.closing = [asyncio.ensure_future(w.close()) for w in list(self.workers)]


_groups: dict[asyncio.AbstractEventLoop, _Group] = {}


def may_handle() -> bool:
    """True when this is the main thread and no one else has claimed SIGTERM."""
    if threading.current_thread() is not threading.main_thread():
        return False
    loop = asyncio.get_running_loop()
    return loop in _groups or signal.getsignal(signal.SIGTERM) in (signal.SIG_DFL, None)


def join(worker: Closable) -> None:
    loop = asyncio.get_running_loop()
    group = _groups.get(loop)
    if group is None:
        group = _groups[loop] = _Group()
        group.restore = handle(group.on_signal)
    group.workers.add(worker)


def leave(worker: Closable) -> None:
    loop = asyncio.get_running_loop()
    group = _groups.get(loop)
    if group is None:
        return
    group.workers.discard(worker)
    if not group.workers:
        del _groups[loop]
        group.restore()
