"""``pull_timeout_s``: a pull that waits on a provider that never answers ends at its deadline,
saying which endpoint stalled, and changes nothing.

The sandbox's ``hang`` fault holds every request of the source, the first one included, so
the pull can only end by its deadline, whatever the machine's speed; the deadline is short
because nothing but it can end the wait.
"""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest
from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncEngine

from reconciler.providers.http import HttpClient
from reconciler.refresh import refresh_source
from reconciler.sandbox.scenario import named_scenario
from reconciler.sandbox.server import SandboxServer
from reconciler.settings import settings_from_mapping
from reconciler.store.runs import runs_t, staging_t


@pytest.fixture
async def sandbox() -> AsyncIterator[SandboxServer]:
    async with SandboxServer(named_scenario("default"), host="127.0.0.1", port=0) as server:
        yield server


async def test_a_stalled_provider_fails_the_pull_at_its_deadline_naming_the_endpoint(
    engine: AsyncEngine, sandbox: SandboxServer
) -> None:
    source = {
        "name": "fastly",
        "provider": "fastly",
        "base_url": sandbox.base_url,
        "pull_timeout_s": 0.5,
        "timeout_s": 3600,  # the per-request timeout would not end it
    }
    settings = settings_from_mapping({"sources": [source]})
    sandbox.state.add_faults([{"kind": "hang", "hang_s": 3600, "endpoint": "fastly"}])
    async with HttpClient() as http:
        outcome = await refresh_source(
            engine,
            settings,
            "fastly",
            http,
            today=sandbox.state.today,
            environ={"FASTLY_API_TOKEN": sandbox.fastly_token},
        )
    assert outcome.error == (
        "source 'fastly': /billing/v3/invoices: no answer within the pull's deadline of 0.5s "
        "(pull_timeout_s)"
    )
    async with engine.connect() as conn:
        run = (await conn.execute(select(runs_t).where(runs_t.c.id == outcome.run_id))).one()
        staged = (await conn.execute(select(func.count()).select_from(staging_t))).scalar_one()
    assert (run.status, run.error, staged) == ("failed", outcome.error, 0)


def test_the_deadline_has_a_default_and_must_be_positive() -> None:
    from reconciler.errors import ConfigError

    plain = settings_from_mapping({"sources": [{"name": "f", "provider": "fastly"}]})
    assert plain.sources[0].pull_timeout_s == 1800
    with pytest.raises(ConfigError, match=r"sources\[0\]\.pull_timeout_s: Input should be greater"):
        settings_from_mapping(
            {"sources": [{"name": "f", "provider": "fastly", "pull_timeout_s": 0}]}
        )
