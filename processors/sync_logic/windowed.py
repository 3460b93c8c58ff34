"""The incremental sync of one time-windowed stream, page by page, resumable.

Each page is stored, then the window and the next page token are checkpointed before the
next request, so a 429 (or a crash) resumes from that page; the watermark moves to the
window's end only once the last page is stored.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from datetime import date, datetime, timedelta
from typing import Protocol, TypeVar

from processors.amazon.account import AmazonAccount
from processors.sync_logic.context import SyncContext
from processors.sync_logic.windows import Window, resume_window


class Page(Protocol):
    @property
    def next_token(self) -> str | None: ...


P = TypeVar("P", bound=Page)


async def sync_window(
    ctx: SyncContext,
    account: AmazonAccount,
    stream: str,
    end: datetime,
    overlap: timedelta,
    fetch: Callable[[Window, str | None], Awaitable[P]],
    store: Callable[[P], int],
    since: date | None = None,
) -> int:
    """Fetches pages of ``stream`` over the window ending at ``end``; ``store`` (run on the
    database thread) writes one page and returns how many records it held."""
    state = await ctx.db(ctx.storage.sync_state, account.id, stream)
    window = resume_window(state, end, ctx.settings.initial_lookback_days, overlap, since)
    synced = 0
    token = window.token
    while True:
        page = await fetch(window, token)
        synced += await ctx.db(store, page)
        token = page.next_token
        if token is None:
            break
        await ctx.db(ctx.storage.save_sync_state, account.id, stream, state.watermark,
                     window.cursor(token))
    await ctx.db(ctx.storage.save_sync_state, account.id, stream, window.end, None)
    return synced
