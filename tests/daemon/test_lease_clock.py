"""Leases run on the database's clock: instances whose host clocks disagree by more than the
lease's lifetime still never take a live holder's slot, and a real takeover is logged by the
instance that takes over (SQLite and PostgreSQL)."""

from __future__ import annotations

import asyncio
import logging
from datetime import timedelta

import pytest
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncEngine

from reconciler.daemon import leases
from reconciler.daemon.leases import leases_t
from reconciler.sandbox.server import SandboxServer
from reconciler.store.runs import runs_t
from tests.daemon.inprocess import MakeDaemon, make_daemon, sandbox
from tests.daemon.support import eventually

SKEW = timedelta(seconds=25)  # more than the lease's lifetime


async def test_an_instance_whose_clock_is_ahead_leaves_a_live_lease_alone(
    engine: AsyncEngine, sandbox: SandboxServer, make_daemon: MakeDaemon
) -> None:
    behind = make_daemon("behind:1")
    ahead = make_daemon("ahead:2", skew=SKEW)
    (hang,) = sandbox.state.add_faults(
        [{"kind": "hang", "endpoint": "fastly.usage_metrics", "count": 1}]
    )
    holder = asyncio.create_task(behind.pull_source("fastly"))
    try:

        async def running() -> bool:
            async with engine.connect() as conn:
                statuses = (await conn.execute(select(runs_t.c.status))).scalars().all()
            return statuses == ["running"] and hang.fired == 1

        await eventually(running, timeout_s=60)
        # On its own clock the lease ran out 15 s ago; on the database's it has 10 s to go.
        assert await ahead.pull_source("fastly") is None
        async with engine.connect() as conn:
            lease = (
                await conn.execute(
                    select(leases_t).where(leases_t.c.slot.startswith("pull:fastly:"))
                )
            ).one()
        assert lease.holder == "behind:1"
    finally:
        holder.cancel()
        await asyncio.gather(holder, return_exceptions=True)


async def test_a_takeover_is_logged_by_the_instance_that_takes_over(
    engine: AsyncEngine,
    make_daemon: MakeDaemon,
    caplog: pytest.LogCaptureFixture,
) -> None:
    # An instance many minutes behind died holding this week's slot; its lease (timed on the
    # database's clock) has run out.
    now = await leases.engine_now(engine)
    slot = leases.slot_name("pull", "fastly", now, timedelta(days=7))
    dead = await leases.claim(engine, slot, "dead:9", ttl=timedelta(seconds=-1))
    assert dead is not None
    taker = make_daemon("taker:3", skew=-timedelta(minutes=30))
    with caplog.at_level(logging.WARNING, logger="reconciler.daemon.service"):
        outcome = await taker.pull_source("fastly")
    assert outcome is not None and outcome.ok, outcome and outcome.error
    assert f"took over {slot} from dead:9" in caplog.text
    async with engine.connect() as conn:
        lease = (await conn.execute(select(leases_t))).one()
    assert (lease.slot, lease.holder, lease.outcome) == (slot, "taker:3", "succeeded")


__all__ = ["make_daemon", "sandbox"]
