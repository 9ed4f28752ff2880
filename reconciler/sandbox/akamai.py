"""Akamai routes: Billing API v1 (products, monthly summaries: a contract's product's, per CP
code, a reporting group's) and Contract API v1 (discovery).

Every request must carry a valid EdgeGrid ``Authorization`` header, checked against the
request exactly as received (scheme, ``Host``, raw path and query, body) and the real clock;
a failure is the gateway's 401 ``pep-authn/deny`` problem. ``accountSwitchKey`` is accepted
on every route and changes nothing. ``start`` is inclusive and ``end`` exclusive
(``start=2020-07&end=2020-09`` covers July and August); months older than the retention
period (18 months) or in the future have no data.
"""

from __future__ import annotations

import re
from datetime import UTC, datetime
from typing import Any

from aiohttp import web

from reconciler.domain import Month, Provider
from reconciler.providers.edgegrid import EdgeGridVerificationError, verify_authorization
from reconciler.sandbox.akamai_cp_codes import by_cp_code as by_cp_code_periods
from reconciler.sandbox.akamai_cp_codes import cp_codes
from reconciler.sandbox.akamai_reporting_groups import group_periods, reporting_groups
from reconciler.sandbox.catalog import AkamaiProduct
from reconciler.sandbox.faults import PayloadView
from reconciler.sandbox.responses import (
    akamai_auth_denied,
    akamai_billing_error,
    contract_api_error,
    json_response,
)
from reconciler.sandbox.state import STATE_KEY, SandboxState

_MONTH = re.compile(r"^[0-9]{4}-[0-9]{2}$")


class InvalidField(ValueError):
    """A query parameter the Billing API refuses with a 400."""


async def check_signature(request: web.Request, state: SandboxState) -> web.Response | None:
    """None if the EdgeGrid signature verifies, else the gateway's 401."""
    value = request.headers.get("Authorization")
    if not value:
        return akamai_auth_denied(request, "missing authorization header")
    creds = state.credentials
    try:
        verify_authorization(
            value,
            method=request.method,
            url=f"{request.scheme}://{request.host}{request.raw_path}",
            body=await request.read(),
            lookup_secret=creds.lookup_secret,
            now=datetime.now(UTC),
            max_body=creds.max_body,
        )
    except EdgeGridVerificationError as e:
        return akamai_auth_denied(request, e.reason)
    return None


def _month(request: web.Request, name: str) -> Month:
    text = request.query.get(name)
    if not text:
        raise InvalidField(f"Field '{name}' is required (YYYY-MM)")
    if not _MONTH.match(text):
        raise InvalidField(f"Field '{name}' is invalid: expected an ISO 8601 month YYYY-MM")
    try:
        return Month.parse(text)
    except ValueError:
        raise InvalidField(f"Field '{name}' is invalid: no such month") from None


def _range(request: web.Request) -> tuple[Month, Month]:
    start, end = _month(request, "start"), _month(request, "end")
    if end <= start:
        raise InvalidField("Field 'end' is invalid: it must be after 'start' (end is exclusive)")
    return start, end


def _request_date(state: SandboxState) -> str:
    return f"{state.today.isoformat()}T00:00:00Z"


async def products(request: web.Request) -> web.Response:
    state = request.app[STATE_KEY]
    contract = state.akamai.contracts.get(request.match_info["contractId"])
    if contract is None:
        return akamai_billing_error(request, 404, "Not Found", "Contract not found")
    try:
        start, end = _range(request)
    except InvalidField as e:
        return akamai_billing_error(request, 400, "Bad Request", str(e))
    periods = [
        {
            "month": str(month),
            "usageProducts": [
                {"productId": p.product_id, "productName": p.name} for p in contract.products
            ],
        }
        for month in state.akamai.months_in(start, end, state.today)
    ]
    body = {
        "accountId": state.scenario.akamai_account_id,
        "contractId": contract.contract_id,
        "start": str(start),
        "end": str(end),
        "requestDate": _request_date(state),
        "usagePeriods": periods,
    }
    return json_response(request, body)


async def monthly_summary(request: web.Request) -> web.Response:
    return _summary(request, by_cp_code=False)


async def monthly_summary_by_cp_code(request: web.Request) -> web.Response:
    return _summary(request, by_cp_code=True)


