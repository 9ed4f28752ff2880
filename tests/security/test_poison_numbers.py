"""Poison numbers from a provider: a few characters of JSON that would be huge as a value.

``1e4300`` (4301 digits), ``1e100000000`` (100 MB of text) and ``1e99999999999999`` (a
MemoryError when formatted) are bad provider data: the pull fails with one line naming the
record, stores nothing, and the next pull, once the provider is right again, succeeds.
"""

from __future__ import annotations

import re
from collections.abc import AsyncIterator, Awaitable, Callable
from decimal import Decimal

import pytest
from aiohttp import web
from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncEngine

from reconciler.providers.http import HttpClient
from reconciler.providers.normalize import BadRecord, integer, loads_exact, quantity
from reconciler.refresh import RunOutcome, refresh_source
from reconciler.sandbox import SandboxServer, named_scenario
from reconciler.settings import settings_from_mapping
from reconciler.store.ingest import lines_t, versions_t

POISON = ["1e4300", "1e100000000", "1e99999999999999", "1e-99999999999999"]
Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


class PoisonQuantity:
    """Rewrites the first quantity of each Fastly service-usage page into ``token``."""

    def __init__(self) -> None:
        self.token: str | None = None

    @web.middleware
    async def middleware(self, request: web.Request, handler: Handler) -> web.StreamResponse:
        response = await handler(request)
        if self.token is None or "service-usage-metrics" not in request.path:
            return response
        assert isinstance(response, web.Response) and response.body is not None
        text = bytes(response.body).decode()  # type: ignore[arg-type]
        text = re.sub(r'"quantity":[0-9.eE+-]+', f'"quantity":{self.token}', text, count=1)
        return web.Response(text=text, status=response.status, content_type="application/json")


@pytest.fixture
async def poisoned() -> AsyncIterator[tuple[SandboxServer, PoisonQuantity]]:
    server = SandboxServer(named_scenario("default"), host="127.0.0.1", port=0)
    poison = PoisonQuantity()
    server.app.middlewares.append(poison.middleware)
    async with server:
        yield server, poison


async def pull(engine: AsyncEngine, sandbox: SandboxServer) -> RunOutcome:
    source = {"name": "fastly", "provider": "fastly", "base_url": sandbox.base_url}
    settings = settings_from_mapping({"sources": [{**source, "max_retries": 0}]})
    async with HttpClient() as http:
        return await refresh_source(
            engine,
            settings,
            "fastly",
            http,
            environ={"FASTLY_API_TOKEN": sandbox.fastly_token},
            today=sandbox.state.today,
        )


async def counts(engine: AsyncEngine) -> tuple[int, int]:
    async with engine.connect() as conn:
        lines = (await conn.execute(select(func.count()).select_from(lines_t))).scalar_one()
        versions = (await conn.execute(select(func.count()).select_from(versions_t))).scalar_one()
    return int(lines), int(versions)


@pytest.mark.parametrize("token", POISON)
async def test_a_poison_quantity_fails_the_pull_names_the_record_and_stores_nothing(
    engine: AsyncEngine, poisoned: tuple[SandboxServer, PoisonQuantity], token: str
) -> None:
    sandbox, poison = poisoned
    assert (await pull(engine, sandbox)).ok
    before = await counts(engine)

    poison.token = token
    outcome = await pull(engine, sandbox)
    assert outcome.error is not None
    assert outcome.error.startswith(
        "source 'fastly': /billing/v3/service-usage-metrics: page 1 record 0 (month "
    )
    assert "quantity has more digits than a usage quantity can have" in outcome.error
    assert len(outcome.error) < 400
    assert await counts(engine) == before

    poison.token = None  # the provider corrects itself: nothing is left to trip over
    again = await pull(engine, sandbox)
    assert again.ok, again.error
    assert again.ingest.changes == []


@pytest.mark.parametrize("token", [*POISON, "0e-99999999999999"])
def test_poison_numbers_are_refused_without_building_them(token: str) -> None:
    record = loads_exact(f'{{"quantity": {token}, "total": {token}}}')
    if token.startswith("0e"):
        assert quantity(record, "quantity") == 0  # zero, whatever its exponent
        return
    with pytest.raises(BadRecord, match="quantity has more digits"):
        quantity(record, "quantity")
    with pytest.raises(BadRecord, match="total is not a whole number"):
        integer(record, "total")


@pytest.mark.parametrize(
    "value",
    ["123456789012345678901234567890", "0.000000000000000000000000000001", "100.50"],
)
def test_the_largest_and_finest_quantities_still_pass(value: str) -> None:
    assert quantity({"quantity": Decimal(value)}, "quantity") == Decimal(value)
