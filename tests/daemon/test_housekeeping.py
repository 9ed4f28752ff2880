"""The daemon's housekeeping job purges by ``daemon.keep_runs_days`` and says what it did."""

from __future__ import annotations

import logging
from datetime import timedelta

import pytest
from sqlalchemy import select, update
from sqlalchemy.ext.asyncio import AsyncEngine

from reconciler.domain import utcnow
from reconciler.store.runs import runs_t, start_run
from tests.daemon.inprocess import MakeDaemon, make_daemon, sandbox

__all__ = ["make_daemon", "sandbox"]


async def finished_run(engine: AsyncEngine, age: timedelta) -> int:
    run_id = await start_run(engine, source="fastly", provider="fastly", now=utcnow() - age)
    async with engine.begin() as conn:
        await conn.execute(update(runs_t).where(runs_t.c.id == run_id).values(status="failed"))
    return run_id


async def test_housekeeping_purges_runs_older_than_keep_runs_days(
    engine: AsyncEngine, make_daemon: MakeDaemon, caplog: pytest.LogCaptureFixture
) -> None:
    daemon = make_daemon("keeper:1", keep_runs_days=30)
    old = await finished_run(engine, timedelta(days=31))
    recent = await finished_run(engine, timedelta(days=29))
    with caplog.at_level(logging.INFO, logger="reconciler.daemon.service"):
        await daemon.housekeeping()
    async with engine.connect() as conn:
        left = set((await conn.execute(select(runs_t.c.id))).scalars())
    assert left == {recent} and old not in left
    (line,) = [r.getMessage() for r in caplog.records if r.getMessage().startswith("housekeeping")]
    assert "1 old runs, 0 old changes, 0 old alerts" in line
