"""Alembic's entry point: runs on the connection ``processors.storage.migrate`` opened (and
locked); there is no alembic.ini and no URL here."""

from __future__ import annotations

from alembic import context

from processors.storage.schema import metadata

connection = context.config.attributes["connection"]
# Batch mode: SQLite alters tables by copying them, Alembic does it for us.
context.configure(connection=connection, target_metadata=metadata, render_as_batch=True)
with context.begin_transaction():
    context.run_migrations()
