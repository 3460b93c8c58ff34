"""Orders API 2026-01-01 searchOrders (items are embedded in each order)."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated

import msgspec

from processors.amazon.models.common import Money, Pagination


class ProductPrice(msgspec.Struct, rename="camel", frozen=True):
    unit_price: Money | None = None


class Product(msgspec.Struct, rename="camel", frozen=True):
    asin: str | None = None
    title: str | None = None
    seller_sku: str | None = None
    price: ProductPrice | None = None


class ItemProceeds(msgspec.Struct, rename="camel", frozen=True):
    proceeds_total: Money | None = None


class ItemFulfillment(msgspec.Struct, rename="camel", frozen=True):
    quantity_fulfilled: int | None = None
    quantity_unfulfilled: int | None = None


class OrderItem(msgspec.Struct, rename="camel", frozen=True):
    order_item_id: str
    # Never negative on Amazon's side; a negative one would take units and revenue down
    # silently, so it is refused at decode (a clear error naming the field).
    quantity_ordered: Annotated[int, msgspec.Meta(ge=0)]
    product: Product
    proceeds: ItemProceeds | None = None
    fulfillment: ItemFulfillment | None = None


class SalesChannel(msgspec.Struct, rename="camel", frozen=True):
    channel_name: str
    marketplace_id: str | None = None
    marketplace_name: str | None = None


class OrderFulfillment(msgspec.Struct, rename="camel", frozen=True):
    fulfillment_status: str
    fulfilled_by: str | None = None


class OrderProceeds(msgspec.Struct, rename="camel", frozen=True):
    grand_total: Money | None = None


class Order(msgspec.Struct, rename="camel", frozen=True):
    order_id: str
    created_time: datetime
    last_updated_time: datetime
    sales_channel: SalesChannel
    order_items: list[OrderItem]
    fulfillment: OrderFulfillment | None = None
    proceeds: OrderProceeds | None = None


class SearchOrdersResponse(msgspec.Struct, rename="camel", frozen=True):
    orders: list[Order]
    pagination: Pagination | None = None
    created_before: datetime | None = None
    last_updated_before: datetime | None = None

    @property
    def next_token(self) -> str | None:
        return self.pagination.next_token if self.pagination else None
