"""Leases run on the database's clock: instances whose host clocks disagree by more than the
lease's lifetime still never take a live holder's slot, and a real takeover is logged by the
instance that takes over (SQLite and PostgreSQL)."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator, Callable
from datetime import datetime, timedelta
from pathlib import Path

import pytest
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncEngine

from reconciler.daemon import leases
from reconciler.daemon.leases import leases_t
from reconciler.daemon.service import Daemon
from reconciler.domain import utcnow
from reconciler.providers.http import HttpClient
from reconciler.sandbox.scenario import named_scenario
from reconciler.sandbox.server import SandboxServer
from reconciler.settings import settings_from_mapping
from reconciler.store.db import upgrade
from reconciler.store.runs import runs_t
from tests.daemon.support import eventually, fastly_source

TTL_S = 10
SKEW = timedelta(seconds=25)  # more than the lease's lifetime


@pytest.fixture
async def sandbox() -> AsyncIterator[SandboxServer]:
    async with SandboxServer(named_scenario("default"), host="127.0.0.1", port=0) as server:
        yield server


@pytest.fixture
async def make_daemon(
    engine: AsyncEngine,
    state_url: str,
    sandbox: SandboxServer,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> AsyncIterator[Callable[[str, timedelta], Daemon]]:
    """In-process daemons on one database, each with its own (skewed) host clock."""
    monkeypatch.setenv("FASTLY_API_TOKEN", sandbox.fastly_token)
    await upgrade(engine)
    async with HttpClient() as http:

        def make(instance: str, skew: timedelta) -> Daemon:
            settings = settings_from_mapping(
                {
                    "state": {"database_url": state_url, "directory": str(tmp_path / "state")},
                    "daemon": {"instance": instance, "lease_ttl_s": TTL_S},
                    "sources": [fastly_source(sandbox, pull_every="7d", max_retries=0)],
                }
            )
            clock: Callable[[], datetime] = lambda: utcnow() + skew  # noqa: E731
            daemon = Daemon(settings, None, clock=clock)
            daemon._engine = engine
            daemon._http = http
            return daemon

        yield make


async def test_an_instance_whose_clock_is_ahead_leaves_a_live_lease_alone(
    engine: AsyncEngine, sandbox: SandboxServer, make_daemon: Callable[[str, timedelta], Daemon]
) -> None:
    behind = make_daemon("behind:1", timedelta(0))
    ahead = make_daemon("ahead:2", SKEW)
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
            lease = (await conn.execute(select(leases_t))).one()
        assert lease.holder == "behind:1"
    finally:
        holder.cancel()
        await asyncio.gather(holder, return_exceptions=True)


async def test_a_takeover_is_logged_by_the_instance_that_takes_over(
    engine: AsyncEngine,
    make_daemon: Callable[[str, timedelta], Daemon],
    caplog: pytest.LogCaptureFixture,
) -> None:
    # An instance many minutes behind died holding this week's slot; its lease (timed on the
    # database's clock) has run out.
    now = await leases.engine_now(engine)
    slot = leases.slot_name("pull", "fastly", now, timedelta(days=7))
    dead = await leases.claim(engine, slot, "dead:9", ttl=timedelta(seconds=-1))
    assert dead is not None
    taker = make_daemon("taker:3", -timedelta(minutes=30))
    with caplog.at_level(logging.WARNING, logger="reconciler.daemon.service"):
        outcome = await taker.pull_source("fastly")
    assert outcome is not None and outcome.ok, outcome and outcome.error
    assert f"took over {slot} from dead:9" in caplog.text
    async with engine.connect() as conn:
        lease = (await conn.execute(select(leases_t))).one()
    assert (lease.slot, lease.holder, lease.outcome) == (slot, "taker:3", "succeeded")
