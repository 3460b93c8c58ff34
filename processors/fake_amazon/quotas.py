"""Amazon's default usage plans, enforced per (seller, operation) like the real gateway."""

from __future__ import annotations

import threading
from collections.abc import Callable
from dataclasses import dataclass

from processors.fake_amazon.clock import FakeClock

# (rate per second, burst) from the Swagger models' "Usage Plan" tables.
SP_API_USAGE_PLANS: dict[str, tuple[float, int]] = {
    "searchOrders": (0.0056, 20),
    "listTransactions": (0.5, 10),
    "getInventorySummaries": (2.0, 2),
    "searchListingsItems": (5.0, 5),
    "createReport": (0.0167, 15),
    "getReport": (2.0, 15),
    "getReportDocument": (0.0167, 15),
    "getMarketplaceParticipations": (0.016, 15),
}

# The Ads API's limits are dynamic; these stand-ins are generous but finite.
ADS_USAGE_PLANS: dict[str, tuple[float, int]] = {
    "listProfiles": (2.0, 10),
    "createAdsReport": (1.0, 20),
    "getAdsReport": (5.0, 40),
}


@dataclass
class _Bucket:
    tokens: float
    updated: float


class UsagePlans:
    """Token buckets keyed by (seller, operation) on the fake clock."""

    def __init__(self, clock: FakeClock, scale: Callable[[], float] = lambda: 1.0) -> None:
        self._clock = clock
        self._scale = scale
        self._buckets: dict[tuple[int, str], _Bucket] = {}
        self._lock = threading.Lock()
        self.enabled = True

    @staticmethod
    def plan(operation: str) -> tuple[float, int] | None:
        return SP_API_USAGE_PLANS.get(operation) or ADS_USAGE_PLANS.get(operation)

    def take(self, seller: int, operation: str) -> float:
        """Consume one token; return 0 on success, else seconds until one is available."""
        plan = self.plan(operation)
        if plan is None or not self.enabled:
            return 0.0
        rate, burst = plan
        rate *= self._scale()
        now = self._clock.time()
        with self._lock:
            bucket = self._buckets.setdefault((seller, operation), _Bucket(float(burst), now))
            bucket.tokens = min(float(burst), bucket.tokens + (now - bucket.updated) * rate)
            bucket.updated = now
            if bucket.tokens >= 1.0:
                bucket.tokens -= 1.0
                return 0.0
            return (1.0 - bucket.tokens) / rate

    def reset(self) -> None:
        with self._lock:
            self._buckets.clear()
