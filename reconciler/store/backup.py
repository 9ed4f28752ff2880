"""Keeping the SQLite main file whole, and copying a live state database safely.

In WAL mode committed transactions live in ``state.db-wal`` until a checkpoint copies them
into ``state.db``; while a daemon holds its connections open SQLite never does that on its
own for a small WAL, so a plain copy of ``state.db`` (a file backup) would hold almost
nothing, and losing the ``-wal`` file would lose everything since ``init``. So every run ends
with a checkpoint (:func:`checkpoint`), and ``reconciler db backup FILE`` copies a live
database page by page through SQLite's online backup API (:func:`backup_sqlite`). PostgreSQL
is backed up with its own tools (``pg_dump``).
"""

from __future__ import annotations

import asyncio
import logging
import os
import sqlite3
from pathlib import Path
from typing import Any

from sqlalchemy.ext.asyncio import AsyncEngine

from reconciler.errors import StateError

log = logging.getLogger(__name__)


async def checkpoint(engine: AsyncEngine) -> None:
    """Copy the WAL into the main SQLite file (PASSIVE: never waits for readers or writers;
    a busy database is checkpointed by the next run). Nothing to do on PostgreSQL."""
    if engine.dialect.name != "sqlite":
        return
    try:
        async with engine.connect() as conn:
            # On the driver's connection: SQLAlchemy would first BEGIN a transaction, and a
            # checkpoint inside one copies nothing.
            raw = await conn.get_raw_connection()
            driver: Any = raw.driver_connection
            cursor = await driver.execute("PRAGMA wal_checkpoint(PASSIVE)")
            busy, frames, copied = await cursor.fetchone()
            await cursor.close()
        if busy or copied != frames:
            log.debug("checkpoint: %s of %s WAL frames copied", copied, frames)
    except Exception as exc:  # a checkpoint that cannot run now is no failure of the run
        log.warning("checkpoint of the state database skipped: %s", exc)


def backup_sqlite(source: Path, target: Path) -> int:
    """Copy the live database ``source`` to the new file ``target`` (owner-only) with
    SQLite's online backup API: a consistent snapshot, WAL included, while others write.
    Returns the bytes written. Refuses to overwrite an existing file."""
    if not source.is_file():
        raise StateError(f"no state database at {source}: nothing to back up")
    if target.exists():
        raise StateError(f"{target} exists already: give a new file name for the backup")
    partial = target.with_name(f".{target.name}.partial")
    fd = os.open(partial, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o600)
    os.close(fd)
    try:
        with sqlite3.connect(f"file:{source}?mode=ro", uri=True) as src:
            dst = sqlite3.connect(partial)
            try:
                src.backup(dst)
                dst.execute("PRAGMA journal_mode=DELETE")  # one self-contained file
            finally:
                dst.close()
        partial.replace(target)
    except BaseException:
        partial.unlink(missing_ok=True)
        raise
    return target.stat().st_size


async def backup(engine: AsyncEngine, source: Path | None, target: Path) -> int:
    if engine.dialect.name != "sqlite" or source is None:
        raise StateError(
            "reconciler db backup copies a SQLite state; back up PostgreSQL with pg_dump "
            "(e.g. pg_dump --format=custom --file=reconciler.dump DBNAME)"
        )
    return await asyncio.to_thread(backup_sqlite, source, target)
