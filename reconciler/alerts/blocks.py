"""Destinations stopped by a refusal that every message would get.

A revoked or rotated Slack webhook (404 ``no_service``), a deleted or archived channel
(``channel_not_found``, 410) or a forbidden post (403) is about the webhook, not the
message: failing each queued message in turn would drop them all. Instead the destination
is blocked, its messages stay ``pending`` with the reason shown by ``alerts status``, and
the block ends by itself when the destination's URL changes (a configuration reload), or
by ``reconciler alerts retry``. A block names its URL by a hash (``key``), never the URL.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import delete, select, update
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from reconciler.alerts.outbox import FAILED, PENDING, outbox_t
from reconciler.store.db import reader
from reconciler.store.tables import AlertDestinationBlock

blocks_t = AlertDestinationBlock.__table__  # type: ignore[attr-defined]


@dataclass(frozen=True, slots=True)
class StoredBlock:
    destination: str
    reason: str
    blocked_at: datetime


async def load_blocks(engine: AsyncEngine) -> dict[str, StoredBlock]:
    """Every block by URL key (read-only)."""
    query = select(blocks_t.c.key, blocks_t.c.destination, blocks_t.c.reason, blocks_t.c.blocked_at)
    async with reader(engine).connect() as conn:
        rows = (await conn.execute(query)).all()
    return {r.key: StoredBlock(r.destination, r.reason, r.blocked_at) for r in rows}


async def record_block(
    conn: AsyncConnection, *, key: str, destination: str, reason: str, at: datetime
) -> None:
    await conn.execute(delete(blocks_t).where(blocks_t.c.key == key))
    await conn.execute(
        blocks_t.insert().values(key=key, destination=destination, reason=reason, blocked_at=at)
    )


@dataclass(frozen=True, slots=True)
class Requeued:
    messages: int
    unblocked: int


async def requeue_failed(
    engine: AsyncEngine, *, now: datetime, ids: tuple[int, ...] = ()
) -> Requeued:
    """``alerts retry``: failed messages (all, or those of ``ids``) become pending again,
    due now with a fresh attempt count, and every blocked destination is tried again."""
    where = [outbox_t.c.state == FAILED]
    if ids:
        where.append(outbox_t.c.id.in_(ids))
    async with engine.begin() as conn:
        result = await conn.execute(
            update(outbox_t).where(*where).values(state=PENDING, attempts=0, next_attempt_at=now)
        )
        unblocked = await conn.execute(delete(blocks_t))
    return Requeued(int(result.rowcount or 0), int(unblocked.rowcount or 0))
