"""Engines chosen by URL: SQLite (WAL) by default, PostgreSQL through psycopg 3."""

from __future__ import annotations

import os
from typing import Any

from sqlalchemy import Engine, create_engine, event

ENV_DATABASE_URL = "MINIQUE_AMAZON_DATABASE_URL"
DEFAULT_DATABASE_URL = "sqlite:///minique-amazon.db"


def database_url(env: dict[str, str] | None = None) -> str:
    return (env if env is not None else os.environ).get(ENV_DATABASE_URL, DEFAULT_DATABASE_URL)


def make_engine(url: str, *, schema: str | None = None) -> Engine:
    """``schema`` (PostgreSQL only) places every table in that schema, e.g. for test isolation."""
    if url.startswith("postgresql://"):
        url = "postgresql+psycopg://" + url.removeprefix("postgresql://")
    options: dict[str, Any] = {"future": True}
    if url.startswith("sqlite"):
        # Storage is used from worker threads (asyncio.to_thread).
        options["connect_args"] = {"check_same_thread": False, "timeout": 30}
    else:
        options["pool_pre_ping"] = True
    engine = create_engine(url, **options)
    if engine.dialect.name == "sqlite":
        event.listen(engine, "connect", _sqlite_pragmas)
    if schema is not None:
        engine = engine.execution_options(schema_translate_map={None: schema})
    return engine


def _sqlite_pragmas(dbapi_connection: Any, _record: Any) -> None:
    cursor = dbapi_connection.cursor()
    # WAL lets readers proceed while a worker writes; NORMAL sync is safe with WAL.
    cursor.execute("PRAGMA journal_mode=WAL")
    cursor.execute("PRAGMA synchronous=NORMAL")
    cursor.execute("PRAGMA busy_timeout=30000")
    cursor.close()
