"""Time windows for incremental syncs, and their checkpoint cursors."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, date, datetime, time, timedelta
from typing import Any

from processors.storage.records import SyncState


@dataclass(frozen=True)
class Window:
    start: datetime
    end: datetime
    token: str | None = None

    def cursor(self, token: str) -> dict[str, Any]:
        return {"start": self.start.isoformat(), "end": self.end.isoformat(), "token": token}


def resume_window(
    state: SyncState, end: datetime, lookback_days: int, overlap: timedelta, since: date | None = None
) -> Window:
    """Continue a half-finished window from its checkpoint, or start one at the watermark.

    ``since`` (a back-fill) starts the window at that day instead, if that is earlier: at
    midnight UTC the day before, so the day is whole in every marketplace's time zone.
    """
    cursor = state.cursor
    if cursor and cursor.get("token"):
        return Window(
            datetime.fromisoformat(cursor["start"]),
            datetime.fromisoformat(cursor["end"]),
            str(cursor["token"]),
        )
    watermark = state.watermark
    start = initial_start(end, lookback_days) if watermark is None else watermark - overlap
    if since is not None:
        start = min(start, datetime.combine(since - timedelta(days=1), time(0), UTC))
    return Window(min(start, end), end)


def initial_start(end: datetime, lookback_days: int) -> datetime:
    """Where an account's first sync starts: midnight UTC, ``lookback_days`` days before ``end``.

    Not ``end - lookback_days`` to the second: that starts mid-day at the time of day the first
    sync happens to run, and since later runs only move forward from the watermark, the
    transactions and orders of that first day's earlier hours would never be fetched, and the
    oldest day's totals would stay short. Whole UTC days also match the PPC sync and the daily
    reports, which count in UTC days.
    """
    first_day = end.astimezone(UTC).date() - timedelta(days=lookback_days)
    return datetime.combine(first_day, time(0), UTC)
