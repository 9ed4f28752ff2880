"""Fixtures: real sandbox servers on loopback and a small client that speaks to them."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator, Awaitable
from contextlib import AsyncExitStack
from decimal import Decimal
from typing import Any, Protocol
from urllib.parse import urlencode

import aiohttp
import pytest
from pydantic import SecretStr

from reconciler.providers.edgegrid import EdgeGridCredentials, authorization_header
from reconciler.sandbox import SandboxCredentials, SandboxServer, Scenario, named_scenario

TIMEOUT_S = 20


def loads(body: bytes) -> Any:
    return json.loads(body, parse_float=Decimal)


class SandboxClient:
    """Sends requests to one sandbox the way provider clients do (token; EdgeGrid)."""

    def __init__(self, session: aiohttp.ClientSession, server: SandboxServer) -> None:
        self.session = session
        self.server = server
        creds = server.state.credentials
        self.edgegrid = EdgeGridCredentials(
            client_token=creds.client_token,
            client_secret=SecretStr(creds.client_secret),
            access_token=creds.access_token,
            host=f"http://{server.address}",
            max_body=creds.max_body,
        )

    def url(self, path: str, params: dict[str, Any] | None = None) -> str:
        query = f"?{urlencode(params)}" if params else ""
        return f"{self.server.base_url}{path}{query}"

    async def get(
        self, url: str, headers: dict[str, str] | None = None
    ) -> tuple[int, bytes, dict[str, str]]:
        async with asyncio.timeout(TIMEOUT_S), self.session.get(url, headers=headers) as resp:
            return resp.status, await resp.read(), dict(resp.headers)

    async def fastly(self, path: str, **params: Any) -> tuple[int, bytes, dict[str, str]]:
        headers = {"Fastly-Key": self.server.fastly_token}
        return await self.get(self.url(path, params), headers)

    async def fastly_json(self, path: str, **params: Any) -> Any:
        status, body, _ = await self.fastly(path, **params)
        assert status == 200, body
        return loads(body)

    async def akamai(
        self,
        path: str,
        params: dict[str, Any] | None = None,
        *,
        creds: EdgeGridCredentials | None = None,
    ) -> tuple[int, bytes, dict[str, str]]:
        url = self.url(path, params)
        auth = authorization_header(creds or self.edgegrid, "GET", url)
        return await self.get(url, {"Authorization": auth})

    async def akamai_json(self, path: str, **params: Any) -> Any:
        status, body, _ = await self.akamai(path, params)
        assert status == 200, body
        return loads(body)

    async def control(self, method: str, path: str, payload: Any = None) -> Any:
        url = f"{self.server.base_url}/_sandbox/{path}"
        async with (
            asyncio.timeout(TIMEOUT_S),
            self.session.request(method, url, json=payload) as resp,
        ):
            body = loads(await resp.read())
            assert resp.status < 300, body
            return body

    async def walk_service_usage(self, limit: int, **params: Any) -> tuple[list[Any], list[Any]]:
        """Every record of a service-usage walk, and each page's meta."""
        records: list[Any] = []
        metas: list[Any] = []
        cursor = ""
        while True:
            page = await self.fastly_json(
                "/billing/v3/service-usage-metrics", limit=str(limit), cursor=cursor, **params
            )
            records.extend(page["data"])
            metas.append(page["meta"])
            cursor = page["meta"]["next_cursor"]
            if not cursor:
                return records, metas


class StartSandbox(Protocol):
    def __call__(
        self, scenario: Scenario, credentials: SandboxCredentials | None = None
    ) -> Awaitable[SandboxClient]: ...


@pytest.fixture
async def start_sandbox() -> AsyncIterator[StartSandbox]:
    """Start any number of sandboxes; all stop when the test ends."""
    async with AsyncExitStack() as stack:
        session = await stack.enter_async_context(aiohttp.ClientSession())

        async def start(
            scenario: Scenario, credentials: SandboxCredentials | None = None
        ) -> SandboxClient:
            server = SandboxServer(scenario, credentials=credentials)
            await stack.enter_async_context(server)
            return SandboxClient(session, server)

        yield start


@pytest.fixture
async def sandbox(start_sandbox: StartSandbox) -> SandboxClient:
    """The default scenario."""
    return await start_sandbox(named_scenario("default"))


@pytest.fixture
async def tiny(start_sandbox: StartSandbox) -> SandboxClient:
    return await start_sandbox(named_scenario("tiny"))
