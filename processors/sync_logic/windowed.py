"""The incremental sync of one time-windowed stream, page by page, resumable.

Each page is stored, then the window and the next page token are checkpointed before the
next request, so a 429 (or a crash) resumes from that page; the watermark moves to the
window's end only once the last page is stored. A checkpointed token that Amazon no longer
takes (expired: the run resumed late) restarts its window from the start, and a token Amazon
hands back twice (a pagination loop) ends the pass with ``AmazonPaginationLoop`` and drops
the checkpoint, so the retry starts the window over; the upserts make re-reads harmless.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from datetime import date, datetime, timedelta
from typing import Protocol, TypeVar

from processors.amazon.account import AmazonAccount
from processors.amazon.errors import AmazonClientError, AmazonPaginationLoop
from processors.sync_logic.context import SyncContext
from processors.sync_logic.paging import TokenTrail
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
    operation: str = "",
) -> int:
    """Fetches pages of ``stream`` (Amazon's ``operation``) over the window ending at ``end``;
    ``store`` (run on the database thread) writes one page and returns how many records it
    held."""
    state = await ctx.db(ctx.storage.sync_state, account.id, stream)
    window = resume_window(state, end, ctx.settings.initial_lookback_days, overlap, since)
    synced = 0
    token = window.token
    trail = TokenTrail(operation or stream, token)
    while True:
        try:
            page = await fetch(window, token)
        except AmazonClientError:
            if token is None or token != window.token or trail.pages:
                raise
            # The checkpointed token was refused (expired): the same window, from its start.
            window = Window(window.start, window.end)
            token = None
            trail = TokenTrail(operation or stream)
            continue
        synced += await ctx.db(store, page)
        try:
            token = trail.follow(page.next_token)
        except AmazonPaginationLoop:
            await ctx.db(ctx.storage.save_sync_state, account.id, stream, state.watermark, None)
            raise
        if token is None:
            break
        await ctx.db(ctx.storage.save_sync_state, account.id, stream, state.watermark,
                     window.cursor(token))
    await ctx.db(ctx.storage.save_sync_state, account.id, stream, window.end, None)
    return synced
