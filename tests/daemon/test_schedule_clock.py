"""A daemon following a sandbox (``--sandbox-clock``) times its slots and leases by the
sandbox's schedule instant once it is set: a test steps time instead of waiting for it, so a
takeover happens when the instant passes a dead holder's lease, never at a real-time moment
(SQLite and PostgreSQL)."""

from __future__ import annotations

import asyncio
import logging
from datetime import UTC, datetime, timedelta

import pytest
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncEngine

from reconciler.daemon import leases
from reconciler.daemon.leases import leases_t
from reconciler.daemon.service import sandbox_schedule
from reconciler.sandbox.server import SandboxServer
from reconciler.store.runs import runs_t
from tests.daemon.inprocess import LEASE_TTL_S, MakeDaemon, make_daemon, sandbox
from tests.daemon.support import eventually

START = datetime(2024, 7, 10, 6, 0, 1, tzinfo=UTC)
WEEK = timedelta(days=7)


async def test_a_holder_is_taken_over_when_the_schedule_instant_passes_its_lease(
    engine: AsyncEngine,
    sandbox: SandboxServer,
    make_daemon: MakeDaemon,
    caplog: pytest.LogCaptureFixture,
) -> None:
    sandbox.state.set_schedule_now(START)
    holder, taker = make_daemon("holder:1"), make_daemon("taker:2")
    for daemon in (holder, taker):
        daemon.schedule_source = sandbox_schedule(sandbox.base_url)
    (hang,) = sandbox.state.add_faults(
        [{"kind": "hang", "endpoint": "fastly.usage_metrics", "count": 1}]
    )
    held = asyncio.create_task(holder.pull_source("fastly"))
    try:

        async def stuck() -> bool:
            async with engine.connect() as conn:
                statuses = (await conn.execute(select(runs_t.c.status))).scalars().all()
            return statuses == ["running"] and hang.fired == 1

        await eventually(stuck, timeout_s=60)
        slot = leases.slot_name("pull", "fastly", START, WEEK)
        # However long that took in real time, the instant has not moved: the lease holds.
        assert await taker.pull_source("fastly") is None

        sandbox.state.advance_schedule(LEASE_TTL_S + 1)  # the holder is stuck past its lease
        with caplog.at_level(logging.WARNING, logger="reconciler.daemon.service"):
            outcome = await taker.pull_source("fastly")
    finally:
        sandbox.state.release_hangs.set()
        await asyncio.gather(held, return_exceptions=True)

    assert outcome is not None and outcome.ok, outcome and outcome.error
    assert f"took over {slot} from holder:1" in caplog.text
    async with engine.connect() as conn:
        lease = (await conn.execute(select(leases_t))).one()
    taken_at = START + timedelta(seconds=LEASE_TTL_S + 1)
    assert (lease.slot, lease.holder, lease.outcome) == (slot, "taker:2", "succeeded")
    assert lease.acquired_at.replace(tzinfo=UTC) == taken_at  # the instant, not the machine's


__all__ = ["make_daemon", "sandbox"]
