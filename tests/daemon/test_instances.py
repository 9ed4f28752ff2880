"""Three daemon processes sharing one real PostgreSQL database: migrations serialized at
start, every pull slot of every source run exactly once (the fleet stepped slot by slot on the
sandbox's schedule instant, so no slot depends on how fast the machine pulls), and a dead lease
holder's slot taken over by another instance."""

from __future__ import annotations

import asyncio
import signal
from collections import Counter
from collections.abc import AsyncIterator, Awaitable, Callable
from datetime import UTC, datetime, timedelta
from functools import partial
from itertools import pairwise
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncEngine

from reconciler.daemon import leases
from reconciler.daemon.leases import leases_t
from reconciler.domain import utcnow
from reconciler.sandbox.scenario import named_scenario
from reconciler.sandbox.server import SandboxServer
from reconciler.store.db import create_engine
from reconciler.store.pull_lock import pull_slot
from reconciler.store.runs import runs_t
from tests.daemon.support import (
    DaemonProcess,
    NotifySocket,
    akamai_source,
    eventually,
    fastly_source,
    write_config,
)

pytestmark = pytest.mark.postgres

INSTANCES = 3
SLOTS_PER_SOURCE = 8
SOURCES = ("fastly", "akamai")
# The first slot the fleet is stepped through (a slot start for 2-second slots).
SLOTS_FROM = datetime(2024, 7, 10, 6, 0, 0, tzinfo=UTC)
# Only bounds a hang: a slot's pulls are waited for, however long they take.
SETTLE_TIMEOUT_S = 120


@pytest.fixture
async def sandbox() -> AsyncIterator[SandboxServer]:
    async with SandboxServer(named_scenario("default"), host="127.0.0.1", port=0) as server:
        yield server


@pytest.fixture
async def pg(postgres_url: str) -> AsyncIterator[AsyncEngine]:
    """The shared database as the test sees it (empty: the daemons migrate it)."""
    engine = create_engine(postgres_url)
    yield engine
    await engine.dispose()


class Fleet:
    """Several daemons on one config, each with its own notify socket."""

    def __init__(self, config: Path, sandbox: SandboxServer, directory: Path) -> None:
        self.sockets = [NotifySocket(directory / f"notify-{n}") for n in range(INSTANCES)]
        self.daemons = [DaemonProcess(config, sandbox, notify=s) for s in self.sockets]

    async def start(self) -> None:
        await asyncio.gather(*(d.start() for d in self.daemons))
        await asyncio.gather(*(s.wait_for("READY", "1", timeout_s=60) for s in self.sockets))

    def by_holder(self, holder: str) -> DaemonProcess:
        pid = int(holder.rpartition(":")[2])
        return next(d for d in self.daemons if d.pid == pid)

    async def stop(self) -> list[int]:
        alive = [d for d in self.daemons if d.process.returncode is None]
        for daemon in alive:
            daemon.send_signal(signal.SIGTERM)
        return list(await asyncio.gather(*(d.wait() for d in alive)))

    async def close(self) -> None:
        for daemon in self.daemons:
            await daemon.close()
        for sock in self.sockets:
            await sock.close()


@pytest.fixture
async def fleet(sandbox: SandboxServer, tmp_path: Path) -> AsyncIterator[Callable[[Path], Fleet]]:
    """Makes the fleet for a config; kills whatever is left of it after the test."""
    fleets: list[Fleet] = []

    def make(config: Path) -> Fleet:
        fleets.append(Fleet(config, sandbox, tmp_path))
        return fleets[-1]

    yield make
    for made in fleets:
        await made.close()


def slot_time(slot: str) -> datetime:
    stamp = slot.rsplit(":", 1)[1]
    return datetime.strptime(stamp, "%Y%m%dT%H%M%S%z")


async def runs(engine: AsyncEngine) -> list[dict[str, Any]]:
    async with engine.connect() as conn:
        rows = await conn.execute(select(runs_t).order_by(runs_t.c.id))
        return [dict(row) for row in rows.mappings()]


async def slot_settled(engine: AsyncEngine, slot: str) -> bool:
    """``slot``'s lease completed and its source's pull lock let go: nothing of the slot is
    left in flight, so the next one starts clean (its pull never finds the source busy)."""
    source = slot.split(":")[1]
    async with engine.connect() as conn:
        rows = await conn.execute(
            select(leases_t.c.slot, leases_t.c.completed_at).where(
                leases_t.c.slot.in_([slot, pull_slot(source)])
            )
        )
        found = {row.slot: row.completed_at for row in rows}
    return slot in found and found[slot] is not None and pull_slot(source) not in found


