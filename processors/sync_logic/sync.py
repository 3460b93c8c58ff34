"""``sync_account``: the data-sync and manual-sync jobs' work, without the queue."""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Iterable
from datetime import datetime

from processors.amazon.account import AmazonAccount
from processors.sync_logic.accounts import resolve_account
from processors.sync_logic.context import Progress, SyncContext
from processors.sync_logic.sync_finances import sync_transactions
from processors.sync_logic.sync_inventory import sync_inventory
from processors.sync_logic.sync_listings import sync_listings
from processors.sync_logic.sync_orders import sync_orders
from processors.sync_logic.sync_ppc import sync_ppc

SYNC_KINDS = ("orders", "fees", "ppc", "inventory", "listings", "refunds")

Stream = Callable[[SyncContext, AmazonAccount, datetime], Awaitable[int]]
# Fees and refunds both come from listTransactions, so they share one stream and one call.
_STREAMS: dict[str, tuple[str, Stream]] = {
    "orders": ("orders", sync_orders),
    "fees": ("transactions", sync_transactions),
    "refunds": ("transactions", sync_transactions),
    "ppc": ("ppc", sync_ppc),
    "inventory": ("inventory", sync_inventory),
    "listings": ("listings", sync_listings),
}


class UnknownSyncKind(ValueError):
    def __init__(self, kind: str) -> None:
        super().__init__(f"unknown sync kind {kind!r}; expected one of {', '.join(SYNC_KINDS)}")
        self.kind = kind


def validate_kinds(kinds: Iterable[str]) -> list[str]:
    result = []
    for kind in kinds:
        if kind not in _STREAMS:
            raise UnknownSyncKind(kind)
        if kind not in result:
            result.append(kind)
    return result


async def sync_account(
    ctx: SyncContext, account_id: str, kinds: Iterable[str], progress: Progress
) -> dict[str, int]:
    """Sync the given kinds for one account; returns rows written per stream.

    Raises AmazonRateLimited (resume state is already checkpointed), AmazonTransientError,
    AccountDisconnected, or UnknownSyncKind.
    """
    wanted = validate_kinds(kinds)
    record = await ctx.db(ctx.storage.get_account, account_id)
    account = resolve_account(record, ctx.settings.env)
    now = ctx.settings.clock()
    streams: dict[str, Stream] = {}
    for kind in wanted:
        name, fn = _STREAMS[kind]
        streams.setdefault(name, fn)
    await progress(0)
    written: dict[str, int] = {}
    for done, (name, fn) in enumerate(streams.items(), start=1):
        written[name] = await fn(ctx, account, now)
        await progress(min(99, done * 100 // len(streams)) if done < len(streams) else 100)
    return written
