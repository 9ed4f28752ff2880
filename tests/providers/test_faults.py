"""Every sandbox fault: survived by retrying, or a clean failure that says what went wrong."""

from __future__ import annotations

import logging
import time
from datetime import date
from typing import Any

import pytest
from aiohttp import web

from reconciler.domain import Month
from reconciler.errors import BadProviderDataError, ProviderError
from reconciler.providers.base import UsageProvider
from reconciler.sandbox import named_scenario

from .conftest import Sandbox, StartSandbox, collect

TODAY = date(2024, 7, 10)
SERVICE = "fastly.service_usage_metrics"
SUMMARY = "akamai.monthly_summary"


def provider_for(sandbox: Sandbox, endpoint: str, **overrides: Any) -> UsageProvider:
    if endpoint.startswith("akamai"):
        return sandbox.akamai(contracts=["K-0N7RAK7"], **overrides)
    return sandbox.fastly(page_limit=10, **overrides)


TRANSIENT = [
    pytest.param({"kind": "status", "status": 429}, id="429-seconds"),
    pytest.param({"kind": "status", "status": 429, "retry_after": "date"}, id="429-date"),
    pytest.param({"kind": "status", "status": 500}, id="500"),
    pytest.param({"kind": "status", "status": 502}, id="502"),
    pytest.param({"kind": "status", "status": 503}, id="503"),
    pytest.param({"kind": "status", "status": 504}, id="504"),
    pytest.param({"kind": "status", "status": 202}, id="202"),
    pytest.param({"kind": "hang", "hang_s": 30}, id="hang"),
]


@pytest.mark.parametrize("endpoint", [SERVICE, SUMMARY])
@pytest.mark.parametrize("fault", TRANSIENT)
async def test_transient_faults_are_survived_by_retrying(
    start_sandbox: StartSandbox, fault: dict[str, Any], endpoint: str
) -> None:
    sandbox = await start_sandbox(named_scenario("default"))
    clean, _ = await collect(provider_for(sandbox, endpoint), TODAY)

    sandbox.add_faults({**fault, "endpoint": endpoint, "count": 2})
    # Only a hung request needs a short timeout; every other request has the usual 5 s, so a
    # busy machine's slow answer is not taken for a fault.
    provider = provider_for(sandbox, endpoint, timeout_s=0.3 if fault["kind"] == "hang" else 5.0)
    lines, _ = await collect(provider, TODAY)
    assert set(lines) == set(clean) and len(lines) == len(clean)
    assert provider.stats.retries == 2


@pytest.mark.parametrize("fault", TRANSIENT[:-1])
async def test_transient_faults_that_persist_fail_after_max_retries(
    sandbox: Sandbox, fault: dict[str, Any]
) -> None:
    sandbox.add_faults({**fault, "endpoint": SERVICE})
    provider = sandbox.fastly(max_retries=2)
    with pytest.raises(ProviderError) as caught:
        await collect(provider, TODAY)
    error = caught.value
    assert type(error) is ProviderError
    assert error.status == fault["status"]
    assert str(error).startswith(
        f"source 'fastly-test': /billing/v3/service-usage-metrics (HTTP {fault['status']}): "
        "gave up after 3 attempts: "
    )
    assert provider.stats.retries == 2
    assert sandbox.requests(SERVICE) == 3


async def test_a_request_that_hangs_every_time_times_out(sandbox: Sandbox) -> None:
    sandbox.add_faults({"kind": "hang", "hang_s": 30, "endpoint": SUMMARY})
    provider = sandbox.akamai(contracts=["K-0N7RAK7"], timeout_s=0.2, max_retries=1)
    with pytest.raises(ProviderError, match=r"gave up after 2 attempts: timed out after 0.2s"):
        await collect(provider, TODAY)


async def test_latency_is_waited_for_not_retried(sandbox: Sandbox) -> None:
    sandbox.add_faults({"kind": "latency", "latency_ms": 50, "endpoint": "fastly"})
    provider = sandbox.fastly()
    lines, _ = await collect(provider, TODAY)
    assert len(lines) == 48 and provider.stats.retries == 0


