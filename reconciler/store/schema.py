"""Which schema a database has and which this code expects, read without writing or Alembic.

Read-only commands check the schema before they work. That check must not write: on SQLite a
write transaction waits for the write lock, so ``plan --no-refresh`` or ``state list`` would
fail while a pull holds it. It also need not import Alembic (slow to load): the stored revision
is one row of ``alembic_version``, read in a read-only transaction, and the expected one is the
head of the migration scripts, found by reading their ``revision`` / ``down_revision`` lines.
Migrations themselves still run through Alembic (:func:`reconciler.store.db.upgrade`).
"""

from __future__ import annotations

import functools
import re
from pathlib import Path

from sqlalchemy import text
from sqlalchemy.exc import DBAPIError
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from reconciler.errors import StateError

_REVISION = re.compile(r"^revision(?::\s*str)?\s*=\s*[\"']([^\"']+)[\"']", re.M)
_DOWN = re.compile(r"^down_revision(?:[^=]*)=\s*[\"']([^\"']+)[\"']", re.M)


@functools.cache
def script_head(versions: Path) -> str:
    """The one revision of the scripts in ``versions`` that no other script revises."""
    revisions: set[str] = set()
    revised: set[str] = set()
    for script in versions.glob("*.py"):
        source = script.read_text(encoding="utf-8")
        if found := _REVISION.search(source):
            revisions.add(found.group(1))
        if down := _DOWN.search(source):
            revised.add(down.group(1))
    heads = sorted(revisions - revised)
    if len(heads) != 1:
        raise StateError(f"the migration scripts have {len(heads)} heads: {', '.join(heads)}")
    return heads[0]


async def stored_revision(engine: AsyncEngine) -> str | None:
    """The database's schema revision (None: never migrated), in a read-only transaction."""
    from reconciler.store.db import reader

    async with reader(engine).connect() as conn:
        if not await _has_version_table(conn):
            return None
        try:
            row = (await conn.execute(text("SELECT version_num FROM alembic_version"))).first()
        except DBAPIError:
            return None
    return None if row is None else str(row[0])


async def _has_version_table(conn: AsyncConnection) -> bool:
    if conn.dialect.name == "postgresql":
        found = await conn.execute(text("SELECT to_regclass('alembic_version')"))
    else:
        found = await conn.execute(
            text("SELECT name FROM sqlite_master WHERE type = 'table' AND name = 'alembic_version'")
        )
    return found.scalar() is not None