async def test_three_instances_migrate_once_and_run_every_slot_exactly_once(
    sandbox: SandboxServer,
    postgres_url: str,
    pg: AsyncEngine,
    tmp_path: Path,
    fleet: Callable[[Path], Fleet],
) -> None:
    every = timedelta(seconds=2)
    config = write_config(
        tmp_path / "reconciler.toml",
        postgres_url,
        [
            fastly_source(sandbox, pull_every="2s"),
            akamai_source(sandbox, tmp_path / "sandbox.edgerc", pull_every="2s"),
        ],
        jitter_s=0.5,  # instances race for each slot instead of one always checking first
    )
    # The fleet's slots are timed by the sandbox's instant, which only this test moves: a
    # slot lasts until its pulls are done, however slow the machine.
    sandbox.state.set_schedule_now(SLOTS_FROM)
    daemons = fleet(config)
    # All three start at once on an empty database: one migrates, the others wait and find head.
    await daemons.start()
    migrated = [d for d in daemons.daemons if any("database migrated" in x for x in d.lines)]
    assert len(migrated) == 1, [d.log() for d in daemons.daemons]

    stepped = [SLOTS_FROM + every * n for n in range(SLOTS_PER_SOURCE)]
    for instant in stepped:
        sandbox.state.set_schedule_now(instant)
        slots = [leases.slot_name("pull", source, instant, every) for source in SOURCES]
        try:
            # Each instance checks every second (give or take its jitter); the bound only
            # stops a hang.
            await eventually(
                partial(all_settled, pg, slots), timeout_s=SETTLE_TIMEOUT_S, every_s=0.05
            )
        except TimeoutError:
            logs = "\n\n".join(d.log() for d in daemons.daemons)
            raise AssertionError(f"{slots} not run; logs:\n{logs}") from None
    assert await daemons.stop() == [0] * INSTANCES

    all_runs = await runs(pg)
    assert {r["status"] for r in all_runs} == {"succeeded"}, all_runs
    per_slot = Counter((r["source"], r["slot"]) for r in all_runs)
    twice = {slot: n for slot, n in per_slot.items() if n > 1}
    assert twice == {}
    for source in SOURCES:
        starts = sorted(slot_time(slot) for src, slot in per_slot if src == source)
        assert starts == stepped, f"{source}: slots run {starts}, stepped through {stepped}"
        gaps = [b - a for a, b in pairwise(starts)]
        assert set(gaps) == {every}, f"{source}: slots missing between {starts}"
        assert all(s == leases.slot_start(s, every) for s in starts)
    # Every slot's lease was completed by the instance that ran it.
    async with pg.connect() as conn:
        held = {
            row.slot: (row.holder, row.outcome, row.completed_at is not None)
            for row in (await conn.execute(select(leases_t))).all()
        }
    for run in all_runs:
        assert held[run["slot"]] == (run["instance"], "succeeded", True)
    pulls_by = Counter(r["instance"] for r in all_runs)
    print(f"\n{len(all_runs)} slots run by {dict(pulls_by)}")
    assert len(pulls_by) >= 2  # the claims really were contested


async def all_settled(engine: AsyncEngine, slots: list[str]) -> bool:
    return all([await slot_settled(engine, slot) for slot in slots])


WEEK = timedelta(days=7)


async def hup_until(
    probe: Callable[[], Awaitable[Any]], daemons: list[DaemonProcess], *, timeout_s: float
) -> Any:
    """Poll ``probe``; between polls, SIGHUP ``daemons`` so that they check their slots again.

    A reload reschedules every slot check at once, so a takeover is not left to the next
    scheduled check: the test waits for what it asserts, never for a wall-clock window.
    """

    async def checked() -> Any:
        found = await probe()
        if not found:
            for daemon in daemons:
                daemon.send_signal(signal.SIGHUP)
        return found

    return await eventually(checked, timeout_s=timeout_s, every_s=0.5)


