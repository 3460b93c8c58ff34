"""Which streams a sync run has finished, so that a resumed run starts exactly where it stopped.

A run is one job (its id, the same across the job's delays and retries). When a stream of
the run finishes, its state's cursor becomes ``{"done_by": run_id, "written": n}`` (the
watermark is kept). When the job comes back after a 429 on another operation, the streams
it finished are skipped: a throttle on ``listTransactions`` costs no new ``searchOrders``
call. A later run has another id, so it syncs every stream again.
"""

from __future__ import annotations

from processors.storage.records import SyncState
from processors.sync_logic.context import SyncContext


def finished_in(state: SyncState, run_id: str | None) -> int | None:
    """How many records the stream wrote in ``run_id``, if that run finished it; else None."""
    cursor = state.cursor or {}
    if run_id is None or cursor.get("done_by") != run_id:
        return None
    return int(cursor.get("written", 0))


async def mark_finished(ctx: SyncContext, account_id: str, stream: str, run_id: str | None,
                        written: int) -> None:
    """Records that ``run_id`` finished ``stream`` (keeping the watermark the stream set)."""
    if run_id is None:
        return
    state = await ctx.db(ctx.storage.sync_state, account_id, stream)
    await ctx.db(ctx.storage.save_sync_state, account_id, stream, state.watermark,
                 {"done_by": run_id, "written": written})
