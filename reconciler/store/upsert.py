"""An ``INSERT ... ON CONFLICT`` of the backend in use, importing only that backend's dialect.

SQLAlchemy's PostgreSQL dialect package loads every PostgreSQL driver's module (asyncpg,
psycopg, pg8000...): tens of milliseconds that a pull into SQLite has no use for.
"""

from __future__ import annotations

from typing import Any

from sqlalchemy import Table


def insert_on_conflict(dialect_name: str, table: Table) -> Any:
    """The dialect's own ``insert(table)``, which has ``on_conflict_do_nothing``."""
    if dialect_name == "postgresql":
        from sqlalchemy.dialects.postgresql import insert as postgresql_insert

        return postgresql_insert(table)
    from sqlalchemy.dialects.sqlite import insert as sqlite_insert

    return sqlite_insert(table)
