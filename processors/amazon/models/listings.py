"""Listings Items 2021-08-01 searchListingsItems."""

from __future__ import annotations

from datetime import datetime

import msgspec

from processors.amazon.models.common import Money


class ItemSummary(msgspec.Struct, rename="camel", frozen=True):
    marketplace_id: str
    product_type: str
    status: list[str]
    created_date: datetime
    last_updated_date: datetime
    asin: str | None = None
    item_name: str | None = None
    fn_sku: str | None = None
    condition_type: str | None = None


class ItemOffer(msgspec.Struct, rename="camel", frozen=True):
    marketplace_id: str
    offer_type: str
    price: Money


class FulfillmentAvailability(msgspec.Struct, rename="camel", frozen=True):
    fulfillment_channel_code: str
    quantity: int | None = None


class ListingItem(msgspec.Struct, rename="camel", frozen=True):
    sku: str
    summaries: list[ItemSummary] = []
    offers: list[ItemOffer] = []
    fulfillment_availability: list[FulfillmentAvailability] = []


class ListingsPagination(msgspec.Struct, rename="camel", frozen=True):
    next_token: str | None = None
    previous_token: str | None = None


class SearchListingsItemsResponse(msgspec.Struct, rename="camel", frozen=True):
    number_of_results: int
    items: list[ListingItem]
    pagination: ListingsPagination | None = None

    @property
    def next_token(self) -> str | None:
        return self.pagination.next_token if self.pagination else None
