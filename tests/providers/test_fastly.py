"""The Fastly client against the sandbox over loopback: endpoints, identity, status, paging."""

from __future__ import annotations

import logging
from collections import defaultdict
from datetime import date
from decimal import Decimal

import pytest
from aiohttp import web

from reconciler.domain import LineKey, LineStatus, Month, Provider, UsageLine
from reconciler.providers import fastly
from reconciler.providers.base import Coverage
from reconciler.sandbox import named_scenario

from .conftest import Sandbox, StartSandbox, collect

MAY, JUNE, JULY = Month(2024, 5), Month(2024, 6), Month(2024, 7)


def by_key(lines: list[UsageLine]) -> dict[LineKey, UsageLine]:
    keyed = {line.key: line for line in lines}
    assert len(keyed) == len(lines), "two lines share one identity"
    return keyed


async def test_pull_reads_every_endpoint_into_exact_lines(sandbox: Sandbox) -> None:
    provider = sandbox.fastly()
    lines, pages = await collect(provider, date(2024, 7, 10))

    account = [line for line in lines if line.service == ""]
    services = [line for line in lines if line.service != ""]
    # default scenario: 4 usage types, 3 services, months May..July.
    assert len(account) == 3 * 4
    assert len(services) == 3 * 3 * 4
    assert pages == 2  # one usage-metrics window, one service page
    assert provider.stats.lines == len(lines)
    assert provider.stats.api_calls == 3 == provider.stats.pages
    assert provider.stats.retries == 0
    assert sandbox.requests("fastly.invoices") == 1
    assert sandbox.requests("fastly.usage_metrics") == 1
    assert sandbox.requests("fastly.service_usage_metrics") == 1
    assert provider.coverage == Coverage(
        months=(MAY, JUNE, JULY), accounts=None, derived_statuses=True
    )

    first = account[0]
    assert (first.source, first.provider, first.account, first.service) == (
        "fastly-test",
        Provider.FASTLY,
        "",
        "",
    )
    assert (first.product, first.usage_type, first.region) == (
        "cdn_usage",
        "North America Bandwidth",
        "North America",
    )
    assert (first.period_start, first.period_end) == (date(2024, 5, 1), date(2024, 5, 31))
    assert first.unit == "GB" and first.billable is None
    assert first.updated_at is not None and first.updated_at.utcoffset() is not None
    assert all(isinstance(line.quantity, Decimal) for line in lines)
    assert all(isinstance(line.raw_quantity, Decimal) for line in lines)

    service = services[0]
    assert service.account == sandbox.state.scenario.fastly_customer_id
    assert service.service == sandbox.state.fastly.services[0].service_id
    assert service.service_name == "www.example.com"

    # The account line is the exact sum of its service lines (the sandbox's invariant).
    sums: dict[tuple[object, ...], Decimal] = defaultdict(Decimal)
    for line in services:
        sums[(line.month, line.product, line.usage_type, line.region)] += line.quantity
    for line in account:
        assert sums[(line.month, line.product, line.usage_type, line.region)] == line.quantity


async def test_month_status_follows_posted_invoices(sandbox: Sandbox) -> None:
    # finalize_after_days=15 would leave June collecting on 2024-07-10: the invoice rules.
    provider = sandbox.fastly(finalize_after_days=15)
    lines, _ = await collect(provider, date(2024, 7, 10))
    status = {line.month: line.status for line in lines}
    assert status == {
        MAY: LineStatus.FINALIZED,
        JUNE: LineStatus.FINALIZED,
        JULY: LineStatus.COLLECTING,
    }
    invoiced = {line.month for line in provider.invoice_lines}
    assert invoiced == {MAY, JUNE}

    # A day before July's invoice is posted (3 days after the month), July still collects.
    sandbox.state.set_today(date(2024, 8, 2))
    lines, _ = await collect(provider, date(2024, 8, 2))
    assert {line.month: line.status for line in lines}[JULY] is LineStatus.COLLECTING
    sandbox.state.set_today(date(2024, 8, 3))
    lines, _ = await collect(provider, date(2024, 8, 3))
    assert {line.month: line.status for line in lines}[JULY] is LineStatus.FINALIZED


