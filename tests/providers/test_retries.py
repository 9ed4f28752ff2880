"""Provider retries run by tenacity: the wait is the provider's Retry-After (capped), else a
jittered exponential backoff; each retry is logged with its number. The waits are recorded by
an injected sleep, so no test spends them."""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator
from datetime import date
from pathlib import Path

import pytest

from reconciler.errors import ProviderError
from reconciler.providers.fastly import FastlyProvider
from reconciler.providers.http import HttpClient
from reconciler.sandbox import named_scenario

from .conftest import Sandbox, StartSandbox, collect

TODAY = date(2024, 7, 10)
SERVICE = "fastly.service_usage_metrics"


class Waits:
    def __init__(self) -> None:
        self.seconds: list[float] = []

    async def sleep(self, seconds: float) -> None:
        self.seconds.append(seconds)


@pytest.fixture
async def waits() -> Waits:
    return Waits()


@pytest.fixture
async def recorded(
    waits: Waits, start_sandbox: StartSandbox, tmp_path: Path
) -> AsyncIterator[tuple[Sandbox, HttpClient]]:
    sandbox = await start_sandbox(named_scenario("default"))
    async with HttpClient(seed=3, sleep=waits.sleep) as http:
        yield sandbox, http


def fastly(sandbox: Sandbox, http: HttpClient, **overrides: object) -> FastlyProvider:
    settings = sandbox.fastly_settings(**overrides)
    return FastlyProvider.from_settings(
        settings, 0, http, {"FASTLY_API_TOKEN": sandbox.server.fastly_token}
    )


async def test_retry_after_sets_the_wait_up_to_the_cap(
    recorded: tuple[Sandbox, HttpClient], waits: Waits, caplog: pytest.LogCaptureFixture
) -> None:
    sandbox, http = recorded
    caplog.set_level(logging.WARNING, logger="reconciler.providers.http")
    sandbox.add_faults(
        {"kind": "status", "status": 429, "retry_after_s": 7, "endpoint": SERVICE, "count": 1},
        {
            "kind": "status",
            "status": 503,
            "retry_after_s": 90,
            "endpoint": SERVICE,
            "count": 1,
            "retry_after": "seconds",
        },
    )
    provider = fastly(sandbox, http, retry_cap_s=60, max_retries=3)
    await collect(provider, TODAY)
    assert waits.seconds == [7.0, 60.0]  # as asked; then capped at retry_cap_s
    messages = [r.getMessage() for r in caplog.records]
    assert len(messages) == 2
    assert "HTTP 429" in messages[0] and "retry 1/3 in 7.00s (Retry-After)" in messages[0]
    assert "HTTP 503" in messages[1] and "retry 2/3 in 60.00s (Retry-After)" in messages[1]
    assert provider.stats.retries == 2


async def test_without_retry_after_the_backoff_is_jittered_exponential_and_capped(
    recorded: tuple[Sandbox, HttpClient], waits: Waits
) -> None:
    sandbox, http = recorded
    sandbox.add_faults({"kind": "status", "status": 500, "endpoint": SERVICE})
    provider = fastly(sandbox, http, retry_cap_s=3, max_retries=6)
    with pytest.raises(ProviderError, match="gave up after 7 attempts: HTTP 500"):
        await collect(provider, TODAY)
    assert len(waits.seconds) == 6
    ceilings = [min(3.0, 0.5 * 2**n) for n in range(6)]  # 0.5, 1, 2, 3, 3, 3
    assert all(0 <= wait <= ceiling for wait, ceiling in zip(waits.seconds, ceilings, strict=True))
    assert len(set(waits.seconds)) == 6  # jittered, not a fixed ladder
    assert sandbox.requests(SERVICE) == 7
