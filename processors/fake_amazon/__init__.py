"""A local stand-in for Amazon's SP-API, Ads API and LWA, speaking their wire formats.

Tests::

    with running_fake_amazon(seed=7) as server:
        server.url                      # http://127.0.0.1:PORT for every base URL
        server.fake.inject("searchOrders", "throttle", times=3)

Standalone: ``python -m processors.fake_amazon --port 0``.
"""

from processors.fake_amazon.clock import FakeClock
from processors.fake_amazon.dataset import DAY_ZONES, FakeSeller, SellerData, build_dataset
from processors.fake_amazon.faults import Fault, FaultAction
from processors.fake_amazon.server import FakeAmazonServer, running_fake_amazon
from processors.fake_amazon.state import FakeAmazon

__all__ = [
    "DAY_ZONES",
    "FakeAmazon",
    "FakeAmazonServer",
    "FakeClock",
    "FakeSeller",
    "Fault",
    "FaultAction",
    "SellerData",
    "build_dataset",
    "running_fake_amazon",
]
