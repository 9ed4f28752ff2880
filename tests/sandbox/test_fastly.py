"""Fastly endpoints: shapes from PROVIDERS.md and the seed, auth, validation, consistency."""

from __future__ import annotations

import re
from collections import defaultdict
from decimal import Decimal
from typing import Any

import pytest

from reconciler.domain import Month
from reconciler.sandbox import Scenario
from tests.sandbox.conftest import SandboxClient, StartSandbox, loads

USAGE = "/billing/v3/usage-metrics"
SERVICE_USAGE = "/billing/v3/service-usage-metrics"
INVOICES = "/billing/v3/invoices"
MTD = "/billing/v3/invoices/month-to-date"

ACCOUNT_FIELDS = [
    "month",
    "usage_type",
    "name",
    "region",
    "unit",
    "quantity",
    "raw_quantity",
    "product_id",
    "last_updated_at",
]
SERVICE_FIELDS = [
    "customer_id",
    "service_id",
    "service_name",
    "month",
    "product_id",
    "usage_type",
    "name",
    "region",
    "unit",
    "quantity",
    "raw_quantity",
]
INVOICE_FIELDS = [
    "customer_id",
    "invoice_id",
    "invoice_posted_on",
    "billing_start_date",
    "billing_end_date",
    "statement_number",
    "currency_code",
    "monthly_transaction_amount",
    "transaction_line_items",
]
LINE_ITEM_FIELDS = [
    "description",
    "amount",
    "credit_coupon_code",
    "rate",
    "units",
    "product_name",
    "product_group",
    "product_line",
    "region",
    "usage_type",
]
ISO_DATETIME = re.compile(r"^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}Z$")


async def test_usage_metrics_shape(sandbox: SandboxClient) -> None:
    body = await sandbox.fastly_json(USAGE, start_month="2024-05", end_month="2024-07")
    assert set(body) <= {"data", "meta"}
    records = body["data"]
    assert len(records) == 3 * 4
    for record in records:
        assert list(record) == ACCOUNT_FIELDS
        assert record["month"] in ("2024-05", "2024-06", "2024-07")
        assert record["unit"] in ("unit", "GB", "gb")
        assert record["name"] == record["usage_type"]
        assert type(record["quantity"]) in (int, Decimal) and record["quantity"] > 0
        assert isinstance(record["raw_quantity"], int)
        assert ISO_DATETIME.match(record["last_updated_at"])
    requests = next(r for r in records if r["usage_type"] == "North America Requests")
    assert (requests["unit"], requests["product_id"]) == ("unit", "cdn_usage")
    # quantity is in units of 10,000 requests, the raw measure in requests
    assert requests["raw_quantity"] == requests["quantity"] * 10_000
    bandwidth = next(r for r in records if r["usage_type"] == "North America Bandwidth")
    assert bandwidth["unit"] == "GB"
    assert abs(bandwidth["raw_quantity"] - bandwidth["quantity"] * 2**30) <= 1


async def test_numbers_are_exact_json_number_tokens(sandbox: SandboxClient) -> None:
    status, body, headers = await sandbox.fastly(USAGE, start_month="2024-06", end_month="2024-06")
    assert status == 200 and headers["Content-Type"].startswith("application/json")
    quantities = re.findall(rb'"quantity":([^,}]*)', body)
    assert quantities
    for token in quantities:
        assert re.fullmatch(rb"\d+(\.\d*[1-9])?", token), token


async def test_account_lines_equal_the_sum_of_service_lines(sandbox: SandboxClient) -> None:
    records, _ = await sandbox.walk_service_usage(1000)
    sums: defaultdict[tuple[str, str], Decimal] = defaultdict(Decimal)
    for r in records:
        sums[(r["month"], r["usage_type"])] += r["quantity"]
    for start, end in (("2024-01", "2024-03"), ("2024-04", "2024-06"), ("2024-07", "2024-07")):
        body = await sandbox.fastly_json(USAGE, start_month=start, end_month=end)
        for account in body["data"]:
            assert account["quantity"] == sums[(account["month"], account["usage_type"])]


async def test_service_usage_current_shape(sandbox: SandboxClient) -> None:
    body = await sandbox.fastly_json(SERVICE_USAGE)
    assert list(body) == ["data", "meta"]
    assert set(body["meta"]) == {"next_cursor", "limit", "sort", "total"}
    assert body["meta"]["limit"] == 1000 and body["meta"]["sort"] == "month"
    assert body["meta"]["total"] == 7 * 3 * 4 == len(body["data"])
    assert body["meta"]["next_cursor"] == ""
    for record in body["data"]:
        assert list(record) == SERVICE_FIELDS
        assert record["customer_id"] == "x4xCwxxJxGCx123Rx5xTx"
        assert re.fullmatch(r"[0-9A-Za-z]{22}", record["service_id"])
        assert record["quantity"] > 0
    assert [r["month"] for r in body["data"]] == sorted(r["month"] for r in body["data"])


