"""Slots claimed in the database, so that each scheduled pull runs exactly once.

Time is cut into slots of a source's ``pull_every``, aligned on the Unix epoch, so every
instance computes the same slot names. Claiming inserts a unique row; an instance that finds
the row taken leaves the slot alone unless its lease expired without the work being done (the
holder died), in which case it takes it over. A pull completes its slot in the transaction
that commits its results (``complete_held``), so no moment exists where the results are in and
the slot still looks open to a takeover. A failed pull hands its slot back after a short delay
so that another attempt (by any instance) can follow within the same slot.

Every lease time comes from the database's clock (``clock_timestamp()`` on PostgreSQL, the
SQLite library's ``'now'``), never from the instance's: instances whose host clocks disagree
still agree on when a lease runs out. ``now`` is accepted only to state a time in tests.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from sqlalchemy import Update, delete, select, text, update
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from reconciler.store.db import reader
from reconciler.store.tables import JobLease
from reconciler.store.upsert import insert_on_conflict

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
    taken_from: str | None = None  # the holder whose expired lease this one took over


async def database_now(conn: AsyncConnection) -> datetime:
    """The database server's current time (aware UTC)."""
    if conn.dialect.name == "postgresql":
        value = (await conn.execute(text("SELECT clock_timestamp()"))).scalar_one()
        return value.astimezone(UTC)  # type: ignore[no-any-return]
    stamp = (await conn.execute(text("SELECT strftime('%Y-%m-%d %H:%M:%f', 'now')"))).scalar_one()
    return datetime.fromisoformat(str(stamp)).replace(tzinfo=UTC)


async def engine_now(engine: AsyncEngine) -> datetime:
    """The database's time, for naming a slot: the same on every instance."""
    async with engine.connect() as conn:
        return await database_now(conn)


async def claim(
    engine: AsyncEngine,
    slot: str,
    holder: str,
    *,
    ttl: timedelta,
    now: datetime | None = None,
) -> Lease | None:
    """Claim ``slot`` for ``holder``; None when another instance holds it or it is done."""
    async with engine.begin() as conn:
        now = now or await database_now(conn)
        values = {"slot": slot, "holder": holder, "acquired_at": now, "expires_at": now + ttl}
        upsert = insert_on_conflict(conn.dialect.name, leases_t)
        inserted = await conn.execute(
            upsert.values(**values).on_conflict_do_nothing(index_elements=["slot"])
        )
        if inserted.rowcount == 1:
            return Lease(slot, holder, now + ttl)
        expired = (leases_t.c.slot == slot, leases_t.c.completed_at.is_(None))
        previous = (
            await conn.execute(
                select(leases_t.c.holder, leases_t.c.outcome).where(
                    *expired, leases_t.c.expires_at < now
                )
            )
        ).one_or_none()
        if previous is None:
            return None
        taken_over = await conn.execute(
            update(leases_t)
            .where(*expired, leases_t.c.expires_at < now, leases_t.c.holder == previous.holder)
            .values(holder=holder, acquired_at=now, expires_at=now + ttl)
        )
        if taken_over.rowcount == 1:
            # A slot handed back after a failure is a retry; one left running, a takeover.
            dead = None if previous.outcome == "failed" else str(previous.holder)
            return Lease(slot, holder, now + ttl, taken_from=dead)
    return None


async def renew(
    engine: AsyncEngine, lease: Lease, *, ttl: timedelta, now: datetime | None = None
) -> bool:
    """Extend a lease still held by its holder; False if it was lost."""
    async with engine.begin() as conn:
        return await hold(conn, lease, ttl=ttl, now=now)


def _still_held(lease: Lease) -> Update:
    """An update of ``lease``'s row while it is still this holder's and not completed."""
    return update(leases_t).where(
        leases_t.c.slot == lease.slot,
        leases_t.c.holder == lease.holder,
        leases_t.c.completed_at.is_(None),
    )


async def hold(
    conn: AsyncConnection, lease: Lease, *, ttl: timedelta, now: datetime | None = None
) -> bool:
    """Extend ``lease`` in the caller's transaction; False if another instance took it over
    or the slot is already done."""
    now = now or await database_now(conn)
    result = await conn.execute(_still_held(lease).values(expires_at=now + ttl))
    return result.rowcount == 1


async def complete_held(
    conn: AsyncConnection, lease: Lease, *, outcome: str, now: datetime | None = None
) -> bool:
    """Complete ``lease`` in the caller's transaction; False if another instance took it over.

    Called in the transaction that commits a slot's work, the slot is done exactly when that
    work is: a holder that stalls or dies before the commit leaves the slot open, one that
    commits leaves nothing open to a takeover. The row lock orders it against a takeover (a
    claim waits for the commit, then finds the slot done), so exactly one of them commits.
    """
    now = now or await database_now(conn)
    result = await conn.execute(_still_held(lease).values(completed_at=now, outcome=outcome))
    return result.rowcount == 1


async def completed_by_holder(engine: AsyncEngine, lease: Lease) -> bool:
    """Whether ``lease``'s slot is done and its holder still the one that completed it."""
    async with reader(engine).connect() as conn:
        found = await conn.execute(
            select(leases_t.c.holder, leases_t.c.completed_at).where(leases_t.c.slot == lease.slot)
        )
        row = found.one_or_none()
    return row is not None and row.holder == lease.holder and row.completed_at is not None


async def complete(
    engine: AsyncEngine, lease: Lease, *, outcome: str, now: datetime | None = None
) -> None:
    async with engine.begin() as conn:
        now = now or await database_now(conn)
        await conn.execute(
            update(leases_t)
            .where(leases_t.c.slot == lease.slot, leases_t.c.holder == lease.holder)
            .values(completed_at=now, outcome=outcome)
        )


async def release_for_retry(
    engine: AsyncEngine, lease: Lease, *, retry_after: timedelta, now: datetime | None = None
) -> None:
    """A failed attempt: the slot may be claimed again once ``retry_after`` has passed.

    A slot already done stays done: an attempt that failed after its commit had completed the
    slot (a lost answer to the commit, say) hands nothing back.
    """
    async with engine.begin() as conn:
        now = now or await database_now(conn)
        await conn.execute(
            update(leases_t)
            .where(
                leases_t.c.slot == lease.slot,
                leases_t.c.holder == lease.holder,
                leases_t.c.completed_at.is_(None),
            )
            .values(expires_at=now + retry_after, outcome="failed")
        )


async def purge(engine: AsyncEngine, *, before: datetime) -> int:
    async with engine.begin() as conn:
        result = await conn.execute(delete(leases_t).where(leases_t.c.acquired_at < before))
    return int(result.rowcount or 0)
