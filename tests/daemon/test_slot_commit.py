"""A scheduled pull completes its slot in the transaction that commits its results: there is
no moment where the results are in and the slot still looks open, so a holder that stalls or
dies at its commit never lets a second instance pull the slot again. A holder whose slot was
taken over before it commits has its results and its completion rolled back together. The
daemons run in this process on SQLite and PostgreSQL, timed by the sandbox's schedule instant,
the holder stopped inside its commit by the test-only hold point."""

from __future__ import annotations

import asyncio
import logging
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncEngine

from reconciler.daemon import leases
from reconciler.daemon.leases import leases_t
from reconciler.daemon.service import Daemon, sandbox_schedule
from reconciler.sandbox.server import SandboxServer
from reconciler.store.db import create_engine, reader
from reconciler.store.fault_point import HOLD_BEFORE_COMMIT_ENV
from reconciler.store.runs import runs_t
from tests.daemon.inprocess import MakeDaemon, make_daemon, sandbox
from tests.daemon.support import eventually

START = datetime(2024, 7, 10, 6, 0, 1, tzinfo=UTC)
SLOT = leases.slot_name("pull", "fastly", START, timedelta(days=7))
# The holder's lease, long enough that it never renews in real time while the test runs: only
# the schedule instant, stepped past it, makes it run out.
HOLDER_TTL_S = 600


async def slot_runs(engine: AsyncEngine) -> list[tuple[str | None, str]]:
    async with reader(engine).connect() as conn:  # never waits for a writer (SQLite)
        rows = await conn.execute(
            select(runs_t.c.instance, runs_t.c.status)
            .where(runs_t.c.slot == SLOT)
            .order_by(runs_t.c.id)
        )
        return [(row.instance, row.status) for row in rows]


async def slot_lease(engine: AsyncEngine) -> Any:
    async with reader(engine).connect() as conn:
        return (await conn.execute(select(leases_t).where(leases_t.c.slot == SLOT))).one()


def as_utc(stamp: datetime | None) -> datetime | None:
    """A stored instant as aware UTC (SQLite hands it back naive)."""
    return None if stamp is None else stamp.replace(tzinfo=UTC)


def on_schedule(sandbox: SandboxServer, *daemons: Daemon) -> None:
    sandbox.state.set_schedule_now(START)
    for daemon in daemons:
        daemon.schedule_source = sandbox_schedule(sandbox.base_url)


