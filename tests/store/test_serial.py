"""The state serial under concurrency: no lost increment, and ``apply`` checks it locked."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime

import pytest
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from reconciler.errors import StalePlanError
from reconciler.settings import Settings
from reconciler.store.findings import bump_serial, current_serial
from reconciler.store.review import apply_acknowledgements

NOW = datetime(2024, 6, 10, tzinfo=UTC)


async def serial_of(engine: AsyncEngine) -> int:
    async with engine.connect() as conn:
        return await current_serial(conn)


async def _backend_pid(conn: AsyncConnection) -> int:
    return int((await conn.execute(text("SELECT pg_backend_pid()"))).scalar_one())


async def wait_until_blocked(engine: AsyncEngine, task: asyncio.Task[object], holder: int) -> None:
    """Wait until some backend waits for a lock ``holder`` holds; fail if ``task`` ends first
    (it did not wait for the lock at all)."""
    async with asyncio.timeout(60):
        while not task.done():
            async with engine.connect() as conn:
                waiting = (
                    await conn.execute(
                        text(
                            "SELECT count(*) FROM pg_stat_activity "
                            "WHERE :holder = ANY(pg_blocking_pids(pid))"
                        ),
                        {"holder": holder},
                    )
                ).scalar_one()
            if waiting:
                return
            await asyncio.sleep(0.01)
    pytest.fail("the second transaction did not wait for the first one's lock")


async def _bump_in_transaction(engine: AsyncEngine) -> int:
    async with engine.begin() as conn:
        return await bump_serial(conn)


async def test_two_transactions_bumping_at_once_both_count(engine: AsyncEngine) -> None:
    before = await serial_of(engine)
    async with engine.connect() as first:
        await first.begin()
        assert await bump_serial(first) == before + 1
        second = asyncio.create_task(_bump_in_transaction(engine))
        if first.dialect.name == "postgresql":
            await wait_until_blocked(engine, second, await _backend_pid(first))
        await first.commit()
    assert await second == before + 2
    assert await serial_of(engine) == before + 2


@pytest.mark.postgres
@pytest.mark.parametrize("backend", ["postgres"], indirect=True)
async def test_apply_waits_for_a_committing_pull_and_refuses_the_stale_plan(
    engine: AsyncEngine,
) -> None:
    made_at = await serial_of(engine)
    async with engine.connect() as pull:
        await pull.begin()
        await bump_serial(pull)  # a pull's reconcile transaction, not yet committed
        applying = asyncio.create_task(
            apply_acknowledgements(
                engine, Settings(), serial=made_at, expected={}, who="test", note=None, now=NOW
            )
        )
        await wait_until_blocked(engine, applying, await _backend_pid(pull))
        await pull.commit()
    with pytest.raises(StalePlanError, match="state changed since this plan was made"):
        await applying
