"""Financial transactions (sales, fees, refunds, service fees) by posted date."""

from __future__ import annotations

from datetime import datetime, timedelta

from processors.amazon.account import AmazonAccount
from processors.storage import schema
from processors.sync_logic.context import SyncContext
from processors.sync_logic.mapping import transaction_row
from processors.sync_logic.windows import resume_window

STREAM = "transactions"
SAFETY = timedelta(minutes=3)


async def sync_transactions(ctx: SyncContext, account: AmazonAccount, now: datetime) -> int:
    state = await ctx.db(ctx.storage.sync_state, account.id, STREAM)
    window = resume_window(
        state, now - SAFETY, ctx.settings.initial_lookback_days, ctx.settings.finances_overlap
    )
    synced = 0
    token = window.token
    while True:
        page = await ctx.client.sp.list_transactions(
            account,
            posted_after=window.start,
            posted_before=window.end,
            marketplace_id=account.marketplace_id,
            next_token=token,
        )
        rows = [transaction_row(account.id, tx) for tx in page.transactions]
        await ctx.db(ctx.storage.upsert, schema.financial_transactions, rows)
        synced += len(rows)
        token = page.next_token
        if token is None:
            break
        await ctx.db(ctx.storage.save_sync_state, account.id, STREAM, state.watermark, window.cursor(token))
    await ctx.db(ctx.storage.save_sync_state, account.id, STREAM, window.end, None)
    return synced
