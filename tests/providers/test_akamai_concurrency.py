"""An Akamai pull keeps ``max_concurrency`` requests in flight: never more, and no fewer.

The sandbox counts the source's requests in flight across every Akamai route, and a gate
holds each request until either ``max_concurrency`` of them are in flight or every request
of its kind (the contracts list, the products lists, the monthly summaries) has arrived.
Before it opens, it lets the event loop (client and server share it) run a few hundred turns,
so a client that would send one more request has sent it by then, and it is counted. A
client that sends fewer at once than it may never opens the gate (the pull times out). No
clock is involved: the gate opens on counts and loop turns alone.
"""

from __future__ import annotations

import asyncio
from collections import Counter
from pathlib import Path

import pytest
from aiohttp import web

from reconciler.providers.akamai import AkamaiProvider
from reconciler.providers.base import open_provider
from reconciler.providers.http import HttpClient
from reconciler.sandbox import SandboxServer, named_scenario
from reconciler.sandbox.app import route_name
from reconciler.settings import AkamaiSourceSettings

from .conftest import Handler, collect

CONTRACTS = 5
PRODUCTS = 8
# Loop turns the gate waits before it opens: many more than a request takes to be sent,
# accepted and read over loopback (each turn polls the sockets).
SETTLE_TURNS = 200


class ConcurrencyGate:
    """Counts Akamai requests in flight; holds them until ``limit`` are, or all of a kind."""

    def __init__(self, limit: int, expected: dict[str, int]) -> None:
        self.limit = limit
        self.expected = expected
        self.arrived: Counter[str] = Counter()
        self.in_flight = 0
        self.most_in_flight = 0
        self._held: list[asyncio.Future[None]] = []

    def _release(self) -> None:
        for held in self._held:
            if not held.done():
                held.set_result(None)
        self._held.clear()

    @web.middleware
    async def middleware(self, request: web.Request, handler: Handler) -> web.StreamResponse:
        route = route_name(request)
        if not route.startswith("akamai."):
            return await handler(request)
        self.in_flight += 1
        self.most_in_flight = max(self.most_in_flight, self.in_flight)
        self.arrived[route] += 1
        try:
            if self.in_flight >= self.limit or self.arrived[route] == self.expected[route]:
                for _ in range(SETTLE_TURNS):
                    await asyncio.sleep(0)
                self._release()
            else:
                held = asyncio.get_running_loop().create_future()
                self._held.append(held)
                await held
            return await handler(request)
        finally:
            self.in_flight -= 1


@pytest.mark.parametrize("max_concurrency", [1, 3, 8, 64])  # 64: more than there are requests
async def test_requests_in_flight_reach_but_never_exceed_max_concurrency(
    http: HttpClient, tmp_path: Path, max_concurrency: int
) -> None:
    scenario = named_scenario("default").replace(
        akamai_contracts=CONTRACTS, akamai_products_per_contract=PRODUCTS, akamai_oddities=False
    )
    expected = {
        "akamai.contract_identifiers": 1,
        "akamai.products": CONTRACTS,
        "akamai.monthly_summary": CONTRACTS * PRODUCTS,
    }
    gate = ConcurrencyGate(max_concurrency, expected)
    server = SandboxServer(scenario, host="127.0.0.1", port=0)
    server.app.middlewares.append(gate.middleware)
    async with server:
        edgerc = tmp_path / "sandbox.edgerc"
        edgerc.write_text(server.edgerc_text())
        edgerc.chmod(0o600)
        settings = AkamaiSourceSettings(
            name="akamai-test",
            provider="akamai",
            base_url=server.base_url,
            edgerc=edgerc,
            max_concurrency=max_concurrency,
            max_retries=0,  # a request refused or timed out fails the pull, never hides
            timeout_s=120,  # a held request waits for the others, however busy the machine
        )
        provider = open_provider(settings, 0, http, {})
        assert isinstance(provider, AkamaiProvider)
        _, pages = await collect(provider, scenario.today)
    assert pages == CONTRACTS * PRODUCTS
    assert gate.arrived == expected
    assert gate.most_in_flight <= max_concurrency
    assert gate.most_in_flight >= min(max_concurrency, CONTRACTS * PRODUCTS)
    assert gate.in_flight == 0
