"""Listings: a full pass over searchListingsItems each run."""

from __future__ import annotations

from datetime import datetime

from processors.amazon.account import AmazonAccount
from processors.storage import schema
from processors.sync_logic.context import SyncContext
from processors.sync_logic.mapping import listing_rows

STREAM = "listings"


async def sync_listings(ctx: SyncContext, account: AmazonAccount, now: datetime) -> int:
    state = await ctx.db(ctx.storage.sync_state, account.id, STREAM)
    token = (state.cursor or {}).get("token")
    synced = 0
    while True:
        page = await ctx.client.sp.search_listings_items(
            account, page_size=ctx.settings.listings_page_size, page_token=token
        )
        rows = [row for item in page.items for row in listing_rows(account.id, item)]
        await ctx.db(ctx.storage.upsert, schema.listings, rows)
        synced += len(rows)
        token = page.next_token
        if token is None:
            break
        await ctx.db(ctx.storage.save_sync_state, account.id, STREAM, state.watermark, {"token": token})
    await ctx.db(ctx.storage.save_sync_state, account.id, STREAM, now, None)
    return synced