async def test_retry_after_is_honoured_and_logged(
    sandbox: Sandbox, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.WARNING, logger="reconciler.providers.http")
    sandbox.add_faults({"kind": "status", "status": 429, "endpoint": SERVICE, "count": 1})
    await collect(sandbox.fastly(), TODAY)
    (record,) = caplog.records
    message = record.getMessage()
    assert "HTTP 429: Too Many Requests" in message
    # Retry-After: 1 is capped at retry_cap_s (50 ms in tests).
    assert "retry 1/3 in 0.05s (Retry-After)" in message
    assert "sandbox-fastly-token" not in caplog.text


BAD_DATA = [
    pytest.param({"kind": "html"}, "expected JSON, got text/html", id="html"),
    pytest.param({"kind": "truncate"}, "response is not valid JSON", id="truncate"),
    pytest.param({"kind": "wrong_type"}, "record 0 (month 2024-05, service ", id="wrong_type"),
    pytest.param({"kind": "wrong_type", "value": {"amount": 1}}, "is not a number", id="object"),
    pytest.param({"kind": "nan"}, "quantity is not a finite number (got NaN)", id="nan"),
    pytest.param({"kind": "negative"}, "quantity is negative (got -", id="negative"),
    pytest.param({"kind": "lie_total", "total": 3}, "more than meta.total 3", id="lie_total"),
]


@pytest.mark.parametrize(("fault", "expected"), BAD_DATA)
async def test_bad_fastly_data_fails_the_pull_and_names_it(
    sandbox: Sandbox, fault: dict[str, Any], expected: str
) -> None:
    sandbox.add_faults({**fault, "endpoint": SERVICE})
    provider = sandbox.fastly(page_limit=10)
    with pytest.raises(BadProviderDataError) as caught:
        await collect(provider, TODAY)
    message = str(caught.value)
    assert message.startswith("source 'fastly-test': /billing/v3/service-usage-metrics: ")
    assert expected in message
    assert provider.stats.retries == 0, "bad data is not retried"
    assert sandbox.server.fastly_token not in message


async def test_wrong_type_names_record_field_and_value(sandbox: Sandbox) -> None:
    sandbox.add_faults({"kind": "wrong_type", "endpoint": SERVICE, "count": 1})
    service_id = sandbox.state.fastly.services[0].service_id
    with pytest.raises(BadProviderDataError) as caught:
        await collect(sandbox.fastly(), TODAY)
    assert str(caught.value) == (
        "source 'fastly-test': /billing/v3/service-usage-metrics: page 1 record 0 "
        f"(month 2024-05, service {service_id}, product cdn_usage, "
        "usage type North America Bandwidth, region North America): "
        'quantity is not a number (got "abc")'
    )


async def test_repeated_cursor_stops_the_pull(sandbox: Sandbox) -> None:
    sandbox.add_faults({"kind": "repeat_cursor", "endpoint": SERVICE, "count": 1})
    provider = sandbox.fastly(page_limit=10)
    with pytest.raises(BadProviderDataError, match="was already used"):
        await collect(provider, TODAY)
    assert sandbox.requests(SERVICE) == 2


async def test_more_records_than_meta_total_stop_the_pull(sandbox: Sandbox) -> None:
    # Every page claims 25 records in all: the third page of 10 brings 30.
    sandbox.add_faults({"kind": "lie_total", "total": 25, "endpoint": SERVICE})
    with pytest.raises(BadProviderDataError, match=r"more than meta.total 25"):
        await collect(sandbox.fastly(page_limit=10), TODAY)
    assert sandbox.requests(SERVICE) == 3


AKAMAI_BAD_DATA = [
    pytest.param({"kind": "html"}, "expected JSON, got text/html", id="html"),
    pytest.param({"kind": "truncate"}, "response is not valid JSON", id="truncate"),
    pytest.param({"kind": "wrong_type"}, 'value is not a number (got "abc")', id="wrong_type"),
    pytest.param({"kind": "nan"}, "value is not a finite number (got NaN)", id="nan"),
    pytest.param({"kind": "negative"}, "value is negative", id="negative"),
    pytest.param({"kind": "unknown_status"}, "dataStatus", id="unknown_status"),
]