async def test_invoice_lines_match_finalized_account_usage(sandbox: Sandbox) -> None:
    provider = sandbox.fastly()
    lines, _ = await collect(provider, date(2024, 7, 10))
    account = {
        (line.month, line.usage_type, line.region): line for line in lines if not line.service
    }
    assert len(provider.invoice_lines) == 2 * 4
    for item in provider.invoice_lines:
        assert item.source == "fastly-test"
        assert item.account == sandbox.state.scenario.fastly_customer_id
        assert item.currency == "USD"
        assert item.usage_type in ("bandwidth", "requests")
        assert isinstance(item.amount, Decimal)
        usage = account[(item.month, item.product_name, item.region)]
        assert usage.status is LineStatus.FINALIZED
        assert item.units == usage.quantity


async def test_forbidden_invoices_fall_back_to_days_after_month_end(
    sandbox: Sandbox, caplog: pytest.LogCaptureFixture
) -> None:
    body = {"msg": "Forbidden", "detail": "token lacks the billing scope"}
    sandbox.recorder.answers["/billing/v3/invoices"] = lambda: web.json_response(body, status=403)
    fastly._warned_no_invoices.discard("fastly-test")
    caplog.set_level(logging.WARNING)

    provider = sandbox.fastly(finalize_after_days=9)
    lines, _ = await collect(provider, date(2024, 7, 10))
    status = {line.month: line.status for line in lines}
    # June ended 2024-06-30: final from 2024-07-09 on with 9 days, from 2024-07-11 with 11.
    assert status == {
        MAY: LineStatus.FINALIZED,
        JUNE: LineStatus.FINALIZED,
        JULY: LineStatus.COLLECTING,
    }
    assert provider.invoice_lines == []
    provider = sandbox.fastly(finalize_after_days=11)
    lines, _ = await collect(provider, date(2024, 7, 10))
    assert {line.month: line.status for line in lines}[JUNE] is LineStatus.COLLECTING

    warnings = [r for r in caplog.records if "cannot read invoices" in r.getMessage()]
    assert len(warnings) == 1, "warned more than once"
    assert "token lacks the billing scope" in warnings[0].getMessage()


async def test_invoices_disabled_are_not_requested(sandbox: Sandbox) -> None:
    provider = sandbox.fastly(invoices=False, finalize_after_days=0)
    lines, _ = await collect(provider, date(2024, 7, 10))
    assert sandbox.requests("fastly.invoices") == 0
    assert {line.month: line.status for line in lines}[JUNE] is LineStatus.FINALIZED
    assert provider.invoice_lines == []


