"""Amazon Ads: profiles and sponsored ads reporting v3 (one Struct per report row shape).

Columns and report types are Amazon's (guides/reporting/v3): Sponsored Products attributes
sales within 7 days of a click (``sales7d``, what Seller Central shows sellers); Sponsored
Brands and Sponsored Display within 14 days of a click or view (``sales``).
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass
from decimal import Decimal
from typing import Any

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


class _CampaignRow(msgspec.Struct, rename="camel", frozen=True):
    """The columns every campaign report has; ``cost`` in the profile's currency."""

    date: dt.date
    campaign_id: int
    campaign_name: str | None = None
    campaign_status: str | None = None
    impressions: int = 0
    clicks: int = 0
    cost: Decimal = Decimal(0)


class CampaignDay(_CampaignRow, frozen=True):
    """One row of a DAILY spCampaigns report."""

    purchases7d: int = 0
    sales7d: Decimal = Decimal(0)
    purchases14d: int = 0
    sales14d: Decimal = Decimal(0)


class BrandOrDisplayCampaignDay(_CampaignRow, frozen=True):
    """One row of a DAILY sbCampaigns or sdCampaigns report (14-day click-or-view attribution)."""

    purchases: int = 0
    sales: Decimal = Decimal(0)


class AdvertisedProductDay(msgspec.Struct, rename="camel", frozen=True):
    """One row of a DAILY spAdvertisedProduct report: one advertised SKU in one ad."""

    date: dt.date
    campaign_id: int
    ad_group_id: int
    ad_id: int
    advertised_sku: str | None = None
    advertised_asin: str | None = None
    impressions: int = 0
    clicks: int = 0
    cost: Decimal = Decimal(0)
    purchases7d: int = 0
    sales7d: Decimal = Decimal(0)


@dataclass(frozen=True)
class AdsReportSpec:
    """What to ask for (``reportTypeId``, ``adProduct``, ``groupBy``, ``columns``) and how a
    row decodes; ``retention_days`` is how far back Amazon keeps the data."""

    report_type_id: str
    ad_product: str
    group_by: tuple[str, ...]
    columns: tuple[str, ...]
    row: type[Any]
    retention_days: int
    max_days: int = 31


SP_CAMPAIGNS = AdsReportSpec(
    "spCampaigns", "SPONSORED_PRODUCTS", ("campaign",),
    ("date", "campaignId", "campaignName", "campaignStatus", "impressions", "clicks", "cost",
     "purchases7d", "sales7d", "purchases14d", "sales14d"),
    CampaignDay, retention_days=95)
SP_ADVERTISED_PRODUCTS = AdsReportSpec(
    "spAdvertisedProduct", "SPONSORED_PRODUCTS", ("advertiser",),
    ("date", "campaignId", "adGroupId", "adId", "advertisedSku", "advertisedAsin", "impressions",
     "clicks", "cost", "purchases7d", "sales7d"),
    AdvertisedProductDay, retention_days=95)
SB_CAMPAIGNS = AdsReportSpec(
    "sbCampaigns", "SPONSORED_BRANDS", ("campaign",),
    ("date", "campaignId", "campaignName", "campaignStatus", "impressions", "clicks", "cost",
     "purchases", "sales"),
    BrandOrDisplayCampaignDay, retention_days=60)
SD_CAMPAIGNS = AdsReportSpec(
    "sdCampaigns", "SPONSORED_DISPLAY", ("campaign",),
    ("date", "campaignId", "campaignName", "campaignStatus", "impressions", "clicks", "cost",
     "purchases", "sales"),
    BrandOrDisplayCampaignDay, retention_days=65)
REPORT_SPECS: tuple[AdsReportSpec, ...] = (SP_CAMPAIGNS, SB_CAMPAIGNS, SD_CAMPAIGNS, SP_ADVERTISED_PRODUCTS)
CAMPAIGN_DAY_COLUMNS = list(SP_CAMPAIGNS.columns)
