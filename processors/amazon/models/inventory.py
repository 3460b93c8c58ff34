"""FBA Inventory getInventorySummaries (details=true)."""

from __future__ import annotations

import msgspec

from processors.amazon.models.common import Pagination


class ReservedQuantity(msgspec.Struct, rename="camel", frozen=True):
    total_reserved_quantity: int = 0


class InventoryDetails(msgspec.Struct, rename="camel", frozen=True):
    fulfillable_quantity: int = 0
    inbound_working_quantity: int = 0
    inbound_shipped_quantity: int = 0
    inbound_receiving_quantity: int = 0
    reserved_quantity: ReservedQuantity | None = None

    @property
    def inbound_quantity(self) -> int:
        return self.inbound_working_quantity + self.inbound_shipped_quantity + self.inbound_receiving_quantity


class InventorySummary(msgspec.Struct, rename="camel", frozen=True):
    seller_sku: str | None = None
    asin: str | None = None
    fn_sku: str | None = None
    condition: str | None = None
    product_name: str | None = None
    # Amazon sends "" here for items it has not touched recently, so keep it a string.
    last_updated_time: str | None = None
    total_quantity: int | None = None
    inventory_details: InventoryDetails | None = None


class Granularity(msgspec.Struct, rename="camel", frozen=True):
    granularity_type: str | None = None
    granularity_id: str | None = None


class InventoryPayload(msgspec.Struct, rename="camel", frozen=True):
    granularity: Granularity
    inventory_summaries: list[InventorySummary]


class GetInventorySummariesResponse(msgspec.Struct, frozen=True):
    payload: InventoryPayload
    pagination: Pagination | None = None

    @property
    def next_token(self) -> str | None:
        return self.pagination.next_token if self.pagination else None
