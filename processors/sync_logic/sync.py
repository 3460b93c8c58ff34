"""``sync_account``: the data-sync and manual-sync jobs' work, without the queue."""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Iterable
from datetime import date, datetime

from processors.amazon.account import AmazonAccount
from processors.sync_logic.accounts import resolve_account
from processors.sync_logic.context import Progress, SyncContext
from processors.sync_logic.run_marks import finished_in, mark_finished
from processors.sync_logic.sync_ads import sync_ads
from processors.sync_logic.sync_finances import sync_transactions
from processors.sync_logic.sync_inventory import sync_inventory
from processors.sync_logic.sync_listings import sync_listings
from processors.sync_logic.sync_orders import sync_orders

SYNC_KINDS = ("orders", "fees", "ppc", "inventory", "listings", "refunds")

Stream = Callable[[SyncContext, AmazonAccount, datetime], Awaitable[int]]
# Fees and refunds both come from listTransactions, so they share one stream and one call.
# Ads come last: an account whose Ads grant is revoked still gets everything else.
_STREAMS: dict[str, str] = {
    "orders": "orders",
    "fees": "transactions",
    "refunds": "transactions",
    "inventory": "inventory",
    "listings": "listings",
    "ppc": "ads",
}
_ORDER = ("orders", "transactions", "inventory", "listings", "ads")
_SINGLE: dict[str, Stream] = {"inventory": sync_inventory, "listings": sync_listings}
# Streams dated by Amazon's timestamps, which a back-fill can re-pull from a given day.
_DATED: dict[str, Callable[[SyncContext, AmazonAccount, datetime, date | None], Awaitable[int]]] = {
    "orders": sync_orders,
    "transactions": sync_transactions,
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
    ctx: SyncContext,
    account_id: str,
    kinds: Iterable[str],
    progress: Progress,
    run_id: str | None = None,
    since: date | None = None,
) -> dict[str, int]:
    """Sync the given kinds for one account; returns rows written per stream ("orders",
    "transactions", "inventory", "listings", "ads").

    ``run_id`` (the job's id) makes the run resumable: the streams it finished are not synced
    again when it comes back after a 429 or an error, and the others continue from their
    checkpoints. ``since`` (a back-fill) re-pulls orders, transactions and ads from that day
    on, even where the watermarks have passed it.

    Raises AmazonRateLimited (resume state is already checkpointed), AmazonTransientError,
    AmazonReportNotReady, AccountDisconnected, AccountUnavailable or UnknownSyncKind.
    """
    wanted = validate_kinds(kinds)
    record = await ctx.db(ctx.storage.get_account, account_id)
    account = resolve_account(record, ctx.settings.env)
    now = ctx.settings.clock()
    names = [name for name in _ORDER if name in {_STREAMS[k] for k in wanted}]
    await progress(0)
    written: dict[str, int] = {}
    for done, name in enumerate(names, start=1):
        if name == "ads":
            written[name] = await sync_ads(ctx, account, now, run_id, since)
        else:
            state = await ctx.db(ctx.storage.sync_state, account.id, name)
            count = finished_in(state, run_id)
            if count is None:
                if name in ("orders", "transactions"):
                    count = await _DATED[name](ctx, account, now, since)
                else:
                    count = await _SINGLE[name](ctx, account, now)
                await mark_finished(ctx, account.id, name, run_id, count)
            written[name] = count
        await progress(min(99, done * 100 // len(names)) if done < len(names) else 100)
    return written