def _summary(request: web.Request, *, by_cp_code: bool) -> web.Response:
    state = request.app[STATE_KEY]
    contract = state.akamai.contracts.get(request.match_info["contractId"])
    if contract is None:
        return akamai_billing_error(request, 404, "Not Found", "Contract not found")
    product = contract.product(request.match_info["productId"])
    if product is None:
        return akamai_billing_error(request, 404, "Not Found", "Product not found on contract")
    try:
        start, end = _range(request)
    except InvalidField as e:
        return akamai_billing_error(request, 400, "Bad Request", str(e))
    periods = _periods(state, contract.contract_id, product, start, end)
    stats = [stat for period in periods for stat in period["stats"]]
    if by_cp_code:
        codes = cp_codes(state.scenario.seed, contract.contract_id, product)
        periods = by_cp_code_periods(periods, codes)
        stats = [s for p in periods for entry in p["cpCodeStats"] for s in entry["stats"]]
    body = {
        "accountId": state.scenario.akamai_account_id,
        "contractId": contract.contract_id,
        "end": str(end),
        "productId": product.product_id,
        "productName": product.name,
        "requestDate": _request_date(state),
        "start": str(start),
        "usagePeriods": periods,
    }
    return json_response(request, body, PayloadView(stats, "value", periods=periods))


def _periods(
    state: SandboxState, contract_id: str, product: AkamaiProduct, start: Month, end: Month
) -> list[dict[str, Any]]:
    events = state.events_for(Provider.AKAMAI)
    periods = []
    for month in state.akamai.months_in(start, end, state.today):
        periods.extend(state.akamai.periods(contract_id, product, month, state.today, events))
    return periods


async def reporting_group_summary(request: web.Request) -> web.Response:
    """A reporting group's monthly summary of a product: empty when the group's contract
    does not have the product."""
    state = request.app[STATE_KEY]
    group = request.match_info["reportingGroupId"]
    found = reporting_groups(state.scenario.seed, list(state.akamai.contracts)).get(group)
    if found is None:
        return akamai_billing_error(request, 404, "Not Found", "Reporting group not found")
    contract_id, share = found
    product_id = request.match_info["productId"]
    product = state.akamai.contracts[contract_id].product(product_id)
    try:
        start, end = _range(request)
    except InvalidField as e:
        return akamai_billing_error(request, 400, "Bad Request", str(e))
    periods: list[dict[str, Any]] = []
    if product is not None:
        periods = group_periods(_periods(state, contract_id, product, start, end), share)
    body = {
        "accountId": state.scenario.akamai_account_id,
        "contractId": contract_id,
        "end": str(end),
        "productId": product_id,
        "reportingGroupId": int(group),
        "requestDate": _request_date(state),
        "start": str(start),
        "usagePeriods": periods,
    }
    stats = [stat for period in periods for stat in period["stats"]]
    return json_response(request, body, PayloadView(stats, "value", periods=periods))


async def contract_identifiers(request: web.Request) -> web.Response:
    state = request.app[STATE_KEY]
    depth = request.query.get("depth", "TOP")
    if depth not in ("TOP", "ALL"):
        problem = ("depth", "depth must be TOP or ALL")
        return contract_api_error(request, 400, "Erroneous data input.", problem)
    return json_response(request, list(state.akamai.contracts))


async def product_summaries(request: web.Request) -> web.Response:
    state = request.app[STATE_KEY]
    contract = state.akamai.contracts.get(request.match_info["contractId"])
    if contract is None:
        return contract_api_error(request, 404, "Resource not found.")
    body = {
        "products": {
            "contractId": contract.contract_id,
            "marketing-products": state.akamai.marketing_products(contract),
        }
    }
    return json_response(request, body)


_BILLING = "/billing/v1/contracts/{contractId}/products"
ROUTES = (
    (_BILLING, products, "akamai.products"),
    (_BILLING + "/{productId}/usage/monthly-summary", monthly_summary, "akamai.monthly_summary"),
    (
        _BILLING + "/{productId}/usage/by-cp-code/monthly-summary",
        monthly_summary_by_cp_code,
        "akamai.monthly_summary_by_cp_code",
    ),
    (
        "/billing/v1/reporting-groups/{reportingGroupId}/products/{productId}/usage/monthly-summary",
        reporting_group_summary,
        "akamai.reporting_group_summary",
    ),
    ("/contract-api/v1/contracts/identifiers", contract_identifiers, "akamai.contract_identifiers"),
    (
        "/contract-api/v1/contracts/{contractId}/products/summaries",
        product_summaries,
        "akamai.product_summaries",
    ),
)


def add_routes(app: web.Application) -> None:
    for path, handler, name in ROUTES:
        app.router.add_get(path, handler, name=name, allow_head=False)
