"""``daemon.max_concurrent_pulls`` bounds the pulls running at once over every source, and the
first checks of many sources are spread over one check interval instead of all at once."""

from __future__ import annotations

import asyncio
from datetime import timedelta

from apscheduler.schedulers.asyncio import AsyncIOScheduler
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncEngine

from reconciler.daemon.service import Daemon
from reconciler.sandbox.server import SandboxServer
from reconciler.settings import settings_from_mapping
from reconciler.store.runs import runs_t
from tests.daemon.inprocess import MakeDaemon, make_daemon, sandbox
from tests.daemon.support import eventually

SOURCES = [f"fastly-{n}" for n in range(5)]


async def statuses(engine: AsyncEngine) -> list[str]:
    async with engine.connect() as conn:
        return list((await conn.execute(select(runs_t.c.status))).scalars().all())


async def test_no_more_pulls_run_at_once_than_the_bound(
    engine: AsyncEngine, sandbox: SandboxServer, make_daemon: MakeDaemon
) -> None:
    daemon = make_daemon("bounded:1", sources=SOURCES, max_concurrent_pulls=2)
    # The first two pulls hang; the others must wait for them, not start beside them.
    (hang,) = sandbox.state.add_faults(
        [{"kind": "hang", "endpoint": "fastly.usage_metrics", "count": 2}]
    )
    most = 0

    async def sample() -> None:
        nonlocal most
        while True:
            most = max(most, (await statuses(engine)).count("running"))
            await asyncio.sleep(0.02)

    sampler = asyncio.create_task(sample())
    pulls = [asyncio.create_task(daemon.pull_source(name)) for name in SOURCES]
    try:

        async def two_hung() -> bool:
            return hang.fired == 2 and await statuses(engine) == ["running", "running"]

        await eventually(two_hung, timeout_s=60)
        # However long they hang, nothing else has started: each pull started is recorded.
        for _ in range(20):
            await asyncio.sleep(0)
        assert await statuses(engine) == ["running", "running"]
        sandbox.state.release()
        async with asyncio.timeout(120):
            outcomes = await asyncio.gather(*pulls)
    finally:
        sampler.cancel()
        for pull in pulls:
            pull.cancel()
        await asyncio.gather(sampler, *pulls, return_exceptions=True)
    assert all(outcome is not None for outcome in outcomes)
    assert len(await statuses(engine)) == len(SOURCES)
    assert most <= 2


async def test_the_first_checks_of_many_sources_are_spread_over_a_check_interval() -> None:
    count = 3000
    settings = settings_from_mapping(
        {
            "daemon": {"first_pull_delay_s": 0, "jitter_s": 0},
            "sources": [
                {"name": f"s{n}", "provider": "fastly", "pull_every": "6h"} for n in range(count)
            ],
        }
    )
    daemon = Daemon(settings, None)
    scheduler = AsyncIOScheduler(timezone="UTC")
    daemon._scheduler = scheduler
    scheduler.start(paused=True)
    try:
        daemon._schedule_jobs()
        starts = sorted(
            job.next_run_time for job in scheduler.get_jobs() if job.id.startswith("pull:")
        )
    finally:
        scheduler.shutdown(wait=False)
    assert len(starts) == count
    # The checks run every 60 s: the first ones are spread evenly over those 60 s.
    assert starts[-1] - starts[0] >= timedelta(seconds=59)
    busiest = max(
        sum(1 for s in starts if s.replace(microsecond=0) == second.replace(microsecond=0))
        for second in starts[:: count // 60]
    )
    assert busiest <= 2 * count // 60


__all__ = ["make_daemon", "sandbox"]
