"""One pull of a source at a time, across processes, on SQLite and PostgreSQL.

A pull, the CLI's or the daemon's scheduled one, holds a lease row (``job_leases``, slot
``pull:<source>``, beside the daemon's scheduled slots) while it runs: inserting it
is atomic on both backends, so of two pulls started together exactly one gets it. The lease
is renewed while the pull lives and deleted when it ends; one left behind by a process that
died runs out after ``ttl`` and is taken over, at once when that process ran on this host
and is gone (a ``pull`` killed with SIGKILL). The reconcile transaction's advisory lock
(PostgreSQL) stays as the last guard.
"""

from __future__ import annotations

import contextlib
import logging
import os
import socket
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from functools import partial

from sqlalchemy import delete, select, text, update
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from reconciler.errors import SourceBusyError
from reconciler.periodic import Repeating
from reconciler.store.tables import JobLease
from reconciler.store.upsert import insert_on_conflict

log = logging.getLogger(__name__)
leases_t = JobLease.__table__  # type: ignore[attr-defined]
DEFAULT_TTL = timedelta(minutes=2)


def pull_slot(source: str) -> str:
    return f"pull:{source}"


def this_process() -> str:
    return f"{socket.gethostname()}:{os.getpid()}"


async def _database_now(conn: AsyncConnection) -> datetime:
    """The database's clock, so that processes on hosts whose clocks disagree agree on when
    a lease runs out."""
    if conn.dialect.name == "postgresql":
        value = (await conn.execute(text("SELECT clock_timestamp()"))).scalar_one()
        return value.astimezone(UTC)  # type: ignore[no-any-return]
    stamp = (await conn.execute(text("SELECT strftime('%Y-%m-%d %H:%M:%f', 'now')"))).scalar_one()
    return datetime.fromisoformat(str(stamp)).replace(tzinfo=UTC)


async def _claim(engine: AsyncEngine, slot: str, holder: str, ttl: timedelta) -> bool:
    """Take the lease: a new row, or the row of a holder whose lease ran out."""
    async with engine.begin() as conn:
        now = await _database_now(conn)
        values = {"slot": slot, "holder": holder, "acquired_at": now, "expires_at": now + ttl}
        upsert = insert_on_conflict(conn.dialect.name, leases_t)
        inserted = await conn.execute(
            upsert.values(**values).on_conflict_do_nothing(index_elements=["slot"])
        )
        if inserted.rowcount == 1:
            return True
        taken = await conn.execute(
            update(leases_t)
            .where(leases_t.c.slot == slot, leases_t.c.expires_at < now)
            .values(holder=holder, acquired_at=now, expires_at=now + ttl)
        )
        return taken.rowcount == 1


@contextlib.asynccontextmanager
async def source_lock(
    engine: AsyncEngine,
    source: str,
    *,
    holder: str | None = None,
    ttl: timedelta = DEFAULT_TTL,
    replacing: str | None = None,
) -> AsyncIterator[None]:
    """Hold the pull lock of ``source`` for the block; SourceBusyError (naming who holds it
    and since when) if another live pull has it. ``replacing`` names a daemon instance
    whose lock this pull takes over whatever its lease says (its scheduled slot ran out
    and was taken over: its results can no longer be committed)."""
    slot, holder = pull_slot(source), holder or this_process()
    claimed = await _claim(engine, slot, holder, ttl)
    if not claimed and replacing is not None:
        claimed = await _take_from(engine, source, slot, holder, ttl, replacing)
    if not claimed and await _release_if_gone(engine, source, slot):
        claimed = await _claim(engine, slot, holder, ttl)
    if not claimed:
        raise SourceBusyError(await _busy_message(engine, source, slot))
    # Stopped, not cancelled, when the block ends (see reconciler.periodic).
    renewing = Repeating(
        ttl.total_seconds() / 3, partial(_renew, engine, slot, holder, ttl), name=slot
    )
    try:
        yield
    finally:
        await renewing.stop()
        async with engine.begin() as conn:
            await conn.execute(
                delete(leases_t).where(leases_t.c.slot == slot, leases_t.c.holder == holder)
            )


async def _take_from(
    engine: AsyncEngine, source: str, slot: str, holder: str, ttl: timedelta, instance: str
) -> bool:
    """Take the lock of a pull of daemon ``instance`` (holder ``instance@host:pid``)."""
    t = leases_t.c
    async with engine.begin() as conn:
        now = await _database_now(conn)
        taken = await conn.execute(
            update(leases_t)
            .where(t.slot == slot, t.holder.startswith(f"{instance}@", autoescape=True))
            .values(holder=holder, acquired_at=now, expires_at=now + ttl)
        )
    if taken.rowcount:
        log.warning("source '%s': took over the pull lock of instance %s", source, instance)
    return bool(taken.rowcount)


async def _release_if_gone(engine: AsyncEngine, source: str, slot: str) -> bool:
    """Delete the lease of a holder that was a process of this host and no longer exists;
    whether one was deleted. A holder on another host, or a pid that exists (perhaps reused
    by another process), is left to its lease's expiry."""
    t = leases_t.c
    async with engine.begin() as conn:
        row = (await conn.execute(select(t.holder).where(t.slot == slot))).one_or_none()
        if row is None:
            return True  # released meanwhile: claim again
        # ``host:pid``, or ``instance@host:pid`` for a daemon's pull.
        host, _, pid = str(row.holder).rpartition(":")
        host = host.rpartition("@")[2]
        if host != socket.gethostname() or not pid.isdigit() or _alive(int(pid)):
            return False
        deleted = await conn.execute(delete(leases_t).where(t.slot == slot, t.holder == row.holder))
    if deleted.rowcount:
        log.warning(
            "source '%s': took over the pull lock of %s, a process of this host that is gone",
            source,
            row.holder,
        )
    return bool(deleted.rowcount)


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # exists, owned by another user
        return True
    return True


async def _renew(engine: AsyncEngine, slot: str, holder: str, ttl: timedelta) -> bool:
    with contextlib.suppress(Exception):  # a missed renewal only shortens the lease
        async with engine.begin() as conn:
            now = await _database_now(conn)
            await conn.execute(
                update(leases_t)
                .where(leases_t.c.slot == slot, leases_t.c.holder == holder)
                .values(expires_at=now + ttl)
            )
    return True


async def _busy_message(engine: AsyncEngine, source: str, slot: str) -> str:
    t = leases_t.c
    async with engine.connect() as conn:
        row = (
            await conn.execute(select(t.holder, t.acquired_at).where(t.slot == slot))
        ).one_or_none()
    who = f" by {row.holder} since {row.acquired_at:%Y-%m-%d %H:%M:%S}Z" if row is not None else ""
    return (
        f"source '{source}' is being pulled{who} (another 'reconciler pull' or "
        "'plan', or the daemon): nothing was pulled; run it again when that pull has finished"
    )