@pytest.mark.parametrize(("fault", "expected"), AKAMAI_BAD_DATA)
async def test_bad_akamai_data_fails_the_pull_and_names_it(
    sandbox: Sandbox, fault: dict[str, Any], expected: str
) -> None:
    sandbox.add_faults({**fault, "endpoint": SUMMARY, "count": 1})
    provider = sandbox.akamai(contracts=["K-0N7RAK7"], products=["1-7KLGH"])
    with pytest.raises(BadProviderDataError) as caught:
        await collect(provider, TODAY)
    message = str(caught.value)
    assert message.startswith(
        "source 'akamai-test': /billing/v1/contracts/K-0N7RAK7/products/1-7KLGH/usage/"
        "monthly-summary: "
    )
    assert expected in message
    if fault["kind"] not in ("html", "truncate"):
        assert "contract K-0N7RAK7 product 1-7KLGH usage period 0 (month 2024-05" in message


async def test_faults_at_random_are_survived_with_identical_lines(sandbox: Sandbox) -> None:
    clean, _ = await collect(sandbox.fastly(page_limit=4), TODAY)
    sandbox.add_faults(
        {"kind": "status", "status": 503, "rate": 0.3},
        {"kind": "status", "status": 429, "rate": 0.2},
    )
    provider = sandbox.fastly(page_limit=4, max_retries=20)
    lines, _ = await collect(provider, TODAY)
    assert set(lines) == set(clean) and len(lines) == len(clean)
    assert provider.stats.retries > 0


async def test_connection_refused_is_retried_then_fails(sandbox: Sandbox) -> None:
    port = sandbox.server.port
    await sandbox.server.stop()
    provider = sandbox.fastly(base_url=f"http://127.0.0.1:{port}", max_retries=1)
    with pytest.raises(ProviderError) as caught:
        await collect(provider, TODAY)
    assert "gave up after 2 attempts: ClientConnectorError" in str(caught.value)
    assert provider.stats.api_calls == 2


CLIENT_ERRORS = [
    pytest.param(
        400,
        {
            "type": "https://api.fastly.com/errors/400",
            "title": "Bad Request",
            "detail": "start_month is required",
            "status": 400,
        },
        "Bad Request; start_month is required",
        id="problem+json",
    ),
    pytest.param(
        400,
        {
            "errors": [
                {
                    "code": "invalid_parameter",
                    "detail": "limit must be 1 to 200",
                    "id": "7",
                    "status": "400",
                    "title": "Bad Request",
                }
            ]
        },
        "Bad Request: limit must be 1 to 200 (invalid_parameter)",
        id="errors-list",
    ),
    pytest.param(
        404,
        {"msg": "Record not found", "detail": "no such customer"},
        "Record not found; no such customer",
        id="legacy-404",
    ),
]


@pytest.mark.parametrize(("status", "body", "expected"), CLIENT_ERRORS)
async def test_client_errors_fail_at_once_with_the_providers_words(
    sandbox: Sandbox, status: int, body: dict[str, Any], expected: str
) -> None:
    answer = web.json_response(body, status=status)
    sandbox.recorder.answers["/billing/v3/usage-metrics"] = lambda: answer
    provider = sandbox.fastly()
    with pytest.raises(ProviderError) as caught:
        await collect(provider, TODAY)
    assert str(caught.value) == (
        f"source 'fastly-test': /billing/v3/usage-metrics (HTTP {status}): {expected}"
    )
    assert provider.stats.retries == 0


async def test_rate_limit_reset_is_waited_for_without_retry_after(
    sandbox: Sandbox, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.WARNING, logger="reconciler.providers.http")
    answers = sandbox.recorder.answers

    def limited() -> web.Response:
        del answers["/billing/v3/usage-metrics"]  # once
        reset = str(int(time.time()) + 30)
        headers = {"Fastly-RateLimit-Remaining": "0", "Fastly-RateLimit-Reset": reset}
        return web.json_response({"msg": "Too many requests"}, status=429, headers=headers)

    answers["/billing/v3/usage-metrics"] = limited
    provider = sandbox.fastly()
    lines, _ = await collect(provider, TODAY)
    assert lines and provider.stats.retries == 1
    (record,) = caplog.records
    assert "retry 1/3 in 0.05s (Fastly-RateLimit-Reset)" in record.getMessage()  # capped


async def test_a_contract_without_products_is_a_complete_empty_pull(sandbox: Sandbox) -> None:
    # Months before the scenario's first one: no product had usage.
    provider = sandbox.akamai(lookback_months=2)
    lines, pages = await collect(provider, date(2023, 6, 15))
    assert (lines, pages) == ([], 0)
    assert sandbox.requests("akamai.products") == 1
    assert sandbox.requests("akamai.monthly_summary") == 0
    assert provider.coverage.months[-1] == Month(2023, 6)