async def test_service_usage_filters(sandbox: SandboxClient) -> None:
    first = (await sandbox.fastly_json(SERVICE_USAGE))["data"][0]
    body = await sandbox.fastly_json(
        SERVICE_USAGE,
        product_id="cdn_usage",
        usage_type_name="Europe Requests",
        service=first["service_id"],
        start_month="2024-02",
        end_month="2024-04",
    )
    assert [(r["month"], r["usage_type"]) for r in body["data"]] == [
        ("2024-02", "Europe Requests"),
        ("2024-03", "Europe Requests"),
        ("2024-04", "Europe Requests"),
    ]
    assert {r["service_id"] for r in body["data"]} == {first["service_id"]}
    assert body["meta"]["total"] == 3


async def test_service_usage_older_nested_shape(sandbox: SandboxClient) -> None:
    current = await sandbox.fastly_json(SERVICE_USAGE, limit="5")
    await sandbox.control("POST", "options", {"fastly_service_usage_shape": "nested"})
    body = await sandbox.fastly_json(SERVICE_USAGE, limit="5")
    data = body["data"]
    assert isinstance(data, dict)
    for key in ("customer_id", "start_time", "end_time", "usage_type", "unit", "details", "meta"):
        assert key in data
    assert data["meta"] == current["meta"]
    assert [d["usage_units"] for d in data["details"]] == [r["quantity"] for r in current["data"]]
    for detail, record in zip(data["details"], current["data"], strict=True):
        assert detail["service_id"] == record["service_id"]
        assert detail["service_name"] == record["service_name"]
        assert detail["month"] == record["month"]


async def test_invoices_shape_and_order(sandbox: SandboxClient) -> None:
    body = await sandbox.fastly_json(INVOICES)
    invoices = body["data"]
    assert [i["billing_start_date"][:7] for i in invoices] == [
        "2024-06",
        "2024-05",
        "2024-04",
        "2024-03",
        "2024-02",
        "2024-01",
    ]
    assert body["meta"]["total"] == 6 and body["meta"]["limit"] == 100
    assert "next_cursor" not in body["meta"]
    for invoice in invoices:
        assert list(invoice) == INVOICE_FIELDS
        assert invoice["invoice_id"].isdigit()
        assert invoice["currency_code"] == "USD"
        for key in ("invoice_posted_on", "billing_start_date", "billing_end_date"):
            assert ISO_DATETIME.match(invoice[key])
        items = invoice["transaction_line_items"]
        assert len(items) == 4
        for item in items:
            assert list(item) == LINE_ITEM_FIELDS
            assert item["amount"] == (item["units"] * item["rate"]).quantize(Decimal("0.01"))
            assert item["usage_type"] in ("bandwidth", "requests")
        assert invoice["monthly_transaction_amount"] == sum(i["amount"] for i in items)


async def test_invoice_units_match_usage(sandbox: SandboxClient) -> None:
    invoices = (await sandbox.fastly_json(INVOICES, billing_start_date="2024-04-01"))["data"]
    assert [i["billing_start_date"][:7] for i in invoices] == ["2024-06", "2024-05", "2024-04"]
    usage = await sandbox.fastly_json(USAGE, start_month="2024-04", end_month="2024-06")
    quantities = {(r["month"], r["usage_type"]): r["quantity"] for r in usage["data"]}
    for invoice in invoices:
        month = invoice["billing_start_date"][:7]
        for item in invoice["transaction_line_items"]:
            assert item["units"] == quantities[(month, item["product_name"])]


async def test_invoices_paginate(sandbox: SandboxClient) -> None:
    first = await sandbox.fastly_json(INVOICES, limit="4")
    assert len(first["data"]) == 4 and first["meta"]["next_cursor"]
    second = await sandbox.fastly_json(INVOICES, limit="4", cursor=first["meta"]["next_cursor"])
    assert len(second["data"]) == 2 and "next_cursor" not in second["meta"]


