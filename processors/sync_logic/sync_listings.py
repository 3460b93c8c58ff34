"""Listings: a full pass over searchListingsItems each run."""

from __future__ import annotations

from datetime import datetime

from processors.amazon.account import AmazonAccount
from processors.amazon.errors import AmazonClientError, AmazonPaginationLoop
from processors.storage import schema
from processors.sync_logic.context import SyncContext
from processors.sync_logic.mapping import listing_rows
from processors.sync_logic.paging import TokenTrail

STREAM = "listings"


async def sync_listings(ctx: SyncContext, account: AmazonAccount, now: datetime) -> int:
    state = await ctx.db(ctx.storage.sync_state, account.id, STREAM)
    resumed = (state.cursor or {}).get("token")
    token = str(resumed) if resumed else None
    trail = TokenTrail("searchListingsItems", token)
    synced = 0
    while True:
        try:
            page = await ctx.client.sp.search_listings_items(
                account, page_size=ctx.settings.listings_page_size, page_token=token
            )
        except AmazonClientError:
            if token is None or token != resumed or trail.pages:
                raise
            # The checkpointed token was refused (expired): a fresh pass is complete.
            token = None
            trail = TokenTrail("searchListingsItems")
            continue
        rows = [row for item in page.items for row in listing_rows(account.id, item)]
        await ctx.db(ctx.storage.upsert, schema.listings, rows)
        synced += len(rows)
        try:
            token = trail.follow(page.next_token)
        except AmazonPaginationLoop:
            await ctx.db(ctx.storage.save_sync_state, account.id, STREAM, state.watermark, None)
            raise
        if token is None:
            break
        await ctx.db(ctx.storage.save_sync_state, account.id, STREAM, state.watermark, {"token": token})
    await ctx.db(ctx.storage.save_sync_state, account.id, STREAM, now, None)
    return synced
