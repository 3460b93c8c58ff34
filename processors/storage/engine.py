"""Engines chosen by URL: SQLite (WAL) by default, PostgreSQL through psycopg 3."""

from __future__ import annotations

import os
import sqlite3
import time
from typing import Any

from sqlalchemy import Engine, create_engine, event
from sqlalchemy.pool import NullPool

ENV_DATABASE_URL = "MINIQUE_AMAZON_DATABASE_URL"
DEFAULT_DATABASE_URL = "sqlite:///minique-amazon.db"


def database_url(env: dict[str, str] | None = None) -> str:
    return (env if env is not None else os.environ).get(ENV_DATABASE_URL, DEFAULT_DATABASE_URL)


def make_engine(url: str, *, schema: str | None = None, exclusive: bool = False) -> Engine:
    """``schema`` (PostgreSQL only) places every table in that schema, e.g. for test isolation:
    it becomes the connections' ``search_path``, so migrations see it as the default schema.

    ``exclusive`` (SQLite): every transaction starts with ``BEGIN EXCLUSIVE``, so DDL runs in
    one transaction that other processes wait for (SQLite's own lock serialises migrations).
    """
    if url.startswith("postgresql://"):
        url = "postgresql+psycopg://" + url.removeprefix("postgresql://")
    options: dict[str, Any] = {"future": True}
    if url.startswith("sqlite"):
        # Storage is used from worker threads (asyncio.to_thread).
        options["connect_args"] = {"check_same_thread": False, "timeout": 30}
    else:
        options["pool_pre_ping"] = True
    if exclusive:
        options["poolclass"] = NullPool
    engine = create_engine(url, **options)
    if engine.dialect.name == "sqlite":
        event.listen(engine, "connect", _sqlite_pragmas)
        if exclusive:
            event.listen(engine, "connect", _sqlite_manual_transactions)
            event.listen(engine, "begin", _sqlite_begin_exclusive)
    elif schema is not None:
        event.listen(engine, "connect", _search_path(schema))
    return engine


# How long a connection keeps trying to turn a new database to WAL while another
# process holds it (seconds; the same as the busy timeout).
WAL_SWITCH_TIMEOUT = 30.0


def _sqlite_pragmas(dbapi_connection: Any, _record: Any) -> None:
    cursor = dbapi_connection.cursor()
    # WAL lets readers proceed while a worker writes; NORMAL sync is safe with WAL.
    cursor.execute("PRAGMA busy_timeout=30000")
    _to_wal(cursor)
    cursor.execute("PRAGMA synchronous=NORMAL")
    cursor.close()


def _to_wal(cursor: Any) -> None:
    """Turns the database to WAL (it stays so: a no-op once done). The switch needs the
    database alone, and SQLite refuses it at once ("database is locked", without waiting
    out the busy timeout: its deadlock guard) while another process's connection holds it,
    as when several workers create a fresh database at once (CI); so it is tried again
    until WAL_SWITCH_TIMEOUT."""
    deadline = time.monotonic() + WAL_SWITCH_TIMEOUT
    while True:
        try:
            cursor.execute("PRAGMA journal_mode=WAL")
            return
        except sqlite3.OperationalError as exc:
            if "locked" not in str(exc) or time.monotonic() >= deadline:
                raise
            time.sleep(0.01)


def _sqlite_manual_transactions(dbapi_connection: Any, _record: Any) -> None:
    # pysqlite would otherwise begin transactions on its own, and never before DDL.
    dbapi_connection.isolation_level = None


def _sqlite_begin_exclusive(conn: Any) -> None:
    conn.exec_driver_sql("BEGIN EXCLUSIVE")


def _search_path(schema: str) -> Any:
    quoted = '"' + schema.replace('"', '""') + '"'

    def on_connect(dbapi_connection: Any, _record: Any) -> None:
        cursor = dbapi_connection.cursor()
        cursor.execute(f"SET search_path TO {quoted}")
        cursor.close()
        # psycopg opens a transaction for the SET; end it so the pool gets a clean connection.
        dbapi_connection.commit()

    return on_connect
