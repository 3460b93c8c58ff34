"""Selling Partner API operations, one method per documented operation.

Paged operations return one page; callers loop on ``next_token`` so that they can
checkpoint it. A 429 raises ``AmazonRateLimited`` whose ``resume_token`` is the token
that was being requested.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import UTC, datetime

import msgspec

from processors.amazon.account import AmazonAccount
from processors.amazon.caller import AmazonCaller
from processors.amazon.http import decode
from processors.amazon.models.finances import ListTransactionsResponse, TransactionsPayload
from processors.amazon.models.inventory import GetInventorySummariesResponse
from processors.amazon.models.listings import SearchListingsItemsResponse
from processors.amazon.models.orders import SearchOrdersResponse
from processors.amazon.models.reports import (
    CreateReportResponse,
    CreateReportSpecification,
    Report,
    ReportDocument,
)
from processors.amazon.models.sellers import (
    MarketplaceParticipation,
    MarketplaceParticipationsResponse,
)

ORDER_DATASETS = ("PROCEEDS", "FULFILLMENT")
LISTING_DATASETS = ("summaries", "offers", "fulfillmentAvailability")


def iso(moment: datetime) -> str:
    return moment.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


class SellingPartnerApi:
    def __init__(self, caller: AmazonCaller) -> None:
        self._caller = caller

    async def search_orders(
        self,
        account: AmazonAccount,
        *,
        last_updated_after: datetime | None = None,
        last_updated_before: datetime | None = None,
        created_after: datetime | None = None,
        created_before: datetime | None = None,
        page_size: int = 100,
        pagination_token: str | None = None,
        included_data: Sequence[str] = ORDER_DATASETS,
    ) -> SearchOrdersResponse:
        params = {
            "marketplaceIds": ",".join(account.marketplace_ids),
            "maxResultsPerPage": str(page_size),
        }
        for name, value in (
            ("lastUpdatedAfter", last_updated_after),
            ("lastUpdatedBefore", last_updated_before),
            ("createdAfter", created_after),
            ("createdBefore", created_before),
        ):
            if value is not None:
                params[name] = iso(value)
        if included_data:
            params["includedData"] = ",".join(included_data)
        if pagination_token:
            params["paginationToken"] = pagination_token
        response = await self._caller.call(
            account,
            api="sp",
            operation="searchOrders",
            method="GET",
            path="/orders/2026-01-01/orders",
            params=params,
            resume_token=pagination_token,
        )
        return decode(response, SearchOrdersResponse, "searchOrders")

    async def list_transactions(
        self,
        account: AmazonAccount,
        *,
        posted_after: datetime,
        posted_before: datetime | None = None,
        marketplace_id: str | None = None,
        next_token: str | None = None,
    ) -> TransactionsPayload:
        params = {"postedAfter": iso(posted_after)}
        if posted_before is not None:
            params["postedBefore"] = iso(posted_before)
        if marketplace_id:
            params["marketplaceId"] = marketplace_id
        if next_token:
            params["nextToken"] = next_token
        response = await self._caller.call(
            account,
            api="sp",
            operation="listTransactions",
            method="GET",
            path="/finances/2024-06-19/transactions",
            params=params,
            resume_token=next_token,
        )
        return decode(response, ListTransactionsResponse, "listTransactions").payload

    async def get_inventory_summaries(
        self,
        account: AmazonAccount,
        *,
        marketplace_id: str | None = None,
        next_token: str | None = None,
        seller_skus: Sequence[str] = (),
    ) -> GetInventorySummariesResponse:
        marketplace = marketplace_id or account.marketplace_id
        params = {
            "details": "true",
            "granularityType": "Marketplace",
            "granularityId": marketplace,
            "marketplaceIds": marketplace,
        }
        if seller_skus:
            params["sellerSkus"] = ",".join(seller_skus)
        if next_token:
            params["nextToken"] = next_token
        response = await self._caller.call(
            account,
            api="sp",
            operation="getInventorySummaries",
            method="GET",
            path="/fba/inventory/v1/summaries",
            params=params,
            resume_token=next_token,
        )
        return decode(response, GetInventorySummariesResponse, "getInventorySummaries")

    async def search_listings_items(
        self,
        account: AmazonAccount,
        *,
        page_size: int = 20,
        page_token: str | None = None,
        included_data: Sequence[str] = LISTING_DATASETS,
    ) -> SearchListingsItemsResponse:
        params = {
            "marketplaceIds": ",".join(account.marketplace_ids),
            "includedData": ",".join(included_data),
            "pageSize": str(page_size),
        }
        if page_token:
            params["pageToken"] = page_token
        response = await self._caller.call(
            account,
            api="sp",
            operation="searchListingsItems",
            method="GET",
            path=f"/listings/2021-08-01/items/{account.seller_id}",
            params=params,
            resume_token=page_token,
        )
        return decode(response, SearchListingsItemsResponse, "searchListingsItems")

    async def create_report(
        self,
        account: AmazonAccount,
        report_type: str,
        *,
        data_start_time: datetime | None = None,
        data_end_time: datetime | None = None,
    ) -> str:
        spec = CreateReportSpecification(
            report_type=report_type,
            marketplace_ids=list(account.marketplace_ids),
            data_start_time=data_start_time,
            data_end_time=data_end_time,
        )
        response = await self._caller.call(
            account,
            api="sp",
            operation="createReport",
            method="POST",
            path="/reports/2021-06-30/reports",
            content=msgspec.json.encode(spec),
        )
        return decode(response, CreateReportResponse, "createReport").report_id

    async def get_report(self, account: AmazonAccount, report_id: str) -> Report:
        response = await self._caller.call(
            account,
            api="sp",
            operation="getReport",
            method="GET",
            path=f"/reports/2021-06-30/reports/{report_id}",
        )
        return decode(response, Report, "getReport")

    async def get_report_document(self, account: AmazonAccount, document_id: str) -> ReportDocument:
        response = await self._caller.call(
            account,
            api="sp",
            operation="getReportDocument",
            method="GET",
            path=f"/reports/2021-06-30/documents/{document_id}",
        )
        return decode(response, ReportDocument, "getReportDocument")

    async def download_report_document(self, document: ReportDocument) -> bytes:
        """The document's bytes, gunzipped when the document says GZIP."""
        return await self._caller.download(document.url, "downloadReportDocument",
                                           gzipped=document.compression_algorithm == "GZIP")

    async def get_marketplace_participations(self, account: AmazonAccount) -> list[MarketplaceParticipation]:
        response = await self._caller.call(
            account,
            api="sp",
            operation="getMarketplaceParticipations",
            method="GET",
            path="/sellers/v1/marketplaceParticipations",
        )
        return decode(response, MarketplaceParticipationsResponse, "getMarketplaceParticipations").payload
