"""Watches a worker's calls to Redis, so a dead link is reported and a healed one used.

redis-py waits ``socket_timeout`` (15 s) for each reply and retries silently, so a worker
cut off from Redis could wait a minute without a word, and keep waiting on a dead
connection after the link healed. The monitor sees every call a worker has in flight.
Once one has waited longer than ``warn_after``, it probes Redis on a connection of its own
every second: while the probe fails it logs a warning (at most every ``warn_every``
seconds); once the probe answers, it aborts the calls that are still stuck, and their
owners send them again. Only idempotent calls register an abort (the worker's finish
call, the blocking wait), so a re-send changes nothing twice.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Awaitable, Callable

log = logging.getLogger("minique.worker")

PROBE_TIMEOUT = 2.0  # seconds a probe may take before the link counts as down


class LinkMonitor:
    def __init__(self, label: str, probe: Callable[[], Awaitable[object]] | None, *,
                 warn_after: float = 5.0, warn_every: float = 10.0) -> None:
        self.label = label
        self.probe = probe
        self.warn_after = warn_after
        self.warn_every = warn_every
        # op name -> (loop time after which it counts as stuck, abort callback or None)
        self._ops: dict[str, tuple[float, Callable[[], None] | None]] = {}
        self._down_since: float | None = None
        self._last_warning = float("-inf")

    def begin(self, op: str, abort: Callable[[], None] | None = None, grace: float = 0.0) -> None:
        """``op`` is in flight from now; it may take ``grace`` seconds by design (a blocking
        read) before waiting counts."""
        self._ops[op] = (asyncio.get_running_loop().time() + grace, abort)

    def end(self, op: str) -> None:
        self._ops.pop(op, None)

    async def run(self, stop: asyncio.Event) -> None:
        loop = asyncio.get_running_loop()
        next_probe = 0.0
        while not stop.is_set():
            # Once a second; while the link is down, a second from the last probe's start:
            # a probe sent just before the link healed loses its reply and times out
            # (PROBE_TIMEOUT), and a further second's wait after it had made a healed link
            # take 3 s to be noticed.
            wait = 1.0 if self._down_since is None else max(0.0, next_probe - loop.time())
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(wait):
                    await stop.wait()
            if stop.is_set():
                return
            now = loop.time()
            stuck = {op: abort for op, (since, abort) in self._ops.items()
                     if now - since > self.warn_after}
            if not stuck and self._down_since is None:
                continue
            oldest = min((since for since, _ in self._ops.values()), default=now)
            next_probe = now + 1.0
            if await self._reachable():
                if self._down_since is not None:
                    log.warning("%s: Redis answers again after %.0fs", self.label,
                                now - self._down_since)
                    self._down_since = None
                for op, abort in stuck.items():
                    if abort is not None and op in self._ops:
                        log.warning("%s: %s had no answer for %.0fs although Redis answers; "
                                    "sending it again", self.label, op, now - oldest)
                        abort()
                continue
            if self._down_since is None:
                self._down_since = oldest
            if now - self._last_warning >= self.warn_every:
                self._last_warning = now
                log.warning("%s: no answer from Redis for %.0fs (%s in flight); still trying",
                            self.label, now - self._down_since, ", ".join(sorted(stuck)))

    async def _reachable(self) -> bool:
        if self.probe is None:
            return False
        try:
            async with asyncio.timeout(PROBE_TIMEOUT):
                await self.probe()
        except Exception:
            return False
        return True
