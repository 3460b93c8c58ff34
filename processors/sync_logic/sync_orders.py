"""Orders (with their items) by last-update time, incrementally from the watermark."""

from __future__ import annotations

from datetime import datetime, timedelta

from processors.amazon.account import AmazonAccount
from processors.storage import schema
from processors.sync_logic.context import SyncContext
from processors.sync_logic.mapping import order_rows
from processors.sync_logic.windows import resume_window

STREAM = "orders"
# Amazon rejects *Before values closer than two minutes to now.
SAFETY = timedelta(minutes=3)


async def sync_orders(ctx: SyncContext, account: AmazonAccount, now: datetime) -> int:
    state = await ctx.db(ctx.storage.sync_state, account.id, STREAM)
    window = resume_window(
        state, now - SAFETY, ctx.settings.initial_lookback_days, ctx.settings.orders_overlap
    )
    synced = 0
    token = window.token
    while True:
        page = await ctx.client.sp.search_orders(
            account,
            last_updated_after=window.start,
            last_updated_before=window.end,
            page_size=ctx.settings.orders_page_size,
            pagination_token=token,
        )
        orders, items = [], []
        for order in page.orders:
            order_row, item_rows = order_rows(account.id, order)
            orders.append(order_row)
            items.extend(item_rows)
        await ctx.db(_write, ctx, orders, items)
        synced += len(orders)
        token = page.next_token
        if token is None:
            break
        # Checkpoint before asking for the next page: a 429 there resumes here.
        await ctx.db(ctx.storage.save_sync_state, account.id, STREAM, state.watermark, window.cursor(token))
    await ctx.db(ctx.storage.save_sync_state, account.id, STREAM, window.end, None)
    return synced


def _write(ctx: SyncContext, orders: list[dict[str, object]], items: list[dict[str, object]]) -> None:
    ctx.storage.upsert(schema.orders, orders)
    ctx.storage.upsert(schema.order_items, items)
