"""Reporting groups: each listed group's summary of every product pulled, EdgeGrid-signed,
given to its contract, never billable-true for want of ``isBillable``; the sandbox's groups
are parts of the contract's products; bad answers are one clear error naming the endpoint."""

from __future__ import annotations

from collections import defaultdict
from datetime import date
from decimal import Decimal
from typing import Any

import pytest

from reconciler.domain import Month, UsageLine, reporting_group_of, reporting_group_service
from reconciler.errors import BadProviderDataError, ProviderError, ReconcilerError
from reconciler.providers.akamai import reporting_group_endpoint
from reconciler.providers.akamai_records import group_contract, summary_lines
from reconciler.sandbox import named_scenario
from reconciler.sandbox.akamai_reporting_groups import SHARES, reporting_groups
from reconciler.settings import settings_from_mapping

from .conftest import Sandbox, StartSandbox, collect

TODAY = date(2024, 7, 10)
CONTRACT = "K-0N7RAK7"
ENDPOINT = reporting_group_endpoint("12345", "1-WAA")


def groups_of(sandbox: Sandbox, contract: str = CONTRACT) -> list[str]:
    """The sandbox's reporting groups of ``contract``, in the order of their shares."""
    found = reporting_groups(sandbox.state.scenario.seed, list(sandbox.state.akamai.contracts))
    return [group for group, (owner, _) in found.items() if owner == contract]


def per_usage(lines: list[UsageLine]) -> dict[tuple[object, ...], dict[str, Decimal]]:
    out: dict[tuple[object, ...], dict[str, Decimal]] = defaultdict(dict)
    for x in lines:
        key = (x.account, x.product, x.usage_type, x.region, x.month, x.period_start)
        out[key][x.service] = x.quantity
    return out


async def test_each_group_is_read_for_every_product_and_is_a_part_of_it(sandbox: Sandbox) -> None:
    groups = groups_of(sandbox)
    provider = sandbox.akamai(reporting_groups=groups)
    lines, _ = await collect(provider, TODAY)

    products = {x.product for x in lines if not x.service}
    assert sandbox.requests("akamai.reporting_group_summary", 200) == len(groups) * len(products)
    path = f"/billing/v1/reporting-groups/{groups[0]}/products/1-7KLGH/usage/monthly-summary"
    assert any(p == path and q["start"] == "2024-05" for p, q in sandbox.recorder.requests)
    mine = [x for x in lines if reporting_group_of(x.service) is not None]
    assert {x.service for x in mine} == {reporting_group_service(g) for g in groups}
    assert {x.account for x in mine} == {CONTRACT}
    # The Billing API leaves isBillable out of a group's stats: unknown, never true.
    assert all(x.billable is None for x in mine)
    assert all(x.service_name == f"reporting group {reporting_group_of(x.service)}" for x in mine)
    # Each group carries its share of the product's own figure, exactly.
    for parts in per_usage(lines).values():
        for group, share in zip(groups, SHARES, strict=True):
            assert parts[reporting_group_service(group)] == parts[""] * share
    # Coverage: the contract's products (their own lines) and each group's answers.
    scopes = {(s.account, s.product, s.reporting_group) for s in provider.coverage.scopes or ()}
    assert scopes == {(CONTRACT, p, g) for p in products for g in ("", *groups)}


async def test_a_group_is_given_to_the_contract_its_answer_names(
    start_sandbox: StartSandbox,
) -> None:
    sandbox = await start_sandbox(named_scenario("default").replace(akamai_contracts=2))
    other = sandbox.server.contracts[1]
    group = groups_of(sandbox, other)[0]
    lines, _ = await collect(sandbox.akamai(reporting_groups=[group]), TODAY)
    mine = [x for x in lines if x.service == reporting_group_service(group)]
    # 1-7KLGH is on both contracts: the answer's contractId says whose part it is.
    assert mine and {x.account for x in mine} == {other}


async def test_a_group_with_no_usage_for_any_product_fails_the_pull(
    start_sandbox: StartSandbox,
) -> None:
    sandbox = await start_sandbox(named_scenario("default").replace(akamai_contracts=2))
    other = sandbox.server.contracts[1]
    group = groups_of(sandbox, other)[0]
    # The other contract has no Web Application Accelerator: the group answers nothing.
    provider = sandbox.akamai(contracts=[CONTRACT], products=["1-ABC012"], reporting_groups=[group])
    with pytest.raises(BadProviderDataError) as caught:
        await collect(provider, TODAY)
    message = str(caught.value)
    assert f"/billing/v1/reporting-groups/{group}/products/{{productId}}/usage" in message
    assert f"reporting group {group} answered no usage for any of the 1 products pulled" in message
    assert "reporting_groups" in message and "\n" not in message


async def test_a_group_under_a_contract_not_pulled_is_refused(start_sandbox: StartSandbox) -> None:
    sandbox = await start_sandbox(named_scenario("default").replace(akamai_contracts=2))
    other = sandbox.server.contracts[1]
    group = groups_of(sandbox, other)[0]
    provider = sandbox.akamai(contracts=[CONTRACT], reporting_groups=[group])
    with pytest.raises(BadProviderDataError, match=f"under contract {other}, which this source"):
        await collect(provider, TODAY)


async def test_an_unknown_group_is_the_providers_404(sandbox: Sandbox) -> None:
    provider = sandbox.akamai(products=["1-7KLGH"], reporting_groups=["4242"])
    with pytest.raises(ProviderError) as caught:
        await collect(provider, TODAY)
    assert caught.value.status == 404
    assert "/billing/v1/reporting-groups/4242/products/1-7KLGH/usage/monthly-summary" in str(
        caught.value
    )
    assert "Reporting group not found" in str(caught.value)


