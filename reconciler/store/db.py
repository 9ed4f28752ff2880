"""The async engine: SQLite pragmas, owner-only files, migrations and the schema check."""

from __future__ import annotations

import logging
import os
from collections.abc import AsyncIterator
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from sqlalchemy import event, text
from sqlalchemy.engine import Connection, make_url
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine, create_async_engine

from reconciler.errors import SchemaOutOfDateError, StateError
from reconciler.settings import DEFAULT_STATEMENT_TIMEOUT_S, Settings

log = logging.getLogger(__name__)

SQLITE_BUSY_TIMEOUT_MS = 30_000
# Per connection, and a pull holds several (staging, heartbeat, the reconcile transaction),
# each on its own thread. Large sorts (the new lines, in key order) are bounded by it too and
# spill to temporary files beyond it. 16 MiB made a 1M-line pull peak ~45 MiB higher for no
# measurable gain in CPU time; 2 MiB is SQLite's own default.
SQLITE_CACHE_KIB = 2 * 1024
SQLITE_WAL_LIMIT_BYTES = 64 * 1024 * 1024
# Any constant works; it only has to be the same in every instance sharing a database.
MIGRATION_LOCK_ID = 0x5EC0_0C11
# Server-side work must not outlive its client: a killed CLI pull would otherwise leave its
# backend running the reconcile query and holding the source's advisory lock. The server
# checks every few seconds during a query that the client is still there (PostgreSQL 14+),
# cancels a statement that runs longer than ``[state] statement_timeout_s`` (a client that
# hangs without going away), and ends a session left idle inside a transaction.
POSTGRES_SESSION_SETTINGS = {
    "client_connection_check_interval": "2000",  # ms
    "idle_in_transaction_session_timeout": "600000",  # ms
    "application_name": "reconciler",
}


def is_sqlite(url: str) -> bool:
    return make_url(url).get_backend_name() == "sqlite"


def sqlite_path(url: str) -> Path | None:
    parsed = make_url(url)
    if parsed.get_backend_name() != "sqlite" or parsed.database in (None, "", ":memory:"):
        return None
    return Path(parsed.database)


def _ensure_sqlite_file(path: Path) -> None:
    """Create the state directory (0700) and database file (0600) before SQLite opens it."""
    path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    fd = os.open(path, os.O_CREAT | os.O_RDWR, 0o600)
    os.close(fd)


def _sqlite_pragmas(dbapi_connection: Any, _record: Any) -> None:
    cursor = dbapi_connection.cursor()
    # The busy timeout first: switching the journal mode already needs a lock.
    cursor.execute(f"PRAGMA busy_timeout={SQLITE_BUSY_TIMEOUT_MS}")
    cursor.execute("PRAGMA journal_mode=WAL")
    cursor.execute("PRAGMA foreign_keys=ON")
    cursor.execute("PRAGMA synchronous=NORMAL")
    # The page cache (see SQLITE_CACHE_KIB); the WAL is truncated back to this size after a
    # large transaction is checkpointed.
    cursor.execute(f"PRAGMA cache_size=-{SQLITE_CACHE_KIB}")
    cursor.execute(f"PRAGMA journal_size_limit={SQLITE_WAL_LIMIT_BYTES}")
    cursor.close()


def create_engine(
    url: str,
    *,
    create: bool = False,
    echo: bool = False,
    statement_timeout_s: float = DEFAULT_STATEMENT_TIMEOUT_S,
) -> AsyncEngine:
    """An async engine for a state database URL (sqlite+aiosqlite or postgresql+asyncpg).

    With ``create`` false a missing SQLite file is an error instead of a new empty database.
    ``statement_timeout_s`` is PostgreSQL's ``statement_timeout`` for every session.
    """
    path = sqlite_path(url)
    if path is not None:
        if create:
            _ensure_sqlite_file(path)
        elif not path.exists():
            raise StateError(f"no state database at {path}: run 'reconciler init' to create one")
        # One busy timeout from the first statement on (the driver's own default is 5 s).
        timeout = {"timeout": SQLITE_BUSY_TIMEOUT_MS / 1000}
        engine = create_async_engine(url, echo=echo, connect_args=timeout)
        event.listen(engine.sync_engine, "connect", _sqlite_pragmas)
        # pysqlite's own transaction handling defers BEGIN; take control so that a
        # transaction really starts at BEGIN and serializable writes are honest.
        event.listen(engine.sync_engine, "connect", _sqlite_autocommit_off)
        event.listen(engine.sync_engine, "begin", _sqlite_begin)
        return engine
    options: dict[str, Any] = {}
    if make_url(url).get_driver_name() == "asyncpg":
        settings = {
            **POSTGRES_SESSION_SETTINGS,
            "statement_timeout": str(round(statement_timeout_s * 1000)),  # ms
        }
        options["connect_args"] = {"server_settings": settings}
    return create_async_engine(url, echo=echo, pool_pre_ping=True, **options)


