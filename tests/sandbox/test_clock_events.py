"""The simulated clock (daily accrual, finalization) and every kind of event."""

from __future__ import annotations

from decimal import Decimal
from typing import Any

import pytest

from tests.sandbox.conftest import SandboxClient

USAGE = "/billing/v3/usage-metrics"
SERVICE_USAGE = "/billing/v3/service-usage-metrics"
INVOICES = "/billing/v3/invoices"
SUMMARY = "/billing/v1/contracts/K-0N7RAK7/products/1-ABC012/usage/monthly-summary"


async def _set_day(client: SandboxClient, day: str) -> None:
    assert await client.control("POST", "clock", {"today": day}) == {"today": day}


async def _account(client: SandboxClient, month: str, usage_type: str) -> dict[str, Any]:
    body = await client.fastly_json(USAGE, start_month=month, end_month=month)
    return next(r for r in body["data"] if r["usage_type"] == usage_type)


async def _periods(client: SandboxClient, month: str) -> list[dict[str, Any]]:
    end = {"2024-05": "2024-06", "2024-06": "2024-07", "2024-07": "2024-08"}[month]
    body = await client.akamai_json(SUMMARY, start=month, end=end)
    periods: list[dict[str, Any]] = body["usagePeriods"]
    return periods


def _stat(period: dict[str, Any], stat_type: str = "Total MB") -> dict[str, Any]:
    return next(s for s in period["stats"] if s["statType"] == stat_type)


async def test_usage_accrues_day_by_day(sandbox: SandboxClient) -> None:
    day10 = await _account(sandbox, "2024-07", "Europe Requests")
    await sandbox.control("POST", "clock", {"advance_days": 1})
    day11 = await _account(sandbox, "2024-07", "Europe Requests")
    assert day11["quantity"] == day10["quantity"] * 11 / 10
    assert day11["last_updated_at"] == "2024-07-11T04:11:00Z"
    june = await _account(sandbox, "2024-06", "Europe Requests")
    assert june["last_updated_at"] == "2024-07-01T04:11:00Z"  # closed months stop accruing
    empty = await sandbox.fastly_json(USAGE, start_month="2024-08", end_month="2024-08")
    assert empty["data"] == []
    await _set_day(sandbox, "2024-08-01")
    august = await sandbox.fastly_json(USAGE, start_month="2024-08", end_month="2024-08")
    assert len(august["data"]) == 4


async def test_a_month_finalizes_days_after_it_ends(sandbox: SandboxClient) -> None:
    await _set_day(sandbox, "2024-07-02")
    assert [p["dataStatus"] for p in await _periods(sandbox, "2024-06")] == ["COLLECTING_DATA"]
    invoices = (await sandbox.fastly_json(INVOICES))["data"]
    assert invoices[0]["billing_start_date"].startswith("2024-05")
    await sandbox.control("POST", "clock", {"advance_days": 1})
    assert [p["dataStatus"] for p in await _periods(sandbox, "2024-06")] == ["DATA_FINALIZED"]
    june = (await sandbox.fastly_json(INVOICES))["data"][0]
    assert june["billing_start_date"] == "2024-06-01T00:00:00Z"
    assert june["invoice_posted_on"] == "2024-07-03T00:00:00Z"
    usage = await sandbox.fastly_json(USAGE, start_month="2024-06", end_month="2024-06")
    assert [i["units"] for i in june["transaction_line_items"]] == [
        r["quantity"] for r in usage["data"]
    ]


async def test_restate_a_finalized_month(sandbox: SandboxClient) -> None:
    before = await _account(sandbox, "2024-05", "Europe Bandwidth")
    stat_before = _stat((await _periods(sandbox, "2024-05"))[0])
    await sandbox.control(
        "POST",
        "events",
        [
            {"kind": "restate", "provider": "fastly", "day": "2024-07-12", "month": "2024-05",
             "usage_type": "Europe Bandwidth", "factor": "1.1"},
            {"kind": "restate", "provider": "akamai", "day": "2024-07-12", "month": "2024-05",
             "contract": "K-0N7RAK7", "product": "1-ABC012", "usage_type": "Total MB",
             "factor": "0.9"},
        ],
    )  # fmt: skip
    assert await _account(sandbox, "2024-05", "Europe Bandwidth") == before  # not yet
    await _set_day(sandbox, "2024-07-12")
    after = await _account(sandbox, "2024-05", "Europe Bandwidth")
    assert after["quantity"] == before["quantity"] * Decimal("1.1")
    assert after["last_updated_at"] == "2024-07-12T04:11:00Z"
    may = next(
        i
        for i in (await sandbox.fastly_json(INVOICES))["data"]
        if "2024-05" in i["billing_start_date"]
    )
    item = next(i for i in may["transaction_line_items"] if i["product_name"] == "Europe Bandwidth")
    assert item["units"] == before["quantity"] != after["quantity"]  # the invoice stays
    (period,) = await _periods(sandbox, "2024-05")
    assert period["dataStatus"] == "DATA_FINALIZED"
    assert _stat(period)["value"] == stat_before["value"] * Decimal("0.9")
    services = await sandbox.fastly_json(
        SERVICE_USAGE, start_month="2024-05", end_month="2024-05",
        product_id="cdn_usage", usage_type_name="Europe Bandwidth",
    )  # fmt: skip
    assert sum(r["quantity"] for r in services["data"]) == after["quantity"]


