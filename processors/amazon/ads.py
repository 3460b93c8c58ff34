"""Amazon Ads API: profiles and Sponsored Products reporting v3."""

from __future__ import annotations

import gzip
import re
from collections.abc import Sequence
from datetime import date

import msgspec

from processors.amazon.account import AmazonAccount
from processors.amazon.caller import AmazonCaller
from processors.amazon.errors import AmazonDecodeError
from processors.amazon.http import decode
from processors.amazon.models.ads import (
    CAMPAIGN_DAY_COLUMNS,
    AdsReport,
    AdsReportConfiguration,
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
        response = await self._caller.call(
            account, api="ads_profiles", operation="listProfiles", method="GET", path="/v2/profiles"
        )
        return decode(response, list[Profile], "listProfiles")

    async def create_campaign_report(
        self,
        account: AmazonAccount,
        *,
        start: date,
        end: date,
        columns: Sequence[str] = CAMPAIGN_DAY_COLUMNS,
    ) -> AdsReport:
        """A DAILY spCampaigns report. An identical pending request (425) yields that report."""
        body = CreateAdsReportRequest(
            name=f"sp-campaigns-{start.isoformat()}-{end.isoformat()}",
            start_date=start,
            end_date=end,
            configuration=AdsReportConfiguration(
                ad_product="SPONSORED_PRODUCTS",
                report_type_id="spCampaigns",
                group_by=["campaign"],
                columns=list(columns),
                time_unit="DAILY",
                format="GZIP_JSON",
            ),
        )
        response = await self._caller.call(
            account,
            api="ads",
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

    async def get_report(self, account: AmazonAccount, report_id: str) -> AdsReport:
        response = await self._caller.call(
            account,
            api="ads",
            operation="getAdsReport",
            method="GET",
            path=f"/reporting/reports/{report_id}",
        )
        return decode(response, AdsReport, "getAdsReport")

    async def download_campaign_report(self, report: AdsReport) -> list[CampaignDay]:
        if not report.url:
            raise AmazonDecodeError("downloadAdsReport", 200, f"report {report.report_id} has no url yet")
        raw = await self._caller.download(report.url, "downloadAdsReport")
        try:
            body = gzip.decompress(raw)
        except (OSError, EOFError) as exc:
            raise AmazonDecodeError("downloadAdsReport", 200, f"bad gzip: {exc}") from None
        try:
            return msgspec.json.decode(body, type=list[CampaignDay])
        except msgspec.MsgspecError as exc:
            raise AmazonDecodeError("downloadAdsReport", 200, str(exc)) from None