def configured_engine(settings: Settings, *, create: bool = False) -> AsyncEngine:
    """:func:`create_engine` for the configured state database, with its ``[state]`` options."""
    return create_engine(
        settings.database_url,
        create=create,
        statement_timeout_s=settings.state.statement_timeout_s,
    )


def _sqlite_autocommit_off(dbapi_connection: Any, _record: Any) -> None:
    dbapi_connection.isolation_level = None


def _sqlite_begin(connection: Connection) -> None:
    # Writers take the write lock up front, so two writers never deadlock on an upgrade
    # from a read lock; readers (``reader(engine)``) never wait for a writer under WAL.
    if connection.get_execution_options().get("sqlite_read_only"):
        connection.exec_driver_sql("BEGIN")
    else:
        connection.exec_driver_sql("BEGIN IMMEDIATE")


def reader(engine: AsyncEngine) -> AsyncEngine:
    """The same engine for read-only work: on SQLite its transactions never block."""
    return engine.execution_options(sqlite_read_only=True)


def migrations_directory() -> Path:
    """The Alembic scripts: the source tree's ``migrations/`` or the copy inside the wheel."""
    package_dir = Path(__file__).resolve().parent.parent
    for candidate in (package_dir.parent / "migrations", package_dir / "_migrations"):
        if (candidate / "env.py").is_file():
            return candidate
    raise StateError("the migration scripts are missing from this installation")


def _alembic_config(connection: Connection | None = None) -> Any:
    from alembic.config import Config

    config = Config()
    config.set_main_option("script_location", str(migrations_directory()))
    if connection is not None:
        config.attributes["connection"] = connection
    return config


def head_revision() -> str:
    """The schema revision this code expects (the scripts' head; no Alembic import)."""
    from reconciler.store.schema import script_head

    return script_head(migrations_directory() / "versions")


def _current_revision(connection: Connection) -> str | None:
    from alembic.runtime.migration import MigrationContext

    return MigrationContext.configure(connection).get_current_revision()


async def current_revision(engine: AsyncEngine) -> str | None:
    """The database's schema revision, read without taking a write lock."""
    from reconciler.store.schema import stored_revision

    return await stored_revision(engine)


async def upgrade(
    engine: AsyncEngine,
    revision: str = "head",
    *,
    marker: Path | None = None,
    fresh: bool = False,
) -> tuple[str | None, str | None]:
    """Migrate to ``revision``; serialized across instances on PostgreSQL. Returns (from, to).

    With ``marker`` (see :mod:`reconciler.store.marker`) an empty database whose marker
    exists is refused unless ``fresh`` (``reconciler init``); the marker is written after.
    """
    from alembic import command

    from reconciler.store.marker import LostStateError, database_label, write_marker

    def _run(connection: Connection) -> tuple[str | None, str | None]:
        before = _current_revision(connection)
        if before is None and marker is not None and marker.exists() and not fresh:
            raise LostStateError(database_label(str(engine.url)), marker)
        command.upgrade(_alembic_config(connection), revision)
        return before, _current_revision(connection)

    async with engine.begin() as conn:
        await _lock_for_migration(conn)
        result = await conn.run_sync(_run)
    if marker is not None:
        write_marker(marker, str(engine.url), datetime.now(UTC))
    return result


async def _lock_for_migration(conn: AsyncConnection) -> None:
    if conn.dialect.name == "postgresql":
        # Held until this transaction ends: a second instance waits, then finds head.
        await conn.execute(text("SELECT pg_advisory_xact_lock(:id)"), {"id": MIGRATION_LOCK_ID})


async def check_schema(engine: AsyncEngine) -> None:
    """Refuse to work on a database whose schema is not the one this code expects."""
    current = await current_revision(engine)
    head = head_revision()
    if current != head:
        raise SchemaOutOfDateError(current, head)


@asynccontextmanager
async def open_state(
    url: str, *, migrate: bool = False, statement_timeout_s: float = DEFAULT_STATEMENT_TIMEOUT_S
) -> AsyncIterator[AsyncEngine]:
    """Open the state database, migrating it (``migrate``) or checking it is up to date."""
    engine = create_engine(url, create=migrate, statement_timeout_s=statement_timeout_s)
    try:
        if migrate:
            await upgrade(engine)
        else:
            await check_schema(engine)
        yield engine
    finally:
        from reconciler.store.backup import checkpoint

        await checkpoint(engine)
        await engine.dispose()


def open_configured_state(
    settings: Settings, *, migrate: bool = False
) -> AbstractAsyncContextManager[AsyncEngine]:
    """:func:`open_state` for the configured state database, with its ``[state]`` options."""
    return open_state(
        settings.database_url,
        migrate=migrate,
        statement_timeout_s=settings.state.statement_timeout_s,
    )
