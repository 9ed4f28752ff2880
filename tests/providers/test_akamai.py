"""The Akamai client against the sandbox over loopback, and against the seed's own document."""

from __future__ import annotations

from collections.abc import AsyncIterator
from datetime import UTC, date, datetime
from decimal import Decimal
from pathlib import Path

import pytest
from aiohttp import web
from aiohttp.test_utils import TestServer

from reconciler.domain import LineStatus, Month, Provider
from reconciler.errors import BadProviderDataError, ProviderError
from reconciler.providers.edgegrid import EdgeGridVerificationError, verify_authorization
from reconciler.sandbox import named_scenario
from reconciler.sandbox.credentials import SandboxCredentials

from .conftest import FAST, Sandbox, StartSandbox, collect

FIXTURES = Path(__file__).parent.parent / "fixtures"
SEED = FIXTURES / "akamai-monthly-summary-seed.json"
SUMMARY = "/billing/v1/contracts/K-0N7RAK7/products/1-ABC012/usage/monthly-summary"


async def test_discovers_contracts_and_products_then_reads_each_summary(
    start_sandbox: StartSandbox,
) -> None:
    scenario = named_scenario("default").replace(akamai_contracts=2, akamai_oddities=False)
    sandbox = await start_sandbox(scenario)
    provider = sandbox.akamai()
    lines, pages = await collect(provider, date(2024, 7, 10))

    assert sandbox.requests("akamai.contract_identifiers") == 1
    assert sandbox.requests("akamai.products") == 2
    assert sandbox.requests("akamai.monthly_summary") == 2 * 3
    assert pages == 2 * 3
    assert provider.stats.api_calls == 1 + 2 + 6 == provider.stats.pages
    assert provider.stats.lines == len(lines)
    contracts = sandbox.server.contracts
    assert {line.account for line in lines} == set(contracts)
    # Only what was asked and answered: the contracts listed and each one's listed products.
    coverage = provider.coverage
    assert coverage.months == (Month(2024, 5), Month(2024, 6), Month(2024, 7))
    assert coverage.accounts == frozenset(contracts)
    assert coverage.products is None
    assert coverage.scopes is not None
    assert {(s.account, s.product) for s in coverage.scopes} == {
        (line.account, line.product) for line in lines
    }
    assert len(coverage.scopes) == 2 * 3
    assert coverage.empty_discovery == ()
    assert provider.invoice_lines == []

    windows = {
        (q["start"], q["end"]) for p, q in sandbox.recorder.requests if p.startswith("/billing/v1/")
    }
    assert windows == {("2024-05", "2024-08")}  # end is exclusive
    assert ("/contract-api/v1/contracts/identifiers", {"depth": "TOP"}) in (
        sandbox.recorder.requests
    )

    keys = {line.key for line in lines}
    assert len(keys) == len(lines)
    line = next(x for x in lines if x.product == "1-7KLGH" and x.usage_type == "Total MB")
    assert line.provider is Provider.AKAMAI
    assert line.product_name == "Adaptive Media Delivery"
    assert line.region in ("Americas", "EMEA", "Asia Pacific")
    assert line.service == "" and line.raw_quantity is None
    assert line.unit == "GB" and line.billable is True
    statuses = {(x.month, x.status) for x in lines}
    assert statuses == {
        (Month(2024, 5), LineStatus.FINALIZED),
        (Month(2024, 6), LineStatus.FINALIZED),
        (Month(2024, 7), LineStatus.COLLECTING),
    }
    # NetStorage's "Total Hits" leaves isBillable out.
    hits = [x for x in lines if x.product == "1-5BYUG1" and x.usage_type == "Total Hits"]
    assert hits and all(x.billable is None for x in hits)


async def test_configured_contracts_and_products_skip_discovery(sandbox: Sandbox) -> None:
    provider = sandbox.akamai(contracts=["K-0N7RAK7"], products=["1-7KLGH", "1-5BYUG1"])
    lines, _ = await collect(provider, date(2024, 7, 10))
    assert sandbox.requests("akamai.contract_identifiers") == 0
    assert sandbox.requests("akamai.products") == 0
    assert sandbox.requests("akamai.monthly_summary") == 2
    assert {line.product for line in lines} == {"1-7KLGH", "1-5BYUG1"}
    assert provider.coverage.accounts == frozenset({"K-0N7RAK7"})
    assert provider.coverage.products == frozenset({"1-7KLGH", "1-5BYUG1"})


async def test_account_switch_key_goes_on_every_request(sandbox: Sandbox) -> None:
    provider = sandbox.akamai(account_switch_key="1-ABCDE:1-2RBL")
    await collect(provider, date(2024, 7, 10))
    assert len(sandbox.recorder.requests) == 1 + 1 + 3
    assert all(q.get("accountSwitchKey") == "1-ABCDE:1-2RBL" for _, q in sandbox.recorder.requests)


async def test_sandbox_oddities_split_month_and_shifted_dates(sandbox: Sandbox) -> None:
    # Default scenario: first month 2024-01; the seed product's 2024-02 comes as two periods
    # and its finalized 2024-01 period carries dates three years off.
    provider = sandbox.akamai(contracts=["K-0N7RAK7"], products=["1-ABC012"], lookback_months=3)
    lines, _ = await collect(provider, date(2024, 3, 20))
    total_mb = sorted(
        (x for x in lines if x.usage_type == "Total MB"), key=lambda x: (x.month, x.period_start)
    )
    periods = [(str(x.month), x.period_start, x.period_end) for x in total_mb]
    assert periods[0] == ("2024-01", date(2021, 1, 1), date(2021, 1, 31))
    assert periods[1:3] == [
        ("2024-02", date(2024, 2, 1), date(2024, 2, 15)),
        ("2024-02", date(2024, 2, 16), date(2024, 2, 29)),
    ]


