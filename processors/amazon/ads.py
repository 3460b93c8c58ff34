"""Amazon Ads API: profiles and sponsored ads reporting v3 (SP, SB, SD)."""

from __future__ import annotations

import re
from datetime import date
from typing import Any

import msgspec

from processors.amazon.account import AmazonAccount
from processors.amazon.caller import AmazonCaller
from processors.amazon.errors import AmazonDecodeError
from processors.amazon.http import decode
from processors.amazon.models.ads import (
    SP_CAMPAIGNS,
    AdsReport,
    AdsReportConfiguration,
    AdsReportSpec,
    CampaignDay,
    CreateAdsReportRequest,
    Profile,
)

CREATE_REPORT_CONTENT_TYPE = "application/vnd.createasyncreportrequest.v3+json"
_DUPLICATE = re.compile(r"duplicate of\s*:\s*([A-Za-z0-9-]+)")


class AdsApi:
    def __init__(self, caller: AmazonCaller) -> None:
        self._caller = caller

    async def list_profiles(self, account: AmazonAccount) -> list[Profile]:
        """Every profile (one per marketplace) the account's Ads grant can see in its region."""
        response = await self._caller.call(
            account, api="ads_profiles", operation="listProfiles", method="GET", path="/v2/profiles"
        )
        return decode(response, list[Profile], "listProfiles")

    async def create_report(
        self, account: AmazonAccount, profile_id: str, spec: AdsReportSpec, *, start: date, end: date
    ) -> AdsReport:
        """A DAILY report of ``spec`` for ``start..end`` (inclusive, the profile's days). An
        identical request still pending (425) yields that report."""
        body = CreateAdsReportRequest(
            name=f"{spec.report_type_id}-{start.isoformat()}-{end.isoformat()}",
            start_date=start,
            end_date=end,
            configuration=AdsReportConfiguration(
                ad_product=spec.ad_product,
                report_type_id=spec.report_type_id,
                group_by=list(spec.group_by),
                columns=list(spec.columns),
                time_unit="DAILY",
                format="GZIP_JSON",
            ),
        )
        response = await self._caller.call(
            account,
            api="ads",
            profile_id=profile_id,
            operation="createAdsReport",
            method="POST",
            path="/reporting/reports",
            content=msgspec.json.encode(body),
            content_type=CREATE_REPORT_CONTENT_TYPE,
            accept=frozenset({425}),
        )
        if response.status_code == 425:
            match = _DUPLICATE.search(response.text)
            if match is None:
                raise AmazonDecodeError("createAdsReport", 425, "duplicate without a report id")
            return AdsReport(report_id=match.group(1), status="PENDING")
        return decode(response, AdsReport, "createAdsReport")

    async def create_campaign_report(
        self, account: AmazonAccount, *, start: date, end: date, profile_id: str | None = None
    ) -> AdsReport:
        """A DAILY spCampaigns report (the account's pinned profile unless one is given)."""
        profile = profile_id or account.ads_profile_id
        if not profile:
            raise ValueError(f"account {account.id} has no Ads profile id; pass profile_id")
        return await self.create_report(account, profile, SP_CAMPAIGNS, start=start, end=end)

    async def get_report(
        self, account: AmazonAccount, report_id: str, profile_id: str | None = None
    ) -> AdsReport:
        response = await self._caller.call(
            account,
            api="ads",
            profile_id=profile_id or account.ads_profile_id,
            operation="getAdsReport",
            method="GET",
            path=f"/reporting/reports/{report_id}",
        )
        return decode(response, AdsReport, "getAdsReport")

    async def download_report(self, report: AdsReport, spec: AdsReportSpec) -> list[Any]:
        """The report's rows, decoded as ``spec.row``; the URL is presigned (no auth headers)."""
        if not report.url:
            raise AmazonDecodeError("downloadAdsReport", 200, f"report {report.report_id} has no url yet")
        body = await self._caller.download(report.url, "downloadAdsReport", gzipped=True)
        try:
            rows: list[Any] = msgspec.json.decode(body, type=list[spec.row])  # type: ignore[name-defined]
        except msgspec.MsgspecError as exc:
            raise AmazonDecodeError("downloadAdsReport", 200, str(exc)) from None
        return rows

    async def download_campaign_report(self, report: AdsReport) -> list[CampaignDay]:
        rows: list[CampaignDay] = await self.download_report(report, SP_CAMPAIGNS)
        return rows
