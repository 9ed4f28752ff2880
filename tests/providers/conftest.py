"""Fixtures: a real sandbox on loopback, the shared HTTP client, providers pointed at both."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path
from typing import Any

import pytest
from aiohttp import web

from reconciler.domain import UsageLine
from reconciler.providers.akamai import AkamaiProvider
from reconciler.providers.base import UsageProvider, open_provider
from reconciler.providers.fastly import FastlyProvider
from reconciler.providers.http import HttpClient
from reconciler.sandbox import SandboxServer, Scenario, named_scenario
from reconciler.settings import AkamaiSourceSettings, FastlySourceSettings

TIMEOUT_S = 30
# Fast retries for tests: backoff and Retry-After are capped at 50 ms.
FAST = {"retry_cap_s": 0.05, "max_retries": 3, "timeout_s": 5.0}

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


async def collect(provider: UsageProvider, today: Any) -> tuple[list[UsageLine], int]:
    """Every line of one pull and how many pages it came in."""
    lines: list[UsageLine] = []
    pages = 0
    async with asyncio.timeout(TIMEOUT_S):
        async for page in provider.pull(today):
            assert page, "an empty page was yielded"
            lines.extend(page)
            pages += 1
    return lines, pages


class Recorder:
    """A middleware added to a sandbox: records what reached it; may answer in its place."""

    def __init__(self) -> None:
        self.requests: list[tuple[str, dict[str, str]]] = []
        self.answers: dict[str, Callable[[], web.Response]] = {}

    @web.middleware
    async def middleware(self, request: web.Request, handler: Handler) -> web.StreamResponse:
        answer = self.answers.get(request.path)
        if answer is not None:
            return answer()
        self.requests.append((request.path, dict(request.query)))
        return await handler(request)


class Sandbox:
    """One running sandbox and the providers a test points at it."""

    def __init__(self, server: SandboxServer, recorder: Recorder, http: HttpClient, tmp: Path):
        self.server = server
        self.recorder = recorder
        self.http = http
        self.tmp = tmp

    @property
    def state(self) -> Any:
        return self.server.state

    @property
    def today(self) -> Any:
        return self.server.state.today

    def fastly_settings(self, **overrides: Any) -> FastlySourceSettings:
        values: dict[str, Any] = {
            "name": "fastly-test",
            "provider": "fastly",
            "base_url": self.server.base_url,
            **FAST,
        }
        values.update(overrides)
        return FastlySourceSettings(**values)

    def fastly(self, token: str | None = None, **overrides: Any) -> FastlyProvider:
        options = {
            k: overrides.pop(k) for k in ("page_limit", "invoice_page_limit") if k in overrides
        }
        settings = self.fastly_settings(**overrides)
        environ = {"FASTLY_API_TOKEN": token or self.server.fastly_token}
        return FastlyProvider.from_settings(settings, 0, self.http, environ, **options)

    def edgerc(self, text: str | None = None, name: str = "sandbox.edgerc") -> Path:
        path = self.tmp / name
        path.write_text(text if text is not None else self.server.edgerc_text())
        path.chmod(0o600)
        return path

    def akamai_settings(self, **overrides: Any) -> AkamaiSourceSettings:
        values: dict[str, Any] = {
            "name": "akamai-test",
            "provider": "akamai",
            "base_url": self.server.base_url,
            **FAST,
        }
        values.update(overrides)
        if "edgerc" not in values:
            values["edgerc"] = self.edgerc()
        return AkamaiSourceSettings(**values)

    def akamai(self, **overrides: Any) -> AkamaiProvider:
        provider = open_provider(self.akamai_settings(**overrides), 1, self.http, {})
        assert isinstance(provider, AkamaiProvider)
        return provider

    def add_faults(self, *faults: dict[str, Any]) -> None:
        self.server.state.add_faults(list(faults))

    def requests(self, route: str, status: int | None = None) -> int:
        return int(self.server.state.stats.requests(route, status))


StartSandbox = Callable[[Scenario], Awaitable[Sandbox]]


@pytest.fixture
async def http() -> AsyncIterator[HttpClient]:
    async with HttpClient(seed=1) as client:
        yield client


@pytest.fixture
async def start_sandbox(http: HttpClient, tmp_path: Path) -> AsyncIterator[StartSandbox]:
    """Start sandboxes for any scenario; they stop when the test ends."""
    servers: list[SandboxServer] = []

    async def start(scenario: Scenario) -> Sandbox:
        server = SandboxServer(scenario, host="127.0.0.1", port=0)
        recorder = Recorder()
        server.app.middlewares.append(recorder.middleware)
        await server.start()
        servers.append(server)
        return Sandbox(server, recorder, http, tmp_path)

    try:
        yield start
    finally:
        for server in servers:
            await server.stop()


@pytest.fixture
async def sandbox(start_sandbox: StartSandbox) -> Sandbox:
    """The default scenario: today 2024-07-10, months finalize 3 days after they end."""
    return await start_sandbox(named_scenario("default"))
