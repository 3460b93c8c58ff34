"""Schema migrations (Alembic), safe to run from several processes at once.

Every process that opens the storage (a worker, ``accounts add``, the demo) calls
``upgrade``. The migrations run under a lock that spans the whole upgrade: PostgreSQL's
``pg_advisory_xact_lock`` in the migration's transaction (DDL is transactional there), and
on SQLite a ``BEGIN EXCLUSIVE`` transaction (SQLite's DDL is transactional too). A second
process waits for the first, then finds the schema current and does nothing: no "table
already exists". A database made before migrations existed (tables, no version) is stamped
with the first revision, whose tables it has, and then upgraded.
"""

from __future__ import annotations

import hashlib
from pathlib import Path

from alembic import command
from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy import Connection, Engine, inspect, text
from sqlalchemy.exc import SQLAlchemyError
from sqlalchemy.schema import CreateSchema

from processors.storage.engine import make_engine

MIGRATIONS = Path(__file__).with_name("migrations")
# The schema as it was before migrations existed (created by ``metadata.create_all``).
BASELINE = "0001"


def _config(connection: Connection | None = None) -> Config:
    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS))
    config.attributes["connection"] = connection
    return config


def head() -> str:
    """The newest revision id."""
    revision = ScriptDirectory.from_config(_config()).get_current_head()
    assert revision is not None
    return revision


def current(engine: Engine) -> str | None:
    """The database's revision id (None: never migrated)."""
    with engine.connect() as conn:
        return MigrationContext.configure(conn).get_current_revision()


def upgrade(engine: Engine, schema_name: str | None = None) -> None:
    """Brings ``engine``'s database to ``head()``; a no-op when it is already there."""
    try:
        if current(engine) == head():
            return  # the common case, without taking the lock
    except SQLAlchemyError:
        pass  # e.g. a PostgreSQL schema that does not exist yet: the locked path creates it
    if engine.dialect.name == "sqlite" and engine.url.database in (None, "", ":memory:"):
        # A memory database lives in one connection pool of one process: nothing to race.
        with engine.begin() as conn:
            _upgrade(conn)
        return
    if engine.dialect.name == "sqlite":
        locked = make_engine(engine.url.render_as_string(hide_password=False), exclusive=True)
        try:
            with locked.begin() as conn:
                _upgrade(conn)
        finally:
            locked.dispose()
        return
    with engine.begin() as conn:
        key = int.from_bytes(hashlib.sha256(f"minique-amazon:{schema_name}".encode()).digest()[:8],
                             "big", signed=True)
        conn.execute(text("SELECT pg_advisory_xact_lock(:key)"), {"key": key})
        if schema_name is not None:
            conn.execute(CreateSchema(schema_name, if_not_exists=True))
        _upgrade(conn)


def _upgrade(conn: Connection) -> None:
    config = _config(conn)
    if MigrationContext.configure(conn).get_current_revision() is None and inspect(conn).has_table(
        "amazon_accounts"
    ):
        command.stamp(config, BASELINE)
    command.upgrade(config, "head")
