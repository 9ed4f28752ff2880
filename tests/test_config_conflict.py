"""A configuration conflict the database catches is a configuration error, not a traceback.

Two identical ``[[expectations]]`` describe the same finding; the configuration check refuses
them, so the settings are built around it here (as a configuration changed under a running
process could be). The run is recorded as failed and the tracked state is untouched.
"""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest
from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncEngine

from reconciler.errors import ConfigError
from reconciler.providers.http import HttpClient
from reconciler.refresh import refresh_source
from reconciler.sandbox.scenario import named_scenario
from reconciler.sandbox.server import SandboxServer
from reconciler.settings import settings_from_mapping
from reconciler.store.ingest import lines_t
from reconciler.store.runs import runs_t


@pytest.fixture
async def sandbox() -> AsyncIterator[SandboxServer]:
    async with SandboxServer(named_scenario("default"), host="127.0.0.1", port=0) as server:
        yield server


async def test_two_expectations_for_the_same_finding_are_a_configuration_error(
    engine: AsyncEngine, sandbox: SandboxServer
) -> None:
    expectation = {
        "name": "bw",
        "source": "fastly",
        "usage_type": "North America Bandwidth",
        "monthly_max": "1",
    }
    source = {"name": "fastly", "provider": "fastly", "base_url": sandbox.base_url}
    settings = settings_from_mapping({"sources": [source], "expectations": [expectation]})
    twice = settings.model_copy(update={"expectations": [settings.expectations[0]] * 2})
    async with HttpClient() as http:
        with pytest.raises(ConfigError) as caught:
            await refresh_source(
                engine,
                twice,
                "fastly",
                http,
                today=sandbox.state.today,
                environ={"FASTLY_API_TOKEN": sandbox.fastly_token},
            )
    message = str(caught.value)
    assert "source 'fastly': the state database refused this run's results as a duplicate" in (
        message
    )
    assert "make them distinct" in message and "\n  " in message
    async with engine.connect() as conn:
        status = (await conn.execute(select(runs_t.c.status))).scalar_one()
        lines = (await conn.execute(select(func.count()).select_from(lines_t))).scalar_one()
    assert (status, lines) == ("failed", 0)
