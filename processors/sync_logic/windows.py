"""Time windows for incremental syncs, and their checkpoint cursors."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from processors.storage.records import SyncState


@dataclass(frozen=True)
class Window:
    start: datetime
    end: datetime
    token: str | None = None

    def cursor(self, token: str) -> dict[str, Any]:
        return {"start": self.start.isoformat(), "end": self.end.isoformat(), "token": token}


def resume_window(state: SyncState, end: datetime, lookback_days: int, overlap: timedelta) -> Window:
    """Continue a half-finished window from its checkpoint, or start one at the watermark."""
    cursor = state.cursor
    if cursor and cursor.get("token"):
        return Window(
            datetime.fromisoformat(cursor["start"]),
            datetime.fromisoformat(cursor["end"]),
            str(cursor["token"]),
        )
    watermark = state.watermark
    start = end - timedelta(days=lookback_days) if watermark is None else watermark - overlap
    return Window(min(start, end), end)
