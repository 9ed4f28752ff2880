"""Stale-run cleanup by liveness: a live pull is never abandoned, an abandoned one never commits.

The pulls run against the sandbox over loopback; an HTTP client with a hook runs the cleanup
between two provider requests of a pull, and the pull's clock is the test's, so "two hours
later" is a value, not a wait.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable
from datetime import UTC, date, datetime, timedelta
from typing import Any

import pytest
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncEngine

from reconciler.providers.http import HttpClient
from reconciler.refresh import RunOutcome, refresh_source
from reconciler.sandbox.scenario import named_scenario
from reconciler.sandbox.server import SandboxServer
from reconciler.settings import Settings, settings_from_mapping
from reconciler.store.ingest import lines_t
from reconciler.store.runs import abandon_stale_runs, runs_t

TODAY = date(2024, 7, 10)
T0 = datetime(2024, 7, 10, 8, tzinfo=UTC)
SERVICE_USAGE = "/billing/v3/service-usage-metrics"


class SlowProviderClock:
    """The pull's clock: every provider request takes ``step`` (see :class:`HookedHttp`)."""

    def __init__(self, start: datetime, step: timedelta) -> None:
        self.now, self.step = start, step

    def __call__(self) -> datetime:
        return self.now

    def tick(self) -> None:
        self.now += self.step


class HookedHttp(HttpClient):
    """A real HTTP client that awaits ``hook`` before its first request to ``endpoint``
    (after ``tick``, called before every request)."""

    def __init__(
        self,
        endpoint: str,
        hook: Callable[[], Awaitable[None]],
        tick: Callable[[], None] = lambda: None,
    ) -> None:
        super().__init__()
        self.endpoint, self.hook, self.tick, self.fired = endpoint, hook, tick, False

    async def get_json(self, source: str, endpoint: str, *args: Any, **kwargs: Any) -> Any:
        self.tick()
        if endpoint == self.endpoint and not self.fired:
            self.fired = True
            await self.hook()
        return await super().get_json(source, endpoint, *args, **kwargs)


@pytest.fixture
async def sandbox() -> AsyncIterator[SandboxServer]:
    async with SandboxServer(named_scenario("default"), host="127.0.0.1", port=0) as server:
        yield server


def fastly_settings(sandbox: SandboxServer) -> Settings:
    source = {
        "name": "fastly",
        "provider": "fastly",
        "base_url": sandbox.base_url,
        "max_retries": 0,
        "lookback_months": 6,  # two account-usage windows before the service pages
    }
    return settings_from_mapping({"sources": [source]})


async def pull(
    engine: AsyncEngine,
    sandbox: SandboxServer,
    http: HttpClient,
    clock: Callable[[], datetime],
) -> RunOutcome:
    env = {"FASTLY_API_TOKEN": sandbox.fastly_token}
    return await refresh_source(
        engine, fastly_settings(sandbox), "fastly", http, today=TODAY, clock=clock, environ=env
    )


async def tracked(engine: AsyncEngine) -> list[tuple[Any, ...]]:
    async with engine.connect() as conn:
        rows = await conn.execute(
            select(lines_t.c.key_hash, lines_t.c.present, lines_t.c.versions).order_by(
                lines_t.c.key_hash
            )
        )
        return [tuple(r) for r in rows]


async def test_a_long_live_pull_is_not_abandoned_and_an_unchanged_snapshot_stays_unchanged(
    engine: AsyncEngine, sandbox: SandboxServer
) -> None:
    async with HttpClient() as http:
        assert (await pull(engine, sandbox, http, lambda: T0)).ok
    before = await tracked(engine)
    # Every provider request takes 40 minutes: at the service pages the run started two hours
    # ago, but its staged pages keep its heartbeat fresh, so a cleanup of runs silent for an
    # hour must leave it alone.
    clock = SlowProviderClock(T0 + timedelta(days=1), timedelta(minutes=40))
    abandoned: list[int] = []

    async def cleanup() -> None:
        abandoned.append(
            await abandon_stale_runs(engine, older_than=timedelta(hours=1), now=clock.now)
        )

    async with HookedHttp(SERVICE_USAGE, cleanup, clock.tick) as http:
        outcome = await pull(engine, sandbox, http, clock)
    assert abandoned == [0]
    assert outcome.ok, outcome.error
    assert outcome.ingest.changes == []  # no false 'disappeared' lines
    assert await tracked(engine) == before


async def test_a_run_abandoned_as_dead_cannot_commit_its_partial_snapshot(
    engine: AsyncEngine, sandbox: SandboxServer
) -> None:
    async with HttpClient() as http:
        assert (await pull(engine, sandbox, http, lambda: T0)).ok
    before = await tracked(engine)
    start = T0 + timedelta(days=1)

    async def cleanup() -> None:  # as if the run's process had been silent for three hours
        await abandon_stale_runs(
            engine, older_than=timedelta(hours=1), now=start + timedelta(hours=3)
        )

    async with HookedHttp(SERVICE_USAGE, cleanup) as http:
        outcome = await pull(engine, sandbox, http, lambda: start)
    assert not outcome.ok
    assert outcome.error is not None and "was abandoned as dead" in outcome.error
    assert await tracked(engine) == before
    async with engine.connect() as conn:
        status = (
            await conn.execute(select(runs_t.c.status).where(runs_t.c.id == outcome.run_id))
        ).scalar_one()
    assert status == "failed"


async def test_cleanup_abandons_a_silent_run_and_drops_its_staging(engine: AsyncEngine) -> None:
    from reconciler.store.runs import start_run

    quiet = await start_run(engine, source="s", provider="fastly", now=T0)
    assert await abandon_stale_runs(engine, older_than=timedelta(hours=1), now=T0) == 0
    assert (
        await abandon_stale_runs(engine, older_than=timedelta(hours=1), now=T0 + timedelta(hours=2))
        == 1
    )
    async with engine.connect() as conn:
        row = (await conn.execute(select(runs_t).where(runs_t.c.id == quiet))).one()
    assert row.status == "failed"
    assert row.error.startswith("abandoned: the process running it stopped")