class SeedApi:
    """Akamai's documented example, served as is to a correctly signed request."""

    def __init__(self) -> None:
        self.credentials = SandboxCredentials()
        self.queries: list[dict[str, str]] = []

    async def handle(self, request: web.Request) -> web.Response:
        try:
            verify_authorization(
                request.headers.get("Authorization", ""),
                method=request.method,
                url=request.url,
                body=b"",
                lookup_secret=self.credentials.lookup_secret,
                now=datetime.now(UTC),
            )
        except EdgeGridVerificationError as e:
            return web.json_response({"title": "Not authorized", "detail": e.reason}, status=401)
        self.queries.append(dict(request.query))
        return web.Response(body=SEED.read_bytes(), content_type="application/json")


@pytest.fixture
async def seed_api() -> AsyncIterator[tuple[SeedApi, TestServer]]:
    api = SeedApi()
    app = web.Application()
    app.router.add_get(SUMMARY, api.handle)
    server = TestServer(app, host="127.0.0.1", port=0)
    await server.start_server()
    try:
        yield api, server
    finally:
        await server.close()


async def test_seed_document_normalizes_exactly(
    seed_api: tuple[SeedApi, TestServer], sandbox: Sandbox
) -> None:
    api, server = seed_api
    host = f"127.0.0.1:{server.port}"
    provider = sandbox.akamai(
        base_url=f"http://{host}",
        edgerc=sandbox.edgerc(api.credentials.edgerc_text(host), "seed.edgerc"),
        contracts=["K-0N7RAK7"],
        products=["1-ABC012"],
        lookback_months=2,
    )
    lines, _ = await collect(provider, date(2020, 8, 20))
    assert api.queries == [{"start": "2020-07", "end": "2020-09"}]
    assert len(lines) == 3 * 4

    got = {
        (str(x.month), x.period_start.isoformat(), x.period_end.isoformat(), x.usage_type): x
        for x in lines
    }
    july = got[("2020-07", "2017-07-01", "2017-07-31", "Total MB")]
    assert july.status is LineStatus.FINALIZED
    assert (july.unit, july.billable, str(july.quantity)) == ("GB", True, "30.3")
    assert july.quantity == Decimal("30.3")
    first_half = got[("2020-08", "2020-08-01", "2020-08-15", "Total MB")]
    second_half = got[("2020-08", "2020-08-16", "2020-08-31", "Total MB")]
    for half in (first_half, second_half):
        assert half.status is LineStatus.COLLECTING
        assert str(half.quantity) == "300.3" and half.unit == "GB"
    assert first_half.key != second_half.key
    assert str(got[("2020-07", "2017-07-01", "2017-07-31", "95/5 Mbps")].quantity) == "1.3"
    assert got[("2020-08", "2020-08-16", "2020-08-31", "Total Hits")].quantity == 55
    assert got[("2020-07", "2017-07-01", "2017-07-31", "Peak Mbps")].billable is False
    for line in lines:
        assert (line.account, line.product, line.region, line.service) == (
            "K-0N7RAK7",
            "1-ABC012",
            "GLOBAL",
            "",
        )
        assert line.product_name == "Web Application Accelerator"
        assert line.source == "akamai-test"


async def test_unknown_contract_fails_with_the_providers_message(sandbox: Sandbox) -> None:
    provider = sandbox.akamai(contracts=["K-NOPE"], products=["1-ABC012"])
    with pytest.raises(ProviderError) as caught:
        await collect(provider, date(2024, 7, 10))
    assert caught.value.status == 404
    message = str(caught.value)
    assert "source 'akamai-test'" in message
    assert "/billing/v1/contracts/K-NOPE/products/1-ABC012/usage/monthly-summary" in message
    assert "Contract not found" in message
    assert provider.stats.api_calls == 1  # 404 is not retried


async def test_unknown_data_status_is_bad_data_naming_the_period(sandbox: Sandbox) -> None:
    sandbox.add_faults({"kind": "unknown_status", "endpoint": "akamai.monthly_summary"})
    provider = sandbox.akamai(contracts=["K-0N7RAK7"], products=["1-7KLGH"])
    with pytest.raises(BadProviderDataError) as caught:
        await collect(provider, date(2024, 7, 10))
    message = str(caught.value)
    assert "contract K-0N7RAK7 product 1-7KLGH" in message
    assert "month 2024-05" in message
    assert '"DATA_PRELIMINARY"' in message
    assert provider.stats.retries == 0


async def test_a_failure_stops_the_other_requests(start_sandbox: StartSandbox) -> None:
    scenario = named_scenario("default").replace(akamai_contracts=4, akamai_products_per_contract=8)
    sandbox = await start_sandbox(scenario)
    sandbox.add_faults(
        {"kind": "latency", "latency_ms": 30, "endpoint": "akamai.monthly_summary"},
        {"kind": "negative", "endpoint": "akamai.monthly_summary", "count": 1},
    )
    provider = sandbox.akamai(max_concurrency=2, **{**FAST, "max_retries": 0})
    with pytest.raises(BadProviderDataError, match="value is negative"):
        await collect(provider, date(2024, 7, 10))
    assert sandbox.requests("akamai.monthly_summary") < 32
