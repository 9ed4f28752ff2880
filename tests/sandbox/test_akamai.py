"""Akamai endpoints: the seed's monthly-summary structure and oddities, errors, discovery."""

from __future__ import annotations

import json
from decimal import Decimal
from typing import Any

import pytest

from reconciler.domain import Month
from reconciler.sandbox import Scenario
from tests.sandbox.conftest import SandboxClient, StartSandbox, loads

CONTRACT = "K-0N7RAK7"
PRODUCTS = f"/billing/v1/contracts/{CONTRACT}/products"
SUMMARY = PRODUCTS + "/{product}/usage/monthly-summary"
WAA = SUMMARY.format(product="1-ABC012")

# The example response of the seed document (List monthly usage summary per contract and product).
SEED_EXAMPLE = json.loads(
    '{"accountId":"A-CCT7890","contractId":"K-0N7RAK7","end":"2020-09","productId":"1-ABC012",'
    '"productName":"Web Application Accelerator","requestDate":"2020-10-15T00:00:00Z",'
    '"start":"2020-07","usagePeriods":[{"dataStatus":"DATA_FINALIZED","end":"2017-07-31",'
    '"month":"2020-07","region":"GLOBAL","start":"2017-07-01","stats":[{"isBillable":true,'
    '"statType":"Total MB","unit":"GB","value":30.3},{"isBillable":false,"statType":"95/5 Mbps",'
    '"unit":"95/5 Mbps","value":1.3},{"isBillable":false,"statType":"Total Hits",'
    '"unit":"Total Hits","value":22},{"isBillable":false,"statType":"Peak Mbps",'
    '"unit":"Peak Mbps","value":1}]},{"dataStatus":"COLLECTING_DATA","end":"2020-08-15",'
    '"month":"2020-08","region":"GLOBAL","start":"2020-08-01","stats":[{"isBillable":true,'
    '"statType":"Total MB","unit":"GB","value":300.3}]},{"dataStatus":"COLLECTING_DATA",'
    '"end":"2020-08-31","month":"2020-08","region":"GLOBAL","start":"2020-08-16","stats":[]}]}'
)


def _types(value: Any) -> Any:
    """The structure of a JSON value: key order and value kinds, not values."""
    if isinstance(value, dict):
        return [(k, _types(v)) for k, v in value.items()]
    if isinstance(value, list):
        return [_types(value[0])] if value else []
    if isinstance(value, bool):
        return "bool"
    if isinstance(value, int | float | Decimal):
        return "number"
    return type(value).__name__


async def test_monthly_summary_has_the_seed_structure(sandbox: SandboxClient) -> None:
    body = await sandbox.akamai_json(WAA, start="2024-01", end="2024-03")
    assert list(body) == list(SEED_EXAMPLE)
    assert body["accountId"] == "A-CCT7890" and body["contractId"] == CONTRACT
    assert (body["productId"], body["productName"]) == ("1-ABC012", "Web Application Accelerator")
    assert (body["start"], body["end"]) == ("2024-01", "2024-03")
    assert body["requestDate"] == "2024-07-10T00:00:00Z"
    seed_period = _types(SEED_EXAMPLE["usagePeriods"][0])
    for period in body["usagePeriods"]:
        assert _types(period) == seed_period
    assert [s["statType"] for s in body["usagePeriods"][0]["stats"]] == [
        "Total MB",
        "95/5 Mbps",
        "Total Hits",
        "Peak Mbps",
    ]


async def test_the_seed_oddities_appear(sandbox: SandboxClient) -> None:
    body = await sandbox.akamai_json(WAA, start="2024-01", end="2024-03")
    january, *february = body["usagePeriods"]
    # a finalized period whose dates are off its month
    assert (january["month"], january["dataStatus"]) == ("2024-01", "DATA_FINALIZED")
    assert (january["start"], january["end"]) == ("2021-01-01", "2021-01-31")
    # one month as two periods
    assert [(p["month"], p["start"], p["end"]) for p in february] == [
        ("2024-02", "2024-02-01", "2024-02-15"),
        ("2024-02", "2024-02-16", "2024-02-29"),
    ]
    # "Total MB" comes in GB
    total_mb = january["stats"][0]
    assert (total_mb["statType"], total_mb["unit"], total_mb["isBillable"]) == (
        "Total MB",
        "GB",
        True,
    )
    # a stat without isBillable
    storage = await sandbox.akamai_json(
        SUMMARY.format(product="1-5BYUG1"), start="2024-05", end="2024-06"
    )
    hits = next(s for s in storage["usagePeriods"][0]["stats"] if s["statType"] == "Total Hits")
    assert "isBillable" not in hits and set(hits) == {"statType", "unit", "value"}


async def test_statuses_regions_and_exclusive_end(sandbox: SandboxClient) -> None:
    body = await sandbox.akamai_json(
        SUMMARY.format(product="1-7KLGH"), start="2024-06", end="2024-08"
    )
    periods = body["usagePeriods"]
    assert [(p["month"], p["region"], p["dataStatus"]) for p in periods] == [
        ("2024-06", "Americas", "DATA_FINALIZED"),
        ("2024-06", "EMEA", "DATA_FINALIZED"),
        ("2024-06", "Asia Pacific", "DATA_FINALIZED"),
        ("2024-07", "Americas", "COLLECTING_DATA"),
        ("2024-07", "EMEA", "COLLECTING_DATA"),
        ("2024-07", "Asia Pacific", "COLLECTING_DATA"),
    ]
    july = next(p for p in periods if p["month"] == "2024-07")
    assert (july["start"], july["end"]) == ("2024-07-01", "2024-07-31")
    one = await sandbox.akamai_json(
        SUMMARY.format(product="1-7KLGH"), start="2024-06", end="2024-07"
    )
    assert {p["month"] for p in one["usagePeriods"]} == {"2024-06"}


