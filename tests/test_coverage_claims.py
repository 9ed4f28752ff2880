"""A pull claims to cover only what it asked for and got an answer about.

An Akamai discovery that lists nothing where lines are tracked fails the pull (it is a bad
answer, not an empty account); a product no longer listed for a contract was not asked
about, so its lines do not disappear; a Fastly ``product_id``/``usage_type_name`` filter
covers that product's service lines only.
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator, Awaitable, Callable
from datetime import date
from pathlib import Path
from typing import Any

import pytest
from aiohttp import web
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncEngine

from reconciler.providers.http import HttpClient
from reconciler.refresh import RunOutcome, refresh_source
from reconciler.sandbox import SandboxServer, named_scenario
from reconciler.settings import settings_from_mapping
from reconciler.store.ingest import lines_t

TODAY = date(2024, 7, 10)
CONTRACTS = "/contract-api/v1/contracts/identifiers"
Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


class Rewrite:
    """Answers the requests to ``path`` with ``body`` instead of the sandbox's answer."""

    def __init__(self) -> None:
        self.answers: dict[str, Callable[[Any], Any]] = {}

    @web.middleware
    async def middleware(self, request: web.Request, handler: Handler) -> web.StreamResponse:
        response = await handler(request)
        change = self.answers.get(request.path)
        if change is None:
            return response
        assert isinstance(response, web.Response) and response.body is not None
        data = json.loads(bytes(response.body))  # type: ignore[arg-type]
        return web.json_response(change(data))


@pytest.fixture
async def sandbox() -> AsyncIterator[tuple[SandboxServer, Rewrite]]:
    server = SandboxServer(named_scenario("default"), host="127.0.0.1", port=0)
    rewrite = Rewrite()
    server.app.middlewares.append(rewrite.middleware)
    async with server:
        yield server, rewrite


async def pull(
    engine: AsyncEngine, sandbox: SandboxServer, tmp_path: Path, **source: Any
) -> RunOutcome:
    edgerc = tmp_path / "sandbox.edgerc"
    edgerc.write_text(sandbox.edgerc_text())
    edgerc.chmod(0o600)
    common = {"base_url": sandbox.base_url, "max_retries": 0, "lookback_months": 3, **source}
    provider = source.get("provider", "akamai")
    name = str(provider)
    if provider == "akamai":
        common["edgerc"] = str(edgerc)
    settings = settings_from_mapping({"sources": [{"name": name, "provider": provider, **common}]})
    async with HttpClient() as http:
        return await refresh_source(
            engine,
            settings,
            name,
            http,
            today=TODAY,
            environ={"FASTLY_API_TOKEN": sandbox.fastly_token},
        )


async def present(engine: AsyncEngine) -> dict[tuple[str, str, str], bool]:
    async with engine.connect() as conn:
        rows = await conn.execute(
            select(lines_t.c.key_hash, lines_t.c.account, lines_t.c.product, lines_t.c.present)
        )
        return {(r.key_hash, r.account, r.product): bool(r.present) for r in rows}


async def test_contract_discovery_listing_nothing_fails_the_pull_and_changes_nothing(
    engine: AsyncEngine, sandbox: tuple[SandboxServer, Rewrite], tmp_path: Path
) -> None:
    server, rewrite = sandbox
    assert (await pull(engine, server, tmp_path)).ok
    before = await present(engine)
    rewrite.answers[CONTRACTS] = lambda _: []
    outcome = await pull(engine, server, tmp_path)
    assert outcome.error is not None
    assert outcome.error.startswith(f"source 'akamai': {CONTRACTS}: listed no contracts, but ")
    assert "an empty discovery is not an empty account" in outcome.error
    assert await present(engine) == before


async def test_product_discovery_listing_nothing_for_a_tracked_contract_fails_the_pull(
    engine: AsyncEngine, sandbox: tuple[SandboxServer, Rewrite], tmp_path: Path
) -> None:
    server, rewrite = sandbox
    assert (await pull(engine, server, tmp_path)).ok
    before = await present(engine)
    contract = server.contracts[0]
    products = f"/billing/v1/contracts/{contract}/products"
    rewrite.answers[products] = lambda data: {**data, "usagePeriods": []}
    outcome = await pull(engine, server, tmp_path)
    assert outcome.error is not None
    assert outcome.error.startswith(
        f"source 'akamai': {products}: listed no products for contract {contract}, but "
    )
    assert await present(engine) == before


async def test_a_product_no_longer_listed_was_not_asked_about_so_nothing_disappears(
    engine: AsyncEngine, sandbox: tuple[SandboxServer, Rewrite], tmp_path: Path
) -> None:
    server, rewrite = sandbox
    assert (await pull(engine, server, tmp_path)).ok
    before = await present(engine)
    contract = server.contracts[0]
    listed = {p for (_, a, p) in before if a == contract}
    assert len(listed) > 1
    dropped = sorted(listed)[0]

    def without_dropped(data: dict[str, Any]) -> dict[str, Any]:
        for period in data["usagePeriods"]:
            period["usageProducts"] = [
                p for p in period["usageProducts"] if p["productId"] != dropped
            ]
        return data

    rewrite.answers[f"/billing/v1/contracts/{contract}/products"] = without_dropped
    outcome = await pull(engine, server, tmp_path)
    assert outcome.ok, outcome.error
    assert [c.kind for c in outcome.ingest.changes] == []
    assert await present(engine) == before


async def test_a_fastly_filter_added_later_covers_only_the_filtered_service_lines(
    engine: AsyncEngine, sandbox: tuple[SandboxServer, Rewrite], tmp_path: Path
) -> None:
    server, _ = sandbox
    assert (await pull(engine, server, tmp_path, provider="fastly")).ok
    before = await present(engine)
    outcome = await pull(
        engine,
        server,
        tmp_path,
        provider="fastly",
        product_id="cdn_usage",
        usage_type_name="North America Bandwidth",
    )
    assert outcome.ok, outcome.error
    assert outcome.ingest.changes == []  # the other service lines were not asked about
    assert await present(engine) == before
