"""Slots claimed in the database, so that each scheduled pull runs exactly once.

Time is cut into slots of a source's ``pull_every``, aligned on the Unix epoch, so every
instance computes the same slot names. Claiming inserts a unique row; an instance that finds
the row taken leaves the slot alone unless its lease expired without the work being done (the
holder died), in which case it takes it over. A failed pull hands its slot back after a short
delay so that another attempt (by any instance) can follow within the same slot.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from sqlalchemy import delete, update
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from reconciler.store.tables import JobLease

leases_t = JobLease.__table__  # type: ignore[attr-defined]
EPOCH = datetime(1970, 1, 1, tzinfo=UTC)


def slot_start(now: datetime, every: timedelta) -> datetime:
    """The start of the slot of length ``every`` that contains ``now``."""
    index = (now - EPOCH) // every
    return EPOCH + every * index


def slot_name(kind: str, key: str, now: datetime, every: timedelta) -> str:
    start = slot_start(now, every)
    return f"{kind}:{key}:{start.strftime('%Y%m%dT%H%M%SZ')}"


@dataclass(frozen=True)
class Lease:
    slot: str
    holder: str
    expires_at: datetime


async def claim(
    engine: AsyncEngine, slot: str, holder: str, *, ttl: timedelta, now: datetime
) -> Lease | None:
    """Claim ``slot`` for ``holder``; None when another instance holds it or it is done."""
    values = {"slot": slot, "holder": holder, "acquired_at": now, "expires_at": now + ttl}
    async with engine.begin() as conn:
        dialect = conn.dialect.name
        upsert = (postgresql.insert if dialect == "postgresql" else sqlite.insert)(leases_t)
        inserted = await conn.execute(
            upsert.values(**values).on_conflict_do_nothing(index_elements=["slot"])
        )
        if inserted.rowcount == 1:
            return Lease(slot, holder, now + ttl)
        taken_over = await conn.execute(
            update(leases_t)
            .where(
                leases_t.c.slot == slot,
                leases_t.c.completed_at.is_(None),
                leases_t.c.expires_at < now,
            )
            .values(holder=holder, acquired_at=now, expires_at=now + ttl)
        )
        if taken_over.rowcount == 1:
            return Lease(slot, holder, now + ttl)
    return None


async def renew(engine: AsyncEngine, lease: Lease, *, ttl: timedelta, now: datetime) -> bool:
    """Extend a lease still held by its holder; False if it was lost."""
    async with engine.begin() as conn:
        return await hold(conn, lease, ttl=ttl, now=now)


async def hold(conn: AsyncConnection, lease: Lease, *, ttl: timedelta, now: datetime) -> bool:
    """Extend ``lease`` in the caller's transaction; False if another instance took it over.

    Called in the transaction that commits a slot's work, this fences a holder that stalled
    past its lease: the row lock orders it against a takeover, so exactly one of them commits.
    """
    result = await conn.execute(
        update(leases_t)
        .where(
            leases_t.c.slot == lease.slot,
            leases_t.c.holder == lease.holder,
            leases_t.c.completed_at.is_(None),
        )
        .values(expires_at=now + ttl)
    )
    return result.rowcount == 1


async def complete(engine: AsyncEngine, lease: Lease, *, outcome: str, now: datetime) -> None:
    async with engine.begin() as conn:
        await conn.execute(
            update(leases_t)
            .where(leases_t.c.slot == lease.slot, leases_t.c.holder == lease.holder)
            .values(completed_at=now, outcome=outcome)
        )


async def release_for_retry(
    engine: AsyncEngine, lease: Lease, *, retry_after: timedelta, now: datetime
) -> None:
    """A failed attempt: the slot may be claimed again once ``retry_after`` has passed."""
    async with engine.begin() as conn:
        await conn.execute(
            update(leases_t)
            .where(leases_t.c.slot == lease.slot, leases_t.c.holder == lease.holder)
            .values(expires_at=now + retry_after, outcome="failed")
        )


async def purge(engine: AsyncEngine, *, before: datetime) -> int:
    async with engine.begin() as conn:
        result = await conn.execute(delete(leases_t).where(leases_t.c.acquired_at < before))
    return int(result.rowcount or 0)
