"""Each migration carries the rows of the revision before it forward (SQLite and PostgreSQL)."""

from __future__ import annotations

from datetime import UTC, datetime

from sqlalchemy import insert
from sqlalchemy.ext.asyncio import AsyncEngine

from reconciler.store.db import create_engine, upgrade

STARTED = datetime(2024, 6, 10, 8, 30, tzinfo=UTC)


async def _at(url: str, revision: str) -> AsyncEngine:
    engine = create_engine(url, create=True)
    await upgrade(engine, revision)
    return engine


async def test_0002_gives_existing_runs_their_start_as_heartbeat(state_url: str) -> None:
    from reconciler.store.runs import runs_t

    engine = await _at(state_url, "0001_initial")
    try:
        async with engine.begin() as conn:
            for status in ("running", "succeeded"):
                # Only the columns revision 0001 has.
                await conn.execute(
                    insert(runs_t).values(
                        source="s",
                        provider="fastly",
                        status=status,
                        started_at=STARTED,
                        lines_read=7,
                        coverage="{}",
                        complete=False,
                    )
                )
        await upgrade(engine)
        async with engine.connect() as conn:
            rows = (
                await conn.execute(
                    runs_t.select()
                    .with_only_columns(runs_t.c.status, runs_t.c.lines_read, runs_t.c.heartbeat_at)
                    .order_by(runs_t.c.id)
                )
            ).all()
        assert [tuple(r) for r in rows] == [
            ("running", 7, STARTED),
            ("succeeded", 7, STARTED),
        ]
    finally:
        await engine.dispose()
