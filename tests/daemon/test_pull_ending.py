"""A scheduled pull that ends waits for the renewal of its slot's lease in progress instead
of cancelling it: a renewal cancelled in the middle of its database statement (twice, as the
pull's two cleanups did) could leave its connection's close waiting for ever, and the daemon
then never exited after SIGTERM."""

from __future__ import annotations

import asyncio
from datetime import datetime

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncEngine

from reconciler.daemon.leases import leases_t
from reconciler.sandbox.server import SandboxServer
from reconciler.store.pull_lock import pull_slot
from reconciler.store.runs import runs_t
from tests.daemon.inprocess import MakeDaemon, make_daemon, sandbox
from tests.daemon.support import eventually


class RenewalGate:
    """The daemon's schedule source, asked before each lease write: the first call from a
    task other than the pull's own (a renewal) waits until :meth:`release`; how it ended
    is recorded."""

    def __init__(self) -> None:
        self.pull: asyncio.Task[object] | None = None
        self.entered = asyncio.Event()
        self.released = asyncio.Event()
        self.ends: list[str] = []

    def release(self) -> None:
        self.released.set()

    async def now(self) -> datetime | None:
        if asyncio.current_task() is self.pull or self.entered.is_set():
            return None  # the database's clock
        self.entered.set()
        try:
            await self.released.wait()
        except asyncio.CancelledError:
            self.ends.append("cancelled")
            raise
        self.ends.append("released")
        return None


async def _run_status(engine: AsyncEngine) -> str | None:
    async with engine.connect() as conn:
        return (await conn.execute(select(runs_t.c.status))).scalar_one_or_none()


async def test_the_renewal_in_progress_when_a_pull_ends_is_waited_for_not_cancelled(
    engine: AsyncEngine, sandbox: SandboxServer, make_daemon: MakeDaemon
) -> None:
    # The provider answers slowly: a renewal of the slot's lease (one a second) starts while
    # the pull waits, and is held in the gate while the pull goes on to its commit.
    sandbox.state.add_faults(
        [{"kind": "latency", "latency_ms": 3000, "endpoint": "fastly.usage_metrics"}]
    )
    daemon = make_daemon("scheduler-1", lease_ttl_s=3)
    gate = RenewalGate()
    daemon.schedule_source = gate.now
    pulling = asyncio.create_task(daemon.pull_source("fastly"))
    gate.pull = pulling
    try:
        async with asyncio.timeout(60):
            await gate.entered.wait()

        async def committed() -> bool:
            return await _run_status(engine) == "succeeded"

        await eventually(committed, timeout_s=60)
        gate.release()
        async with asyncio.timeout(60):
            outcome = await pulling
    finally:
        gate.release()
        pulling.cancel()
        await asyncio.gather(pulling, return_exceptions=True)
    assert outcome is not None and outcome.ok, outcome
    assert gate.ends == ["released"]
    async with engine.connect() as conn:
        rows = (await conn.execute(select(leases_t.c.slot, leases_t.c.outcome))).all()
    # The slot is completed; the pull lock is gone.
    assert [(slot.startswith("pull:fastly:"), outcome) for slot, outcome in rows] == [
        (True, "succeeded")
    ]
    assert pull_slot("fastly") not in {slot for slot, _ in rows}


__all__ = ["make_daemon", "sandbox"]
