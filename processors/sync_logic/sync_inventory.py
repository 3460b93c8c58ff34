"""FBA inventory: a full pass each run, stored as today's snapshot."""

from __future__ import annotations

import time
from datetime import datetime

from processors.amazon.account import AmazonAccount
from processors.amazon.errors import AmazonClientError, AmazonPaginationLoop
from processors.storage import schema
from processors.sync_logic.context import SyncContext
from processors.sync_logic.mapping import inventory_row
from processors.sync_logic.paging import TokenTrail

STREAM = "inventory"


async def sync_inventory(ctx: SyncContext, account: AmazonAccount, now: datetime) -> int:
    state = await ctx.db(ctx.storage.sync_state, account.id, STREAM)
    token: str | None = None
    cursor = state.cursor or {}
    # Inventory tokens expire after 30 s, so only a fresh checkpoint is worth resuming.
    if (
        cursor.get("token")
        and time.time() - float(cursor.get("saved_at", 0)) < ctx.settings.inventory_token_max_age
    ):
        token = str(cursor["token"])
    try:
        synced = await _pass(ctx, account, now, token)
    except AmazonClientError:
        if token is None:
            raise
        # The token expired between checkpoint and resume: a fresh pass is cheap and complete.
        synced = await _pass(ctx, account, now, None)
    await ctx.db(ctx.storage.save_sync_state, account.id, STREAM, now, None)
    return synced


async def _pass(ctx: SyncContext, account: AmazonAccount, now: datetime, token: str | None) -> int:
    synced = 0
    trail = TokenTrail("getInventorySummaries", token)
    while True:
        page = await ctx.client.sp.get_inventory_summaries(account, next_token=token)
        rows = [
            row
            for summary in page.payload.inventory_summaries
            if (row := inventory_row(account.id, now.date(), now, summary)) is not None
        ]
        await ctx.db(ctx.storage.upsert, schema.inventory_snapshots, rows)
        synced += len(rows)
        try:
            token = trail.follow(page.next_token)
        except AmazonPaginationLoop:
            state = await ctx.db(ctx.storage.sync_state, account.id, STREAM)
            await ctx.db(ctx.storage.save_sync_state, account.id, STREAM, state.watermark, None)
            raise
        if token is None:
            return synced
        cursor = {"token": token, "saved_at": time.time()}
        await ctx.db(ctx.storage.save_sync_state, account.id, STREAM, None, cursor)
