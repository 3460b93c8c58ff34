"""A clock the tests can move forward without sleeping."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterable
from datetime import UTC, datetime, timedelta
from zoneinfo import ZoneInfo


class FakeClock:
    """Wall time plus an offset; ``advance`` expires tokens and refills buckets instantly.

    ``clear_of`` names IANA time zones (``"UTC"``, ``"America/Los_Angeles"``) whose midnights a
    new or reset clock keeps ``margin`` seconds away from: within that window it starts at the
    midnight plus ``margin`` instead. A test that starts just before a marketplace's midnight
    would see "yesterday" change under it, and one that starts just after would find yesterday
    not yet complete (orders can only be read up to 2 minutes before now). ``advance`` still
    crosses midnights on purpose. ``wall`` is the real clock (seconds since the epoch).
    """

    def __init__(self, clear_of: Iterable[str] = (), margin: float = 600.0,
                 wall: Callable[[], float] = time.time) -> None:
        self._wall = wall
        self._zones = [ZoneInfo(name) for name in clear_of]
        self._margin = margin
        self._lock = threading.Lock()
        self._offset = self._start_offset()

    def time(self) -> float:
        with self._lock:
            return self._wall() + self._offset

    def now(self) -> datetime:
        return datetime.fromtimestamp(self.time(), UTC)

    def advance(self, seconds: float) -> None:
        with self._lock:
            self._offset += seconds

    def reset(self) -> None:
        with self._lock:
            self._offset = self._start_offset()

    def _start_offset(self) -> float:
        """Seconds to add to wall time so that it starts ``margin`` clear of every midnight."""
        real = self._wall()
        start = real
        # Each step moves past one midnight; zones' midnights at least 2 * margin apart need
        # one step each at most.
        for _ in range(len(self._zones) + 1):
            near = [m for m in (self._nearest_midnight(start, zone) for zone in self._zones)
                    if abs(start - m) < self._margin]
            if not near:
                break
            start = max(near) + self._margin
        return start - real

    @staticmethod
    def _nearest_midnight(at: float, zone: ZoneInfo) -> float:
        local = datetime.fromtimestamp(at, zone)
        today = datetime(local.year, local.month, local.day, tzinfo=zone)
        tomorrow = datetime.combine(today.date() + timedelta(days=1), today.timetz())
        return min((today.timestamp(), tomorrow.timestamp()), key=lambda m: abs(at - m))
