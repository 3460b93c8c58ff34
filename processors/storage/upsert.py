"""INSERT ... ON CONFLICT for both dialects, so re-running a sync never duplicates rows."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from sqlalchemy import Connection, Table
from sqlalchemy.dialects import postgresql, sqlite

# Both dialects cap bound parameters per statement; chunks keep us well under the limits.
_CHUNK = 200


def _insert(conn: Connection, table: Table) -> Any:
    if conn.dialect.name == "postgresql":
        return postgresql.insert(table)
    if conn.dialect.name == "sqlite":
        return sqlite.insert(table)
    raise NotImplementedError(f"no upsert for dialect {conn.dialect.name}")


def upsert(conn: Connection, table: Table, rows: Sequence[Mapping[str, Any]]) -> int:
    """Insert rows, or update every non-key column of the row with the same primary key.

    Rows that share a key are merged first, the last one winning: Amazon may send one record
    twice in a page (or a batch may gather it twice), and PostgreSQL refuses a statement whose
    ON CONFLICT would update one row twice. Returns the number of distinct rows."""
    if not rows:
        return 0
    keys = [c.name for c in table.primary_key.columns]
    rows = list({tuple(r[k] for k in keys): r for r in rows}.values())
    for start in range(0, len(rows), _CHUNK):
        chunk = [dict(r) for r in rows[start : start + _CHUNK]]
        stmt = _insert(conn, table).values(chunk)
        updates = {name: stmt.excluded[name] for name in chunk[0] if name not in keys}
        stmt = (
            stmt.on_conflict_do_update(index_elements=keys, set_=updates)
            if updates
            else (stmt.on_conflict_do_nothing(index_elements=keys))
        )
        conn.execute(stmt)
    return len(rows)


def insert_if_absent(conn: Connection, table: Table, row: Mapping[str, Any]) -> bool:
    """True when the row was new; False when a row with its key already existed."""
    keys = list(table.primary_key.columns)
    stmt = (
        _insert(conn, table)
        .values(dict(row))
        .on_conflict_do_nothing(index_elements=[c.name for c in keys])
        # rowcount is unreliable for ON CONFLICT across drivers; a returned key is not.
        .returning(keys[0])
    )
    return conn.execute(stmt).first() is not None
