"""A clock the tests can move forward without sleeping."""

from __future__ import annotations

import threading
import time
from datetime import UTC, datetime


class FakeClock:
    """Wall time plus an offset; ``advance`` expires tokens and refills buckets instantly."""

    def __init__(self) -> None:
        self._offset = 0.0
        self._lock = threading.Lock()

    def time(self) -> float:
        with self._lock:
            return time.time() + self._offset

    def now(self) -> datetime:
        return datetime.fromtimestamp(self.time(), UTC)

    def advance(self, seconds: float) -> None:
        with self._lock:
            self._offset += seconds

    def reset(self) -> None:
        with self._lock:
            self._offset = 0.0
