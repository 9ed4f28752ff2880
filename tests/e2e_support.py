"""The default provider sandbox on loopback, its two sources, and a pull of both, for the
end-to-end tests (each module imports the ``sandbox`` fixture it uses)."""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from datetime import date, datetime
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy.ext.asyncio import AsyncEngine

from reconciler.providers.http import HttpClient
from reconciler.refresh import refresh_source
from reconciler.sandbox.scenario import named_scenario
from reconciler.sandbox.server import SandboxServer
from reconciler.settings import Settings


@pytest.fixture
async def sandbox() -> AsyncIterator[SandboxServer]:
    async with SandboxServer(named_scenario("default"), host="127.0.0.1", port=0) as server:
        yield server


def sandbox_sources(sandbox: SandboxServer, tmp_path: Path) -> list[dict[str, Any]]:
    """The sandbox's Fastly and Akamai sources (its edgerc written under ``tmp_path``)."""
    edgerc = tmp_path / "sandbox.edgerc"
    edgerc.write_text(sandbox.edgerc_text())
    edgerc.chmod(0o600)
    common = {"base_url": sandbox.base_url, "max_retries": 0, "lookback_months": 3}
    return [
        {"name": "fastly", "provider": "fastly", **common},
        {
            "name": "akamai",
            "provider": "akamai",
            "edgerc": str(edgerc),
            "contracts": sandbox.contracts,
            **common,
        },
    ]


async def pull_both(
    engine: AsyncEngine,
    settings: Settings,
    sandbox: SandboxServer,
    day: date,
    *,
    clock: Callable[[], datetime] | None = None,
) -> None:
    """Fastly, then Akamai, on the sandbox's ``day``; each pull must succeed."""
    sandbox.state.set_today(day)
    extra: dict[str, Any] = {} if clock is None else {"clock": clock}
    async with HttpClient() as http:
        for source in ("fastly", "akamai"):
            outcome = await refresh_source(
                engine,
                settings,
                source,
                http,
                today=day,
                environ={"FASTLY_API_TOKEN": sandbox.fastly_token},
                **extra,
            )
            assert outcome.ok, outcome.error