async def test_a_slot_is_completed_in_the_commit_of_its_pull_and_never_pulled_twice(
    engine: AsyncEngine,
    state_url: str,
    sandbox: SandboxServer,
    make_daemon: MakeDaemon,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    holder = make_daemon("holder:1", lease_ttl_s=HOLDER_TTL_S)
    taker = make_daemon("taker:2")
    # The taker on an engine of its own: a connection checked out of it is its claim under way.
    taker_engine = create_engine(state_url)
    taker._engine = taker_engine
    on_schedule(sandbox, holder, taker)
    held = tmp_path / "commit.held"
    monkeypatch.setenv(HOLD_BEFORE_COMMIT_ENV, str(held))
    pulling = asyncio.create_task(holder.pull_source("fastly"))
    taking: asyncio.Task[Any] | None = None
    try:

        async def holding() -> bool:
            assert not pulling.done(), pulling
            return held.exists()

        await eventually(holding, timeout_s=60, every_s=0.02)
        monkeypatch.delenv(HOLD_BEFORE_COMMIT_ENV)  # the holder alone stops at its commit
        # Inside the commit: neither the results nor the slot's completion can be seen.
        assert await slot_runs(engine) == [("holder:1", "running")]
        assert (await slot_lease(engine)).completed_at is None

        # The holder's lease runs out while it is held; another instance tries to take over
        # before the commit. Its claim waits for the holder's transaction.
        sandbox.state.advance_schedule(HOLDER_TTL_S + 1)
        taking = asyncio.create_task(taker.pull_source("fastly"))

        async def claiming() -> bool:
            assert not taking.done(), taking
            checked_out: int = taker_engine.pool.checkedout()  # type: ignore[attr-defined]
            return checked_out > 0

        await eventually(claiming, timeout_s=60, every_s=0.02)
        held.unlink()  # the holder commits
        async with asyncio.timeout(60):
            outcome = await pulling
            assert await taking is None
    finally:
        held.unlink(missing_ok=True)
        for task in (pulling, taking):
            if task is not None:
                task.cancel()
        await asyncio.gather(pulling, *([taking] if taking else []), return_exceptions=True)
        await taker_engine.dispose()

    assert outcome is not None and outcome.ok, outcome and outcome.error
    assert await slot_runs(engine) == [("holder:1", "succeeded")]
    lease = await slot_lease(engine)
    assert (lease.holder, lease.outcome) == ("holder:1", "succeeded")
    # Stamped on the instant of the holder's commit, before the schedule moved on: the slot
    # was completed inside that transaction, not after it.
    assert as_utc(lease.completed_at) == START


async def test_a_pull_whose_slot_was_taken_over_before_its_commit_commits_nothing(
    engine: AsyncEngine,
    sandbox: SandboxServer,
    make_daemon: MakeDaemon,
    caplog: pytest.LogCaptureFixture,
) -> None:
    # One retry: the holder's hung request, released, is answered 503 and tried again, so
    # the holder goes on to its commit after the takeover.
    holder = make_daemon("holder:1", lease_ttl_s=HOLDER_TTL_S, max_retries=1)
    taker = make_daemon("taker:2")
    on_schedule(sandbox, holder, taker)
    (hang,) = sandbox.state.add_faults(
        [{"kind": "hang", "endpoint": "fastly.usage_metrics", "count": 1}]
    )
    pulling = asyncio.create_task(holder.pull_source("fastly"))
    try:

        async def stuck() -> bool:
            assert not pulling.done(), pulling
            return await slot_runs(engine) == [("holder:1", "running")] and hang.fired == 1

        await eventually(stuck, timeout_s=60)
        sandbox.state.advance_schedule(HOLDER_TTL_S + 1)  # the holder is stuck past its lease
        taken = await taker.pull_source("fastly")
        assert taken is not None and taken.ok, taken and taken.error
        sandbox.state.release_hangs.set()
        with caplog.at_level(logging.WARNING):
            async with asyncio.timeout(60):
                late = await pulling
    finally:
        sandbox.state.release_hangs.set()
        pulling.cancel()
        await asyncio.gather(pulling, return_exceptions=True)

    assert late is not None and not late.ok
    assert f"slot {SLOT} was taken over by another instance" in (late.error or "")
    assert "taken over by another instance" in caplog.text
    # One pull committed: the taker's. The holder's results and completion were rolled back
    # together, its run recorded as failed, and the taker's completed slot left as it was.
    assert await slot_runs(engine) == [("holder:1", "failed"), ("taker:2", "succeeded")]
    lease = await slot_lease(engine)
    assert (lease.holder, lease.outcome) == ("taker:2", "succeeded")
    assert lease.completed_at is not None


async def test_a_failed_pull_hands_its_slot_back_uncompleted(
    engine: AsyncEngine, sandbox: SandboxServer, make_daemon: MakeDaemon
) -> None:
    daemon = make_daemon("holder:1")
    on_schedule(sandbox, daemon)
    sandbox.state.add_faults(
        [{"kind": "status", "status": 500, "endpoint": "fastly.usage_metrics"}]
    )
    outcome = await daemon.pull_source("fastly")
    assert outcome is not None and not outcome.ok
    assert await slot_runs(engine) == [("holder:1", "failed")]
    lease = await slot_lease(engine)
    assert (lease.holder, lease.outcome, lease.completed_at) == ("holder:1", "failed", None)
    # Handed back for a retry within the slot, by this instance or another.
    retry_at = START + timedelta(minutes=5)
    assert as_utc(lease.expires_at) == retry_at


__all__ = ["make_daemon", "sandbox"]
