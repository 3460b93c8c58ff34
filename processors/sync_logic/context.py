"""What every business-logic function receives: the client, the storage and the settings."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import ParamSpec, TypeVar

from processors.amazon.client import AmazonClient
from processors.storage.store import Storage

P = ParamSpec("P")
R = TypeVar("R")

Progress = Callable[[int], Awaitable[None]]


def utc_now() -> datetime:
    return datetime.now(UTC)


@dataclass(frozen=True)
class SyncSettings:
    report_dir: Path = Path("reports")
    # How far back the first sync of an account reaches.
    initial_lookback_days: int = 90
    # Amazon restates attributed sales for up to 14 days: each run re-pulls these.
    ads_trailing_days: int = 14
    ads_poll_interval: float = 5.0
    # Past this (seconds, per run), raise AmazonReportNotReady: the job waits
    # ``ads_not_ready_delay`` seconds (without using an attempt) and polls the same reports.
    ads_poll_timeout: float = 60.0
    ads_not_ready_delay: float = 60.0
    # Amazon generates a report within about 3 h; one pending longer is asked for again.
    ads_report_max_age: float = 3 * 3600.0
    orders_page_size: int = 100
    listings_page_size: int = 20
    # Re-read a little before each watermark: Amazon's indexes are eventually consistent.
    orders_overlap: timedelta = timedelta(minutes=10)
    # Finances may omit events from the last 48 h, so re-read them on every run.
    finances_overlap: timedelta = timedelta(hours=48)
    # Inventory page tokens live 30 s; older checkpoints are useless.
    inventory_token_max_age: float = 25.0
    # Where account secrets may come from instead of the database (None: os.environ).
    env: Mapping[str, str] | None = None
    clock: Callable[[], datetime] = field(default=utc_now)


@dataclass(frozen=True)
class SyncContext:
    client: AmazonClient
    storage: Storage
    settings: SyncSettings = field(default_factory=SyncSettings)

    async def db(self, fn: Callable[P, R], *args: P.args, **kwargs: P.kwargs) -> R:
        """Run a blocking storage call off the event loop."""
        return await asyncio.to_thread(fn, *args, **kwargs)


async def no_progress(pct: int) -> None:
    """A ``progress`` callback for callers that do not report progress."""
