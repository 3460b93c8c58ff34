"""SQLAlchemy Core storage for synced Amazon data (SQLite WAL or PostgreSQL by URL)."""

from processors.storage import schema
from processors.storage.engine import (
    DEFAULT_DATABASE_URL,
    ENV_DATABASE_URL,
    database_url,
    make_engine,
)
from processors.storage.records import AccountRecord, AdsProfileRecord, DailyTotals, SyncState
from processors.storage.store import Storage

__all__ = [
    "DEFAULT_DATABASE_URL",
    "ENV_DATABASE_URL",
    "AccountRecord",
    "AdsProfileRecord",
    "DailyTotals",
    "Storage",
    "SyncState",
    "database_url",
    "make_engine",
    "schema",
]
