"""Amazon Ads: profiles and Sponsored Products reporting v3."""

from __future__ import annotations

import datetime as dt
from decimal import Decimal

import msgspec


class AccountInfo(msgspec.Struct, rename="camel", frozen=True):
    marketplace_string_id: str
    id: str
    type: str
    name: str | None = None


class Profile(msgspec.Struct, rename="camel", frozen=True):
    profile_id: int
    country_code: str
    currency_code: str
    account_info: AccountInfo
    timezone: str | None = None


class AdsReportConfiguration(msgspec.Struct, rename="camel", frozen=True):
    ad_product: str
    report_type_id: str
    group_by: list[str]
    columns: list[str]
    time_unit: str
    format: str


class CreateAdsReportRequest(msgspec.Struct, rename="camel", frozen=True):
    name: str
    start_date: dt.date
    end_date: dt.date
    configuration: AdsReportConfiguration


class AdsReport(msgspec.Struct, rename="camel", frozen=True):
    report_id: str
    status: str
    url: str | None = None
    url_expires_at: str | None = None
    file_size: int | None = None
    failure_reason: str | None = None


class CampaignDay(msgspec.Struct, rename="camel", frozen=True):
    """One row of a DAILY spCampaigns report."""

    date: dt.date
    campaign_id: int
    campaign_name: str | None = None
    campaign_status: str | None = None
    impressions: int = 0
    clicks: int = 0
    cost: Decimal = Decimal(0)
    purchases7d: int = 0
    sales7d: Decimal = Decimal(0)
    purchases14d: int = 0
    sales14d: Decimal = Decimal(0)


CAMPAIGN_DAY_COLUMNS = [
    "date", "campaignId", "campaignName", "campaignStatus", "impressions", "clicks", "cost",
    "purchases7d", "sales7d", "purchases14d", "sales14d",
]  # fmt: skip