async def test_a_dead_or_stalled_lease_holder_loses_its_slot_to_another_instance(
    sandbox: SandboxServer,
    postgres_url: str,
    pg: AsyncEngine,
    tmp_path: Path,
    fleet: Callable[[Path], Fleet],
) -> None:
    # Week-long slots: however slow the machine, each part of the test runs in one slot.
    ttl = timedelta(seconds=3)
    config_path = tmp_path / "reconciler.toml"
    fastly = fastly_source(sandbox, pull_every="7d")
    config = write_config(config_path, postgres_url, [fastly], lease_ttl_s=ttl.total_seconds())
    (hang,) = sandbox.state.add_faults(
        [{"kind": "hang", "endpoint": "fastly.usage_metrics", "count": 1}]
    )
    daemons = fleet(config)
    await daemons.start()

    async def in_flight(source: str) -> dict[str, Any] | None:
        running = [r for r in await runs(pg) if r["status"] == "running" and r["source"] == source]
        return running[0] if running else None

    async def hung_in_flight() -> dict[str, Any] | None:
        # The run row is written before its first request reaches the hanging endpoint.
        return await in_flight("fastly") if hang.fired else None

    stuck = await eventually(hung_in_flight, timeout_s=60, every_s=0.05)
    assert hang.fired == 1
    slot = stuck["slot"]
    assert slot == leases.slot_name("pull", "fastly", slot_time(slot), WEEK)
    holder = daemons.by_holder(stuck["instance"])
    holder.process.send_signal(signal.SIGKILL)
    killed_at = utcnow()
    assert await holder.wait() == -signal.SIGKILL
    async with pg.connect() as conn:
        dead = (await conn.execute(select(leases_t).where(leases_t.c.slot == slot))).one()
    assert dead.holder == stuck["instance"] and dead.completed_at is None
    survivors = [d for d in daemons.daemons if d is not holder]

    done = await hup_until(
        lambda: completed(pg, slot, other_than=dead.holder), survivors, timeout_s=120
    )
    assert done.holder != dead.holder and done.outcome == "succeeded"
    # Not before the dead holder's lease ran out (it renewed every ttl/3 while alive).
    assert done.acquired_at > dead.expires_at > killed_at - ttl
    slot_runs = [r for r in await runs(pg) if r["slot"] == slot]
    assert [(r["instance"], r["status"]) for r in slot_runs] == [
        (dead.holder, "running"),  # killed mid-pull: left for housekeeping to abandon
        (done.holder, "succeeded"),
    ]
    taker = daemons.by_holder(done.holder)
    await taker.wait_for_log(f"took over {slot} from {dead.holder}")
    print(f"\ntakeover of {slot} {done.acquired_at - killed_at} after the kill (ttl {ttl})")

    # A holder that stalls past its lease (SIGSTOP) and wakes up after the takeover finds its
    # results refused: the slot still counts one successful pull. A new source (added by a
    # reload) gives a fresh slot; its first request hangs long enough to be caught.
    sandbox.state.add_faults(
        [{"kind": "hang", "hang_s": 20, "endpoint": "akamai.monthly_summary", "count": 1}]
    )
    akamai = akamai_source(sandbox, tmp_path / "edgerc", pull_every="7d")
    # First in the list: its checks are not spread after the others' (a reload re-spreads them).
    write_config(config_path, postgres_url, [akamai, fastly], lease_ttl_s=ttl.total_seconds())
    for daemon in survivors:
        daemon.send_signal(signal.SIGHUP)
    stalled_run = await eventually(lambda: in_flight("akamai"), timeout_s=60, every_s=0.05)
    stalled = daemons.by_holder(stalled_run["instance"])
    stalled.process.send_signal(signal.SIGSTOP)
    next_slot = stalled_run["slot"]
    try:
        again = await hup_until(
            lambda: completed(pg, next_slot, other_than=stalled_run["instance"]),
            [d for d in survivors if d is not stalled],
            timeout_s=120,
        )
    except TimeoutError:
        logs = "\n\n".join(d.log() for d in survivors if d is not stalled)
        raise AssertionError(f"no takeover of {next_slot}; logs:\n{logs}") from None
    finally:
        stalled.process.send_signal(signal.SIGCONT)

    async def resumed_run_ended() -> dict[str, Any] | None:
        run = next(r for r in await runs(pg) if r["id"] == stalled_run["id"])
        return run if run["status"] != "running" else None

    late = await eventually(resumed_run_ended, timeout_s=60)
    assert late["status"] == "failed"
    assert "taken over by another instance" in late["error"]
    await stalled.wait_for_log("taken over by another instance")
    next_runs = [(r["instance"], r["status"]) for r in await runs(pg) if r["slot"] == next_slot]
    assert next_runs == [(stalled_run["instance"], "failed"), (again.holder, "succeeded")]

    assert await daemons.stop() == [0] * (INSTANCES - 1)
    succeeded = Counter(r["slot"] for r in await runs(pg) if r["status"] == "succeeded")
    assert max(succeeded.values()) == 1


async def completed(engine: AsyncEngine, slot: str, *, other_than: str) -> Any:
    async with engine.connect() as conn:
        row = (await conn.execute(select(leases_t).where(leases_t.c.slot == slot))).one()
    return row if row.completed_at is not None and row.holder != other_than else None
