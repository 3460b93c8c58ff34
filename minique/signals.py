"""SIGTERM/SIGINT for workers that run on the main thread's event loop.

Every worker of one loop joins one handler: the first signal closes them all gracefully
(running jobs get their shutdown grace, held jobs go back), a second one exits at once
(leases then return the running jobs). The handler is removed when the last worker stops.
"""

from __future__ import annotations

import asyncio
import logging
import os
import signal
import threading
from typing import Any, Protocol

log = logging.getLogger("minique.worker")
SIGNALS = (signal.SIGTERM, signal.SIGINT)


class Closable(Protocol):
    shutdown_timeout: float

    async def close(self, timeout: float | None = None) -> None: ...


class _Group:
    def __init__(self) -> None:
        self.workers: set[Closable] = set()
        self.received = 0
        self.closing: list[asyncio.Future[Any]] = []

    def on_signal(self, name: str) -> None:
        self.received += 1
        if self.received > 1:
            log.warning("second %s: exiting now; leases will return running jobs", name)
            os._exit(1)
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
        for sig in SIGNALS:
            loop.add_signal_handler(sig, group.on_signal, sig.name)
    group.workers.add(worker)


def leave(worker: Closable) -> None:
    loop = asyncio.get_running_loop()
    group = _groups.get(loop)
    if group is None:
        return
    group.workers.discard(worker)
    if not group.workers:
        del _groups[loop]
        for sig in SIGNALS:
            loop.remove_signal_handler(sig)