async def test_decrease_a_collecting_month(sandbox: SandboxClient) -> None:
    before = await _account(sandbox, "2024-07", "North America Requests")
    stat_before = _stat((await _periods(sandbox, "2024-07"))[0], "Total Hits")
    await sandbox.control(
        "POST",
        "events",
        [
            {"kind": "decrease", "provider": "fastly", "day": "2024-07-10", "month": "2024-07",
             "usage_type": "North America Requests", "factor": "0.5"},
            {"kind": "decrease", "provider": "akamai", "day": "2024-07-10", "month": "2024-07",
             "usage_type": "Total Hits", "factor": "0.5"},
        ],
    )  # fmt: skip
    after = await _account(sandbox, "2024-07", "North America Requests")
    assert after["quantity"] == before["quantity"] / 2
    stat_after = _stat((await _periods(sandbox, "2024-07"))[0], "Total Hits")
    assert stat_after["value"] == stat_before["value"] / 2


async def test_unit_change(sandbox: SandboxClient) -> None:
    await sandbox.control(
        "POST",
        "events",
        [
            {"kind": "unit_change", "provider": "akamai", "day": "2024-07-10", "month": "2024-06",
             "usage_type": "Total MB", "unit": "MB", "factor": "1000"},
            {"kind": "unit_change", "provider": "fastly", "day": "2024-07-10", "month": "2024-06",
             "usage_type": "Europe Bandwidth", "unit": "gb"},
        ],
    )  # fmt: skip
    stat = _stat((await _periods(sandbox, "2024-06"))[0])
    assert stat["unit"] == "MB" and stat["statType"] == "Total MB"
    assert (await _account(sandbox, "2024-06", "Europe Bandwidth"))["unit"] == "gb"
    services = await sandbox.fastly_json(
        SERVICE_USAGE, start_month="2024-06", end_month="2024-06",
        product_id="cdn_usage", usage_type_name="Europe Bandwidth",
    )  # fmt: skip
    assert {r["unit"] for r in services["data"]} == {"gb"}


async def test_a_line_disappears_and_reappears(sandbox: SandboxClient) -> None:
    first = (await sandbox.fastly_json(SERVICE_USAGE, limit="1"))["data"][0]
    await sandbox.control(
        "POST",
        "events",
        [
            {"kind": "disappear", "provider": "fastly", "day": "2024-07-11", "until": "2024-07-13",
             "service": first["service_id"], "usage_type": first["usage_type"],
             "month": first["month"]},
            {"kind": "disappear", "provider": "akamai", "day": "2024-07-11", "until": "2024-07-13",
             "month": "2024-06", "usage_type": "Peak Mbps"},
        ],
    )  # fmt: skip

    async def visible() -> tuple[bool, bool, int]:
        body = await sandbox.fastly_json(SERVICE_USAGE)
        keys = {(r["service_id"], r["usage_type"], r["month"]) for r in body["data"]}
        stats = {s["statType"] for s in (await _periods(sandbox, "2024-06"))[0]["stats"]}
        fastly_key = (first["service_id"], first["usage_type"], first["month"])
        return fastly_key in keys, "Peak Mbps" in stats, body["meta"]["total"]

    assert await visible() == (True, True, 84)
    await _set_day(sandbox, "2024-07-11")
    assert await visible() == (False, False, 83)
    await _set_day(sandbox, "2024-07-13")
    assert await visible() == (True, True, 84)


async def test_a_finalized_month_reopens(sandbox: SandboxClient) -> None:
    await sandbox.control(
        "POST",
        "events",
        {"kind": "reopen", "provider": "akamai", "day": "2024-07-11", "until": "2024-07-20",
         "month": "2024-05", "product": "1-ABC012"},
    )  # fmt: skip
    statuses = []
    for day in ("2024-07-10", "2024-07-11", "2024-07-20"):
        await _set_day(sandbox, day)
        statuses.append((await _periods(sandbox, "2024-05"))[0]["dataStatus"])
    assert statuses == ["DATA_FINALIZED", "COLLECTING_DATA", "DATA_FINALIZED"]


