"""Daemons in the test's own process, on the test's database and a provider sandbox: their
jobs are called directly (no scheduler), each with its own host clock."""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any, Protocol

import pytest
from sqlalchemy.ext.asyncio import AsyncEngine

from reconciler.daemon.service import Daemon
from reconciler.domain import utcnow
from reconciler.providers.http import HttpClient
from reconciler.sandbox.scenario import named_scenario
from reconciler.sandbox.server import SandboxServer
from reconciler.settings import settings_from_mapping
from reconciler.store.db import upgrade
from tests.daemon.support import fastly_source

LEASE_TTL_S = 10


class MakeDaemon(Protocol):
    def __call__(
        self,
        instance: str,
        *,
        skew: timedelta = ...,
        sources: list[str] = ...,
        max_retries: int = ...,
        **daemon: Any,
    ) -> Daemon: ...


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
) -> AsyncIterator[MakeDaemon]:
    """In-process daemons on one database: ``make_daemon(instance, skew=, sources=,
    max_retries=)`` (a provider request is not retried unless ``max_retries`` says so)."""
    monkeypatch.setenv("FASTLY_API_TOKEN", sandbox.fastly_token)
    await upgrade(engine)
    async with HttpClient() as http:

        def make(
            instance: str,
            *,
            skew: timedelta = timedelta(0),
            sources: list[str] = ["fastly"],  # noqa: B006 (never mutated)
            max_retries: int = 0,
            **daemon: Any,
        ) -> Daemon:
            settings = settings_from_mapping(
                {
                    "state": {"database_url": state_url, "directory": str(tmp_path / "state")},
                    "daemon": {"instance": instance, "lease_ttl_s": LEASE_TTL_S, **daemon},
                    "sources": [
                        fastly_source(sandbox, name, pull_every="7d", max_retries=max_retries)
                        for name in sources
                    ],
                }
            )
            clock: Callable[[], datetime] = lambda: utcnow() + skew  # noqa: E731
            made = Daemon(settings, None, clock=clock)
            made._engine = engine
            made._http = http
            return made

        yield make
