"""Housekeeping's purge by ``daemon.keep_runs_days``: old changes, runs nothing refers to, and
delivered or failed alerts go; what the state still points at stays (SQLite and PostgreSQL)."""

from __future__ import annotations

from datetime import timedelta

from sqlalchemy import func, insert, select, update
from sqlalchemy.ext.asyncio import AsyncEngine

from reconciler.store.retention import changes_t, outbox_t, purge_history, runs_t
from reconciler.store.runs import start_run
from tests.store.test_ingest import NOW, line, pull

OLD = NOW - timedelta(days=500)


async def old_run(engine: AsyncEngine, status: str) -> int:
    run_id = await start_run(engine, source="fastly", provider="fastly", now=OLD)
    async with engine.begin() as conn:
        await conn.execute(update(runs_t).where(runs_t.c.id == run_id).values(status=status))
    return run_id


async def message(engine: AsyncEngine, state: str, *, age: timedelta) -> int:
    when = NOW - age
    async with engine.begin() as conn:
        result = await conn.execute(
            insert(outbox_t).values(
                source="fastly",
                kind="run",
                route="default",
                payload="{}",
                state=state,
                attempts=1,
                next_attempt_at=when,
                created_at=when,
                sent_at=when if state == "sent" else None,
            )
        )
    return int(result.inserted_primary_key[0])  # type: ignore[index]


async def ids(engine: AsyncEngine, table: object) -> set[int]:
    async with engine.connect() as conn:
        return set((await conn.execute(select(table.c.id))).scalars())  # type: ignore[attr-defined]


async def test_the_purge_keeps_what_the_state_refers_to_and_drops_the_rest(
    engine: AsyncEngine,
) -> None:
    failed, failed_too = await old_run(engine, "failed"), await old_run(engine, "succeeded")
    still_running = await old_run(engine, "running")
    await pull(engine, [line("bandwidth", "1")])  # the import: first_run_id, a version
    await pull(engine, [line("bandwidth", "2")])  # a change and a version
    await pull(engine, [line("bandwidth", "2")])  # nothing changed
    kept_runs = await ids(engine, runs_t) - {failed, failed_too}
    old_sent = await message(engine, "sent", age=timedelta(days=450))
    old_failed = await message(engine, "failed", age=timedelta(days=450))
    old_pending = await message(engine, "pending", age=timedelta(days=450))
    recent_sent = await message(engine, "sent", age=timedelta(days=3))

    purged = await purge_history(engine, before=NOW - timedelta(days=400))

    assert (purged.runs, purged.changes, purged.alerts) == (2, 0, 2)
    assert await ids(engine, runs_t) == kept_runs
    assert still_running in kept_runs  # left to the stale-run cleanup
    assert await ids(engine, outbox_t) == {old_pending, recent_sent}
    assert old_sent not in await ids(engine, outbox_t) and old_failed not in kept_runs

    # Once the window has passed today's pulls too: their change goes, and of their runs only
    # those a line or a version names stay (the import and the change; the third changed
    # nothing, so nothing names it).
    first, second, _third = sorted(kept_runs - {still_running})
    async with engine.connect() as conn:
        before = (await conn.execute(select(func.count()).select_from(changes_t))).scalar_one()
    assert before == 1
    later = await purge_history(engine, before=NOW + timedelta(days=1))
    assert (later.runs, later.changes, later.alerts) == (1, 1, 1)
    assert await ids(engine, runs_t) == {still_running, first, second}
    assert await ids(engine, changes_t) == set()
