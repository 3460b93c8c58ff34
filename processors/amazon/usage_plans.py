"""Default SP-API usage plans (rate/s, burst) that seed the shared quota buckets."""

from __future__ import annotations

USAGE_PLANS: dict[str, tuple[float, int]] = {
    "searchOrders": (0.0056, 20),
    "listTransactions": (0.5, 10),
    "getInventorySummaries": (2.0, 2),
    "searchListingsItems": (5.0, 5),
    "createReport": (0.0167, 15),
    "getReport": (2.0, 15),
    "getReportDocument": (0.0167, 15),
    "getMarketplaceParticipations": (0.016, 15),
    # The Ads API's limits are dynamic and unpublished (a 429 says how long to wait); these
    # keep us polite while letting a first sync ask for its ~12 reports per profile at once.
    "listProfiles": (1.0, 5),
    "createAdsReport": (1.0, 20),
    "getAdsReport": (5.0, 40),
}

FALLBACK_PLAN = (1.0, 1)
# Our bucket refills a little slower than Amazon's: the two are measured on different
# clocks and requests reach Amazon after they leave our bucket, so an exact copy of the
# plan would sit on the edge and draw sporadic 429s.
HEADROOM = 0.9


def plan_for(operation: str, scale: float = 1.0) -> tuple[float, int]:
    """(tokens per second, burst) of our shared bucket for ``operation``. ``scale`` multiplies
    the rate: a seller with a higher plan, or a test's fast clock."""
    rate, burst = USAGE_PLANS.get(operation, FALLBACK_PLAN)
    return rate * HEADROOM * scale, burst
