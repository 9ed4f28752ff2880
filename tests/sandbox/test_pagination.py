"""Service-usage pagination: exactly meta.total records, no duplicates, byte-identical by seed."""

from __future__ import annotations

import pytest

from reconciler.sandbox import Scenario, named_scenario
from reconciler.sandbox.fastly import encode_cursor
from tests.sandbox.conftest import SandboxClient, StartSandbox, loads

SERVICE_USAGE = "/billing/v3/service-usage-metrics"
MEDIUM = Scenario(name="medium", fastly_services=150, fastly_usage_types=20)  # 21,000 lines


def _key(record: dict[str, str]) -> tuple[str, str, str, str]:
    return (record["month"], record["service_id"], record["product_id"], record["usage_type"])


def _assert_complete_walk(records: list[dict[str, str]], metas: list[dict[str, object]]) -> None:
    total = metas[0]["total"]
    assert all(meta["total"] == total for meta in metas)
    assert len(records) == total
    assert len({_key(r) for r in records}) == total
    assert metas[-1]["next_cursor"] == ""
    cursors = [meta["next_cursor"] for meta in metas[:-1]]
    assert len(set(cursors)) == len(cursors)


async def test_walk_at_limit_1(tiny: SandboxClient) -> None:
    records, metas = await tiny.walk_service_usage(1)
    assert len(metas) == 12  # 3 months x 2 services x 2 usage types, one per page
    _assert_complete_walk(records, metas)


@pytest.mark.parametrize(("limit", "pages"), [(1000, 21), (10000, 3)])
async def test_walk_at_large_limits(start_sandbox: StartSandbox, limit: int, pages: int) -> None:
    client = await start_sandbox(MEDIUM)
    records, metas = await client.walk_service_usage(limit)
    assert metas[0]["total"] == 21_000 and len(metas) == pages
    assert all(len(page) for page in metas)
    _assert_complete_walk(records, metas)


async def test_walk_with_hidden_lines_yields_the_reduced_total(tiny: SandboxClient) -> None:
    first = (await tiny.fastly_json(SERVICE_USAGE))["data"][0]
    await tiny.control(
        "POST",
        "events",
        [
            {"kind": "disappear", "provider": "fastly", "day": "2024-07-01",
             "service": first["service_id"]},
            {"kind": "disappear", "provider": "fastly", "day": "2024-07-01",
             "month": "2024-06", "usage_type": first["usage_type"]},
        ],
    )  # fmt: skip
    records, metas = await tiny.walk_service_usage(1)
    # service 1: 6 lines gone; June's usage type on the other service: 1 more
    assert metas[0]["total"] == 12 - 6 - 1
    _assert_complete_walk(records, metas)
    assert first["service_id"] not in {r["service_id"] for r in records}


async def test_the_large_scenario_has_a_million_lines_served_on_demand(
    start_sandbox: StartSandbox,
) -> None:
    client = await start_sandbox(named_scenario("large"))
    first = await client.fastly_json(SERVICE_USAGE, limit="10")
    total = first["meta"]["total"]
    assert total == 18 * 2800 * 20 >= 1_000_000
    last = await client.fastly_json(
        SERVICE_USAGE, limit="10000", cursor=encode_cursor(total - 8010)
    )
    assert len(last["data"]) == 8010 and last["meta"]["next_cursor"] == ""
    assert last["data"][-1]["month"] == "2024-07"


async def _pages(client: SandboxClient) -> list[bytes]:
    bodies = []
    for params in (
        {"limit": "7"},
        {"limit": "7", "cursor": encode_cursor(49)},
        {"limit": "3", "product_id": "cdn_usage", "usage_type_name": "Europe Requests"},
    ):
        bodies.append((await client.fastly(SERVICE_USAGE, **params))[1])
    usage = {"start_month": "2024-05", "end_month": "2024-07"}
    bodies.append((await client.fastly("/billing/v3/usage-metrics", **usage))[1])
    bodies.append((await client.fastly("/billing/v3/invoices"))[1])
    bodies.append((await client.fastly("/billing/v3/invoices/month-to-date"))[1])
    summary = "/billing/v1/contracts/K-0N7RAK7/products/1-7KLGH/usage/monthly-summary"
    bodies.append((await client.akamai(summary, {"start": "2024-01", "end": "2024-08"}))[1])
    return bodies


async def test_the_same_seed_gives_byte_identical_pages(start_sandbox: StartSandbox) -> None:
    one = await start_sandbox(named_scenario("default"))
    two = await start_sandbox(named_scenario("default"))
    other = await start_sandbox(named_scenario("default", seed=2))
    pages_one, pages_two, pages_other = await _pages(one), await _pages(two), await _pages(other)
    assert all(loads(page) for page in pages_one)
    assert pages_one == pages_two
    assert all(a != b for a, b in zip(pages_one, pages_other, strict=True))
