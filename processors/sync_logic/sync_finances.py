"""Financial transactions (sales, fees, refunds, service fees) by posted date."""

from __future__ import annotations

from datetime import date, datetime, timedelta

from processors.amazon.account import AmazonAccount
from processors.amazon.models.finances import TransactionsPayload
from processors.storage import schema
from processors.sync_logic.context import SyncContext
from processors.sync_logic.mapping import transaction_row
from processors.sync_logic.windowed import sync_window
from processors.sync_logic.windows import Window

STREAM = "transactions"
SAFETY = timedelta(minutes=3)


async def sync_transactions(
    ctx: SyncContext, account: AmazonAccount, now: datetime, since: date | None = None
) -> int:
    async def fetch(window: Window, token: str | None) -> TransactionsPayload:
        # No marketplaceId: every marketplace of the account at once (Amazon also documents
        # that US MFN orders only come without it); rows keep their own marketplace.
        return await ctx.client.sp.list_transactions(
            account, posted_after=window.start, posted_before=window.end, next_token=token)

    def store(page: TransactionsPayload) -> int:
        rows = [transaction_row(account.id, tx) for tx in page.transactions]
        ctx.storage.upsert(schema.financial_transactions, rows)
        return len(rows)

    return await sync_window(ctx, account, STREAM, now - SAFETY, ctx.settings.finances_overlap,
                             fetch, store, since, operation="listTransactions")
