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


@dataclass(frozen=True)
class SyncState:
    watermark: datetime | None
    cursor: dict[str, Any] | None


@dataclass(frozen=True)
class DailyTotals:
    """One day's numbers for one account; money in the account's currency."""

    day: date
    orders: int
    units: int
    revenue: Decimal
    fees: Decimal
    refunds: Decimal
    ad_spend: Decimal
    ad_sales7d: Decimal