async def test_account_switch_key_is_accepted(sandbox: SandboxClient) -> None:
    plain = await sandbox.akamai_json(WAA, start="2024-05", end="2024-07")
    switched = await sandbox.akamai_json(
        WAA, start="2024-05", end="2024-07", accountSwitchKey="1-5C0YLB:1-8BYUX"
    )
    assert switched["usagePeriods"] == plain["usagePeriods"]
    ids = await sandbox.akamai_json(
        "/contract-api/v1/contracts/identifiers", depth="TOP", accountSwitchKey="1-5C0YLB"
    )
    assert ids == [CONTRACT]


async def test_products_listing(sandbox: SandboxClient) -> None:
    body = await sandbox.akamai_json(PRODUCTS, start="2024-05", end="2024-07")
    assert list(body) == ["accountId", "contractId", "start", "end", "requestDate", "usagePeriods"]
    assert [p["month"] for p in body["usagePeriods"]] == ["2024-05", "2024-06"]
    assert body["usagePeriods"][0]["usageProducts"] == [
        {"productId": "1-ABC012", "productName": "Web Application Accelerator"},
        {"productId": "1-7KLGH", "productName": "Adaptive Media Delivery"},
        {"productId": "1-5BYUG1", "productName": "NetStorage"},
    ]


async def test_contract_api(sandbox: SandboxClient) -> None:
    ids = await sandbox.akamai_json("/contract-api/v1/contracts/identifiers", depth="TOP")
    assert ids == [CONTRACT]
    body = await sandbox.akamai_json(f"/contract-api/v1/contracts/{CONTRACT}/products/summaries")
    assert list(body) == ["products"] and body["products"]["contractId"] == CONTRACT
    products = body["products"]["marketing-products"]
    assert products[0] == {
        "marketingProductId": "B-3-96NY56",
        "marketingProductName": "Web Application Accelerator",
    }
    status, raw, _ = await sandbox.akamai("/contract-api/v1/contracts/K-NOPE/products/summaries")
    assert status == 404
    assert loads(raw) == {
        "type": "/contract-api/error-types/E404",
        "status": "404",
        "title": "Resource not found.",
    }


async def test_several_contracts(start_sandbox: StartSandbox) -> None:
    client = await start_sandbox(Scenario(akamai_contracts=3, akamai_products_per_contract=2))
    ids = await client.akamai_json("/contract-api/v1/contracts/identifiers")
    assert len(ids) == 3 and ids[0] == CONTRACT
    assert all(i.startswith(("K-", "C-")) for i in ids)
    products = await client.akamai_json(
        f"/billing/v1/contracts/{ids[2]}/products", start="2024-06", end="2024-07"
    )
    assert len(products["usagePeriods"][0]["usageProducts"]) == 2


@pytest.mark.parametrize(
    ("params", "problem"),
    [
        ({"end": "2024-03"}, "Field 'start' is required"),
        ({"start": "2024-1", "end": "2024-03"}, "Field 'start' is invalid"),
        ({"start": "2024-01", "end": "March"}, "Field 'end' is invalid"),
        ({"start": "2024-03", "end": "2024-03"}, "Field 'end' is invalid"),
        ({"start": "2024-04", "end": "2024-03"}, "Field 'end' is invalid"),
    ],
)
async def test_bad_start_or_end_is_a_billing_400(
    sandbox: SandboxClient, params: dict[str, str], problem: str
) -> None:
    status, raw, headers = await sandbox.akamai(WAA, params)
    assert status == 400 and headers["Content-Type"].startswith("application/problem+json")
    error = loads(raw)
    assert list(error) == ["type", "title", "incidentId", "errors"]
    assert error["type"].startswith("/billing/error-types/")
    assert problem in error["errors"][0]["title"]


@pytest.mark.parametrize(
    "path",
    [
        "/billing/v1/contracts/K-NOPE/products",
        "/billing/v1/contracts/K-NOPE/products/1-ABC012/usage/monthly-summary",
        SUMMARY.format(product="1-NOPE"),
    ],
)
async def test_unknown_contract_or_product_is_a_404(sandbox: SandboxClient, path: str) -> None:
    status, raw, _ = await sandbox.akamai(path, {"start": "2024-01", "end": "2024-02"})
    assert status == 404
    assert loads(raw)["type"].startswith("/billing/error-types/")


async def test_retention_is_18_months(start_sandbox: StartSandbox) -> None:
    client = await start_sandbox(Scenario(first_month=Month(2022, 1), akamai_oddities=False))
    body = await client.akamai_json(WAA, start="2022-06", end="2023-03")
    assert {p["month"] for p in body["usagePeriods"]} == {"2023-02"}
    future = await client.akamai_json(WAA, start="2024-08", end="2024-12")
    assert future["usagePeriods"] == []