async def test_month_to_date(sandbox: SandboxClient) -> None:
    body = await sandbox.fastly_json(MTD)
    assert body["billing_start_date"] == "2024-07-01T00:00:00Z"
    assert isinstance(body["monthly_transaction_amount"], str)
    items = body["transaction_line_items"]
    assert items and all("credit_coupon_code" not in i for i in items)
    assert Decimal(body["monthly_transaction_amount"]) == sum(i["amount"] for i in items)
    usage = await sandbox.fastly_json(USAGE, start_month="2024-07", end_month="2024-07")
    assert [i["units"] for i in items] == [r["quantity"] for r in usage["data"]]


@pytest.mark.parametrize("headers", [{}, {"Fastly-Key": "wrong"}])
async def test_bad_token_is_a_401_with_a_fastly_error(
    sandbox: SandboxClient, headers: dict[str, str]
) -> None:
    for path in (USAGE + "?start_month=2024-06&end_month=2024-06", SERVICE_USAGE, INVOICES, MTD):
        status, body, _ = await sandbox.get(sandbox.url(path), headers)
        assert status == 401
        error = loads(body)
        assert error["msg"] == "Provided credentials are missing or invalid"
        assert error["detail"]


PROBLEM = "problem"
ERRORS = "errors"


@pytest.mark.parametrize(
    ("path", "params", "shape", "detail"),
    [
        (USAGE, {"end_month": "2024-06"}, PROBLEM, "start_month is required"),
        (USAGE, {"start_month": "2024-6", "end_month": "2024-06"}, PROBLEM, "YYYY-MM"),
        (USAGE, {"start_month": "2024-13", "end_month": "2024-13"}, PROBLEM, "not a valid"),
        (USAGE, {"start_month": "2024-06", "end_month": "2024-05"}, PROBLEM, "after"),
        (USAGE, {"start_month": "2024-03", "end_month": "2024-06"}, PROBLEM, "at most 3 months"),
        (SERVICE_USAGE, {"limit": "abc"}, PROBLEM, "limit"),
        (SERVICE_USAGE, {"limit": "10001"}, PROBLEM, "limit"),
        (SERVICE_USAGE, {"limit": "0"}, PROBLEM, "limit"),
        (SERVICE_USAGE, {"cursor": "%%%"}, PROBLEM, "cursor"),
        (SERVICE_USAGE, {"product_id": "cdn_usage"}, PROBLEM, "together"),
        (SERVICE_USAGE, {"start_month": "2024-05", "end_month": "2024-01"}, PROBLEM, "after"),
        (SERVICE_USAGE, {"start_month": "May"}, PROBLEM, "YYYY-MM"),
        (INVOICES, {"limit": "201"}, ERRORS, "limit"),
        (INVOICES, {"billing_start_date": "2024-13-01"}, ERRORS, "YYYY-MM-DD"),
        (
            INVOICES,
            {"billing_start_date": "2024-05-01", "billing_end_date": "2024-04-01"},
            ERRORS,
            "after",
        ),
    ],
)
async def test_bad_parameters_are_400s(
    sandbox: SandboxClient, path: str, params: dict[str, str], shape: str, detail: str
) -> None:
    status, body, headers = await sandbox.fastly(path, **params)
    assert status == 400
    error = loads(body)
    if shape == PROBLEM:
        assert headers["Content-Type"].startswith("application/problem+json")
        assert set(error) == {"type", "title", "detail", "status"} and error["status"] == 400
        assert detail in error["detail"]
    else:
        (entry,) = error["errors"]
        assert set(entry) == {"code", "detail", "id", "status", "title"}
        assert detail in entry["detail"] and entry["status"] == "400"


async def test_limits_at_the_maximum_are_accepted(sandbox: SandboxClient) -> None:
    assert (await sandbox.fastly(SERVICE_USAGE, limit="10000"))[0] == 200
    assert (await sandbox.fastly(INVOICES, limit="200"))[0] == 200
    assert (await sandbox.fastly(USAGE, start_month="2024-04", end_month="2024-06"))[0] == 200


async def test_retention_and_future_months(start_sandbox: StartSandbox) -> None:
    client = await start_sandbox(Scenario(first_month=Month(2022, 1)))
    old = await client.fastly_json(USAGE, start_month="2022-12", end_month="2023-02")
    assert {r["month"] for r in old["data"]} == {"2023-02"}  # 18 months back from 2024-07
    future = await client.fastly_json(USAGE, start_month="2024-08", end_month="2024-10")
    assert future["data"] == []
    services = await client.fastly_json(SERVICE_USAGE, limit="10000")
    months: set[Any] = {r["month"] for r in services["data"]}
    assert min(months) == "2023-02" and max(months) == "2024-07" and len(months) == 18
