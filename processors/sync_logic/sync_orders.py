"""Orders (with their items) by last-update time, incrementally from the watermark."""

from __future__ import annotations

from datetime import date, datetime, timedelta

from processors.amazon.account import AmazonAccount
from processors.amazon.models.orders import SearchOrdersResponse
from processors.storage import schema
from processors.sync_logic.context import SyncContext
from processors.sync_logic.mapping import order_rows
from processors.sync_logic.windowed import sync_window
from processors.sync_logic.windows import Window

STREAM = "orders"
# Amazon rejects *Before values closer than two minutes to now.
SAFETY = timedelta(minutes=3)


async def sync_orders(
    ctx: SyncContext, account: AmazonAccount, now: datetime, since: date | None = None
) -> int:
    async def fetch(window: Window, token: str | None) -> SearchOrdersResponse:
        return await ctx.client.sp.search_orders(
            account, last_updated_after=window.start, last_updated_before=window.end,
            page_size=ctx.settings.orders_page_size, pagination_token=token)

    def store(page: SearchOrdersResponse) -> int:
        orders, items = [], []
        for order in page.orders:
            order_row, item_rows = order_rows(account.id, order)
            orders.append(order_row)
            items.extend(item_rows)
        ctx.storage.upsert(schema.orders, orders)
        ctx.storage.upsert(schema.order_items, items)
        return len(orders)

    return await sync_window(ctx, account, STREAM, now - SAFETY, ctx.settings.orders_overlap,
                             fetch, store, since, operation="searchOrders")