@pytest.mark.parametrize("limit", [1, 5, 7, 36, 10000])
async def test_service_pagination_gives_the_same_lines_at_any_limit(
    sandbox: Sandbox, limit: int
) -> None:
    reference, _ = await collect(sandbox.fastly(), date(2024, 7, 10))
    sandbox.state.stats.reset()
    sandbox.recorder.requests.clear()
    provider = sandbox.fastly(page_limit=limit, invoice_page_limit=1)
    lines, pages = await collect(provider, date(2024, 7, 10))
    assert by_key(lines) == by_key(reference)
    service_pages = -(-36 // limit)
    assert sandbox.requests("fastly.service_usage_metrics") == service_pages
    assert sandbox.requests("fastly.invoices") == 2  # two posted invoices, one per page
    assert pages == 1 + service_pages
    sent = [q for path, q in sandbox.recorder.requests if path.endswith("service-usage-metrics")]
    assert all(q["limit"] == str(limit) for q in sent)
    assert "cursor" not in sent[0] and all(q["cursor"] for q in sent[1:])


async def test_both_service_usage_shapes_give_the_same_lines(sandbox: Sandbox) -> None:
    current, _ = await collect(sandbox.fastly(page_limit=5), date(2024, 7, 10))
    sandbox.state.set_service_usage_shape("nested")
    nested, _ = await collect(sandbox.fastly(page_limit=5), date(2024, 7, 10))
    assert by_key(nested) == by_key(current)


async def test_nested_shape_details_take_what_they_lack_from_the_enclosing_object(
    sandbox: Sandbox,
) -> None:
    detail = {"service_id": "SVC1", "service_name": "one.example.com", "usage_units": 12.5}
    body = {
        "data": {
            "customer_id": "CUST",
            "start_time": "2024-06-01T00:00:00Z",
            "end_time": "2024-06-30T23:59:59Z",
            "usage_type": "North America Bandwidth",
            "unit": "GB",
            "details": [detail],
            "meta": {"next_cursor": None, "limit": 10000, "total": 1},
        }
    }
    answer = web.json_response(body)
    sandbox.recorder.answers["/billing/v3/service-usage-metrics"] = lambda: answer
    provider = sandbox.fastly(product_id="cdn_usage", usage_type_name="North America Bandwidth")
    lines, _ = await collect(provider, date(2024, 7, 10))
    (line,) = [line for line in lines if line.service]
    assert (line.account, line.service, line.service_name) == ("CUST", "SVC1", "one.example.com")
    assert (line.product, line.usage_type, line.unit, line.month) == (
        "cdn_usage",
        "North America Bandwidth",
        "GB",
        JUNE,
    )
    assert line.quantity == Decimal("12.5") and str(line.quantity) == "12.5"


async def test_product_filter_is_sent_and_narrows_service_lines(sandbox: Sandbox) -> None:
    provider = sandbox.fastly(product_id="cdn_usage", usage_type_name="Europe Requests")
    lines, _ = await collect(provider, date(2024, 7, 10))
    services = [line for line in lines if line.service]
    assert len(services) == 3 * 3
    assert {line.usage_type for line in services} == {"Europe Requests"}
    assert len([line for line in lines if not line.service]) == 3 * 4
    (query,) = [q for p, q in sandbox.recorder.requests if p.endswith("service-usage-metrics")]
    assert query["product_id"] == "cdn_usage"
    assert query["usage_type_name"] == "Europe Requests"


async def test_long_lookback_is_split_into_three_month_windows(sandbox: Sandbox) -> None:
    provider = sandbox.fastly(lookback_months=7, services=False)
    lines, pages = await collect(provider, date(2024, 7, 10))
    windows = [
        (q["start_month"], q["end_month"])
        for p, q in sandbox.recorder.requests
        if p == "/billing/v3/usage-metrics"
    ]
    assert windows == [("2024-01", "2024-03"), ("2024-04", "2024-06"), ("2024-07", "2024-07")]
    assert pages == 3
    assert sorted({line.month for line in lines}) == Month(2024, 1).range_to(JULY)
    assert all(line.service == "" for line in lines)
    assert sandbox.requests("fastly.service_usage_metrics") == 0
    assert provider.coverage.accounts == frozenset({""})  # service lines were not covered


async def test_identity_is_stable_across_runs(start_sandbox: StartSandbox) -> None:
    one = await start_sandbox(named_scenario("default"))
    two = await start_sandbox(named_scenario("default"))
    first, _ = await collect(one.fastly(page_limit=7), date(2024, 7, 10))
    second, _ = await collect(two.fastly(page_limit=11), date(2024, 7, 10))
    assert [line.key.digest for line in first] == [line.key.digest for line in second]


async def test_coverage_is_unknown_until_a_pull_finishes(sandbox: Sandbox) -> None:
    provider = sandbox.fastly()
    with pytest.raises(RuntimeError, match="no pull has finished"):
        _ = provider.coverage
    sandbox.add_faults({"kind": "status", "status": 503, "endpoint": "fastly.usage_metrics"})
    with pytest.raises(Exception, match="gave up"):
        await collect(provider, date(2024, 7, 10))
    with pytest.raises(RuntimeError):
        _ = provider.invoice_lines