async def test_sandbox_faults_reach_the_group_endpoint(sandbox: Sandbox) -> None:
    group = groups_of(sandbox)[0]
    sandbox.add_faults(
        {"kind": "status", "status": 503, "endpoint": "akamai.reporting_group_summary", "count": 2}
    )
    provider = sandbox.akamai(products=["1-7KLGH"], reporting_groups=[group])
    lines, _ = await collect(provider, TODAY)
    assert provider.stats.retries == 2
    assert sandbox.requests("akamai.reporting_group_summary", 503) == 2
    assert any(x.service == reporting_group_service(group) for x in lines)

    sandbox.add_faults({"kind": "wrong_type", "endpoint": "akamai.reporting_group_summary"})
    with pytest.raises(BadProviderDataError) as caught:
        await collect(sandbox.akamai(products=["1-7KLGH"], reporting_groups=[group]), TODAY)
    message = str(caught.value)
    assert f"/billing/v1/reporting-groups/{group}/products/1-7KLGH" in message
    assert f"reporting group {group} product 1-7KLGH usage period 0" in message


def document(**fields: Any) -> dict[str, Any]:
    period = {
        "dataStatus": "DATA_FINALIZED",
        "month": "2024-06",
        "region": "GLOBAL",
        "start": "2024-06-01",
        "end": "2024-06-30",
        "stats": [{"statType": "Total MB", "unit": "GB", "value": Decimal("1.5")}],
    }
    return {"productId": "1-WAA", "usagePeriods": [period], **fields}


@pytest.mark.parametrize(
    ("fields", "contracts", "expected"),
    [
        ({"contractId": "K-2", "reportingGroupId": 12345}, ("K-1", "K-2"), "K-2"),
        ({"reportingGroupId": Decimal(12345)}, ("K-1",), "K-1"),
        ({}, ("K-1",), "K-1"),
        ({"reportingGroupId": 999}, ("K-1",), "reportingGroupId is '999', not the '12345'"),
        ({}, ("K-1", "K-2"), "no contractId, and contracts K-1, K-2 all have the product"),
        ({"contractId": "K-9"}, ("K-1",), "under contract K-9, which this source does not pull"),
        ({"reportingGroupId": [1]}, ("K-1",), "reportingGroupId is not a string"),
    ],
)
def test_the_contract_of_a_groups_answer(
    fields: dict[str, Any], contracts: tuple[str, ...], expected: str
) -> None:
    payload = document(**fields)
    if expected.startswith("K-"):
        found = group_contract(
            "akamai", ENDPOINT, payload, group="12345", product="1-WAA", contracts=contracts
        )
        assert found == expected
        return
    with pytest.raises(BadProviderDataError) as caught:
        group_contract(
            "akamai", ENDPOINT, payload, group="12345", product="1-WAA", contracts=contracts
        )
    text = str(caught.value)
    assert ENDPOINT in text and "reporting group 12345 product 1-WAA" in text and expected in text


def test_a_groups_stat_keeps_an_explicit_is_billable_and_never_invents_one() -> None:
    payload = document()
    payload["usagePeriods"][0]["stats"].append(
        {"statType": "Total Hits", "unit": "Hits", "value": Decimal(7), "isBillable": False}
    )
    found = summary_lines(
        "akamai",
        ENDPOINT,
        payload,
        contract="K-1",
        product="1-WAA",
        product_name="WAA",
        months=[Month(2024, 6)],
        group="12345",
    )
    assert [(x.usage_type, x.billable, x.service) for x in found] == [
        ("Total MB", None, "reporting-group:12345"),
        ("Total Hits", False, "reporting-group:12345"),
    ]


@pytest.mark.parametrize(
    ("value", "problem"),
    [
        (["12a"], "reporting group ids are positive integers like \"12345\" (got '12a')"),
        (["012"], "(got '012')"),
        ([12, "12"], "reporting group 12 is listed twice"),
        ("12", "Input should be a valid list"),
    ],
)
def test_reporting_groups_config_is_checked_in_one_line(value: Any, problem: str) -> None:
    source = {"name": "akamai", "provider": "akamai", "reporting_groups": value}
    with pytest.raises(ReconcilerError) as caught:
        settings_from_mapping({"sources": [source]})
    # One problem line, naming the key (under the "invalid configuration:" heading).
    problems = str(caught.value).splitlines()[1:]
    assert len(problems) == 1
    assert problems[0].strip().startswith("sources[0].reporting_groups") and problem in problems[0]


def test_reporting_group_ids_may_be_integers() -> None:
    source = {"name": "akamai", "provider": "akamai", "reporting_groups": [12345, "678"]}
    settings = settings_from_mapping({"sources": [source]})
    assert settings.sources[0].reporting_groups == ["12345", "678"]  # type: ignore[union-attr]


async def test_the_group_endpoint_refuses_an_unsigned_request(sandbox: Sandbox) -> None:
    import aiohttp

    group = groups_of(sandbox)[0]
    url = f"{sandbox.server.base_url}{reporting_group_endpoint(group, '1-7KLGH')}"
    window = {"start": "2024-05", "end": "2024-08"}
    async with aiohttp.ClientSession() as session, session.get(url, params=window) as response:
        assert response.status == 401
        assert "pep-authn/deny" in (await response.json(content_type=None))["type"]
