"""One pull of a source at a time, across processes, on SQLite and PostgreSQL.

A pull holds a lease row (``job_leases``, slot ``pull:<source>``) while it runs: inserting it
is atomic on both backends, so of two pulls started together exactly one gets it. The lease
is renewed while the pull lives and deleted when it ends; one left behind by a process that
died runs out after ``ttl`` and is taken over, at once when that process ran on this host
and is gone (a ``pull`` killed with SIGKILL). The reconcile transaction's advisory lock
(PostgreSQL) stays as the last guard.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import socket
from collections.abc import AsyncIterator
from datetime import timedelta

from sqlalchemy import delete, select
from sqlalchemy.ext.asyncio import AsyncEngine

from reconciler.daemon import leases
from reconciler.errors import SourceBusyError

log = logging.getLogger(__name__)

DEFAULT_TTL = timedelta(minutes=2)


def pull_slot(source: str) -> str:
    return f"pull:{source}"


def this_process() -> str:
    return f"{socket.gethostname()}:{os.getpid()}"


@contextlib.asynccontextmanager
async def source_lock(
    engine: AsyncEngine,
    source: str,
    *,
    holder: str | None = None,
    ttl: timedelta = DEFAULT_TTL,
) -> AsyncIterator[leases.Lease]:
    """Hold the pull lock of ``source`` for the block; SourceBusyError (naming who holds it
    and since when) if another live pull has it."""
    slot, holder = pull_slot(source), holder or this_process()
    lease = await leases.claim(engine, slot, holder, ttl=ttl)
    if lease is None and await _release_if_gone(engine, source, slot):
        lease = await leases.claim(engine, slot, holder, ttl=ttl)
    if lease is None:
        raise SourceBusyError(await _busy_message(engine, source, slot))
    renewing = asyncio.create_task(_renew(engine, lease, ttl))
    try:
        yield lease
    finally:
        renewing.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await renewing
        async with engine.begin() as conn:
            await conn.execute(
                delete(leases.leases_t).where(
                    leases.leases_t.c.slot == slot, leases.leases_t.c.holder == holder
                )
            )


async def _release_if_gone(engine: AsyncEngine, source: str, slot: str) -> bool:
    """Delete the lease of a holder that was a process of this host and no longer exists;
    whether one was deleted. A holder on another host, or a pid that exists (perhaps reused
    by another process), is left to its lease's expiry."""
    t = leases.leases_t.c
    async with engine.begin() as conn:
        row = (await conn.execute(select(t.holder).where(t.slot == slot))).one_or_none()
        if row is None:
            return True  # released meanwhile: claim again
        host, _, pid = str(row.holder).rpartition(":")
        if host != socket.gethostname() or not pid.isdigit() or _alive(int(pid)):
            return False
        deleted = await conn.execute(
            delete(leases.leases_t).where(t.slot == slot, t.holder == row.holder)
        )
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


async def _renew(engine: AsyncEngine, lease: leases.Lease, ttl: timedelta) -> None:
    while True:
        await asyncio.sleep(ttl.total_seconds() / 3)
        with contextlib.suppress(Exception):  # a missed renewal only shortens the lease
            await leases.renew(engine, lease, ttl=ttl)


async def _busy_message(engine: AsyncEngine, source: str, slot: str) -> str:
    t = leases.leases_t.c
    async with engine.connect() as conn:
        row = (
            await conn.execute(select(t.holder, t.acquired_at).where(t.slot == slot))
        ).one_or_none()
    who = f" by {row.holder} since {row.acquired_at:%Y-%m-%d %H:%M:%S}Z" if row is not None else ""
    return (
        f"source '{source}' is being pulled{who} (another 'reconciler pull' or "
        "'plan'): nothing was pulled; run it again when that pull has finished"
    )