async def test_a_usage_spike_multiplies_the_daily_rate(sandbox: SandboxClient) -> None:
    before = await _account(sandbox, "2024-07", "North America Bandwidth")
    daily = before["quantity"] / 10
    await sandbox.control(
        "POST",
        "events",
        {"kind": "spike", "provider": "fastly", "day": "2024-07-11", "month": "2024-07",
         "usage_type": "North America Bandwidth", "factor": "5"},
    )  # fmt: skip
    await _set_day(sandbox, "2024-07-12")
    after = await _account(sandbox, "2024-07", "North America Bandwidth")
    assert after["quantity"] == daily * 10 + daily * 5 * 2
    mtd = await sandbox.fastly_json("/billing/v3/invoices/month-to-date")
    item = next(
        i for i in mtd["transaction_line_items"] if i["product_name"] == "North America Bandwidth"
    )
    assert item["units"] == after["quantity"]


async def test_events_in_process(sandbox: SandboxClient) -> None:
    state = sandbox.server.state
    before = await _account(sandbox, "2024-06", "Europe Requests")
    state.add_events([{"kind": "restate", "provider": "fastly", "day": "2024-07-01",
                       "month": "2024-06", "factor": "2"}])  # fmt: skip
    assert (await _account(sandbox, "2024-06", "Europe Requests"))["quantity"] == 2 * before[
        "quantity"
    ]
    assert [e["kind"] for e in await sandbox.control("GET", "events")] == ["restate"]
    await sandbox.control("DELETE", "events")
    assert await _account(sandbox, "2024-06", "Europe Requests") == before


@pytest.mark.parametrize(
    "spec",
    [
        {"kind": "restate", "provider": "fastly"},
        {"kind": "melt", "provider": "fastly", "day": "2024-07-01"},
        {"kind": "restate", "provider": "gcore", "day": "2024-07-01"},
        {"kind": "decrease", "provider": "fastly", "day": "2024-07-01", "factor": "2"},
        {"kind": "spike", "provider": "fastly", "day": "2024-07-01", "factor": "-1"},
        {"kind": "unit_change", "provider": "akamai", "day": "2024-07-01"},
        {"kind": "reopen", "provider": "fastly", "day": "2024-07-01"},
        {"kind": "disappear", "provider": "akamai", "day": "2024-07-01", "service": "x"},
        {"kind": "disappear", "provider": "fastly", "day": "2024-07-05", "until": "2024-07-01"},
        {"kind": "restate", "provider": "fastly", "day": "2024-07-01", "month": "July"},
        {"kind": "restate", "provider": "fastly", "day": "2024-07-01", "flavour": "x"},
    ],
)
async def test_bad_events_are_refused(sandbox: SandboxClient, spec: dict[str, str]) -> None:
    url = f"{sandbox.server.base_url}/_sandbox/events"
    async with sandbox.session.post(url, json=spec) as resp:
        assert resp.status == 400
        assert (await resp.json())["error"]
    assert sandbox.server.state.events == []


async def test_the_schedule_instant_is_set_moved_and_reset(sandbox: SandboxClient) -> None:
    day = (await sandbox.control("GET", "clock"))["today"]
    assert await sandbox.control("GET", "clock") == {"today": day}  # none until set

    set_at = await sandbox.control("POST", "clock", {"now": "2024-07-10T06:00:00+00:00"})
    moved = await sandbox.control("POST", "clock", {"advance_seconds": 1.5})

    assert set_at == {"today": day, "now": "2024-07-10T06:00:00+00:00"}
    assert moved == {"today": day, "now": "2024-07-10T06:00:01.500000+00:00"}
    await sandbox.control("POST", "reset")
    assert await sandbox.control("GET", "clock") == {"today": day}


@pytest.mark.parametrize(
    ("body", "error"),
    [
        ({"advance_seconds": 6}, "no schedule instant yet"),
        ({"now": "2024-07-10T06:00:00"}, "needs a UTC offset"),
    ],
)
async def test_a_schedule_instant_that_cannot_be_set_is_refused(
    sandbox: SandboxClient, body: dict[str, Any], error: str
) -> None:
    url = f"{sandbox.server.base_url}/_sandbox/clock"
    async with sandbox.session.post(url, json=body) as response:
        assert response.status == 400
        assert error in (await response.json())["error"]
