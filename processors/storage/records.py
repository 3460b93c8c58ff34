"""Plain records read back from storage."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import date, datetime
from decimal import Decimal
from typing import Any


@dataclass(frozen=True)
class AccountRecord:
    id: str
    name: str
    region: str
    marketplace_ids: tuple[str, ...]
    seller_id: str
    lwa_client_id: str
    lwa_client_secret: str | None = field(default=None, repr=False)
    refresh_token: str | None = field(default=None, repr=False)
    ads_profile_id: str | None = None
    acos_target: float = 0.30
    low_stock_days: int = 14
    webhook_url: str | None = None
    # The Amazon Ads grant's refresh token; None: the SP-API one serves Ads too.
    ads_refresh_token: str | None = field(default=None, repr=False)
    enabled: bool = True
    acos_window_days: int = 7
    sales_window_days: int = 14
    no_sales_min_spend: Decimal = Decimal("10.00")


@dataclass(frozen=True)
class AdsProfileRecord:
    """An Ads profile: the account's advertising in one marketplace."""

    account_id: str
    profile_id: str
    marketplace_id: str
    country_code: str | None
    currency: str
    timezone: str


@dataclass(frozen=True)
class SyncState:
    watermark: datetime | None
    cursor: dict[str, Any] | None


@dataclass(frozen=True)
class DailyTotals:
    """One marketplace's numbers for one of its days; money in its currency.

    ``fees``: Amazon's fees on orders; ``service_fees``: account-level charges (subscription,
    storage); both positive costs, net of credits. ``ad_sales``: attributed sales (SP 7-day,
    SB/SD 14-day).
    """

    day: date
    orders: int
    units: int
    revenue: Decimal
    fees: Decimal
    service_fees: Decimal
    refunds: Decimal
    ad_spend: Decimal
    ad_sales: Decimal

    @property
    def net_proceeds(self) -> Decimal:
        """What the day leaves the seller: revenue less every cost Amazon takes for it."""
        return self.revenue - self.fees - self.service_fees - self.refunds - self.ad_spend
