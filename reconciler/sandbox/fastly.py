"""Fastly Billing API v3 routes: usage metrics, service usage metrics, invoices.

Parameters are validated like the real API (see PROVIDERS.md): months are ``YYYY-MM``, a
usage-metrics call covers at most 3 months, ``limit`` is a number up to 10000 (service usage)
or 200 (invoices). ``next_cursor`` is an opaque base64 offset; the last page of service usage
has ``next_cursor: ""`` and the last page of invoices has none.
"""

from __future__ import annotations

import base64
import binascii
import hmac
import re
from datetime import date
from typing import Any

from aiohttp import web

from reconciler.domain import Month, Provider
from reconciler.sandbox.fastly_data import ServiceQuery
from reconciler.sandbox.fastly_invoices import month_to_date, posted_invoices
from reconciler.sandbox.faults import PayloadView
from reconciler.sandbox.responses import (
    fastly_errors,
    fastly_legacy_error,
    fastly_problem,
    json_response,
)
from reconciler.sandbox.state import STATE_KEY, SandboxState

_MONTH = re.compile(r"^[0-9]{4}-[0-9]{2}$")
_DIGITS = re.compile(r"^[0-9]+$")
MAX_USAGE_MONTHS = 3
SERVICE_LIMIT_DEFAULT, SERVICE_LIMIT_MAX = 1000, 10000
INVOICE_LIMIT_DEFAULT, INVOICE_LIMIT_MAX = 100, 200


class InvalidParameter(ValueError):
    """A query parameter the real API would refuse with a 400."""


def check_token(request: web.Request, state: SandboxState) -> web.Response | None:
    """None if ``Fastly-Key`` is right, else the 401 Fastly sends."""
    token = request.headers.get("Fastly-Key", "")
    if token and hmac.compare_digest(token.encode(), state.credentials.fastly_token.encode()):
        return None
    detail = "Fastly-Key header is missing" if not token else "the token is not valid"
    return fastly_legacy_error(request, 401, "Provided credentials are missing or invalid", detail)


def encode_cursor(offset: int) -> str:
    return base64.b64encode(f"offset={offset}".encode()).decode()


def decode_cursor(cursor: str) -> int:
    if not cursor:
        return 0
    try:
        text = base64.b64decode(cursor, validate=True).decode()
    except (binascii.Error, UnicodeDecodeError):
        raise InvalidParameter("cursor is not valid") from None
    name, _, number = text.partition("=")
    if name != "offset" or not _DIGITS.match(number):
        raise InvalidParameter("cursor is not valid")
    return int(number)


def _month(request: web.Request, name: str, *, required: bool) -> Month | None:
    text = request.query.get(name)
    if text is None or text == "":
        if required:
            raise InvalidParameter(f"{name} is required")
        return None
    if not _MONTH.match(text):
        raise InvalidParameter(f"{name} must match ^[0-9]{{4}}-[0-9]{{2}}$ (YYYY-MM)")
    try:
        return Month.parse(text)
    except ValueError:
        raise InvalidParameter(f"{name} is not a valid month") from None


def _limit(request: web.Request, default: int, maximum: int) -> int:
    text = request.query.get("limit", "")
    if text == "":
        return default
    if not _DIGITS.match(text) or not 1 <= int(text) <= maximum:
        raise InvalidParameter(f"limit must be a number from 1 to {maximum}")
    return int(text)


def _day(request: web.Request, name: str) -> date | None:
    text = request.query.get(name, "")
    if not text:
        return None
    try:
        if len(text) == 10:
            return date.fromisoformat(text)
    except ValueError:
        pass
    raise InvalidParameter(f"{name} must be a date YYYY-MM-DD")


async def usage_metrics(request: web.Request) -> web.Response:
    state = request.app[STATE_KEY]
    try:
        start = _month(request, "start_month", required=True)
        end = _month(request, "end_month", required=True)
        assert start is not None and end is not None
        if start > end:
            raise InvalidParameter("start_month must not be after end_month")
        if start.months_until(end) + 1 > MAX_USAGE_MONTHS:
            raise InvalidParameter("one call returns at most 3 months: split the range")
    except InvalidParameter as e:
        return fastly_problem(request, 400, "Bad Request", str(e))
    data, today = state.fastly, state.today
    events = state.events_for(Provider.FASTLY)
    records = []
    for month in state.scenario.visible_months(today):
        if not start <= month <= end:
            continue
        for usage_type in range(len(data.usage_types)):
            quantity = data.account_quantity(usage_type, month, today, events)
            if quantity is not None:
                records.append(data.account_record(month, usage_type, quantity, today))
    payload: dict[str, Any] = {"data": records}
    meta = None
    if state.scenario.fastly_usage_meta:
        meta = {"limit": len(records), "sort": "month", "total": len(records)}
        payload["meta"] = meta
    return json_response(request, payload, PayloadView(records, "quantity", meta))


def _service_query(request: web.Request, state: SandboxState) -> tuple[ServiceQuery, int, int]:
    visible = state.scenario.visible_months(state.today)
    start = _month(request, "start_month", required=False)
    end = _month(request, "end_month", required=False)
    if start is not None and end is not None and start > end:
        raise InvalidParameter("start_month must not be after end_month")
    months = [m for m in visible if (start is None or m >= start) and (end is None or m <= end)]
    data = state.fastly
    product_id = request.query.get("product_id", "")
    usage_type_name = request.query.get("usage_type_name", "")
    if bool(product_id) != bool(usage_type_name):
        raise InvalidParameter("product_id and usage_type_name must be used together")
    usage_types = [
        i
        for i, kind in enumerate(data.usage_types)
        if not product_id or (kind.product_id == product_id and kind.name == usage_type_name)
    ]
    services: list[int] = list(data.services_range)
    wanted = request.query.get("service", "")
    if wanted:
        index = data.service_index(wanted)
        services = [] if index is None else [index]
    limit = _limit(request, SERVICE_LIMIT_DEFAULT, SERVICE_LIMIT_MAX)
    offset = decode_cursor(request.query.get("cursor", ""))
    return ServiceQuery(months, services, usage_types), offset, limit


async def service_usage_metrics(request: web.Request) -> web.Response:
    state = request.app[STATE_KEY]
    try:
        query, offset, limit = _service_query(request, state)
    except InvalidParameter as e:
        return fastly_problem(request, 400, "Bad Request", str(e))
    events = state.events_for(Provider.FASTLY)
    records, next_offset = state.fastly.service_page(query, offset, limit, state.today, events)
    meta = {
        "next_cursor": encode_cursor(next_offset) if next_offset is not None else "",
        "limit": limit,
        "sort": "month",
        "total": state.fastly.service_total(query, state.today, events),
    }
    cursor = request.query.get("cursor", "")
    if state.service_usage_shape == "current":
        payload = {"data": records, "meta": meta}
        return json_response(
            request, payload, PayloadView(records, "quantity", meta, cursor=cursor)
        )
    details = [_detail(r) for r in records]
    nested = {
        "customer_id": state.scenario.fastly_customer_id,
        "start_time": f"{query.months[0].first_day}T00:00:00Z" if query.months else None,
        "end_time": f"{query.months[-1].last_day}T23:59:59Z" if query.months else None,
        "usage_type": request.query.get("usage_type_name")
        or (records[0]["usage_type"] if records else None),
        "unit": records[0]["unit"] if records else None,
        "details": details,
        "meta": meta,
    }
    view = PayloadView(details, "usage_units", meta, cursor=cursor)
    return json_response(request, {"data": nested}, view)


def _detail(record: dict[str, Any]) -> dict[str, Any]:
    """One element of the older nested shape: the documented fields plus the line's identity."""
    return {
        "service_id": record["service_id"],
        "service_name": record["service_name"],
        "usage_units": record["quantity"],
        "month": record["month"],
        "product_id": record["product_id"],
        "usage_type": record["usage_type"],
        "region": record["region"],
        "unit": record["unit"],
        "raw_quantity": record["raw_quantity"],
    }


async def invoices(request: web.Request) -> web.Response:
    state = request.app[STATE_KEY]
    try:
        start = _day(request, "billing_start_date")
        end = _day(request, "billing_end_date")
        if start is not None and end is not None and start > end:
            raise InvalidParameter("billing_start_date must not be after billing_end_date")
        limit = _limit(request, INVOICE_LIMIT_DEFAULT, INVOICE_LIMIT_MAX)
        offset = decode_cursor(request.query.get("cursor", ""))
    except InvalidParameter as e:
        return fastly_errors(request, 400, "Bad Request", str(e), "invalid_parameter")
    events = state.events_for(Provider.FASTLY)
    posted = posted_invoices(state.fastly, state.today, start, end, events)
    page = posted[offset : offset + limit]
    meta: dict[str, Any] = {}
    if offset + limit < len(posted):
        meta["next_cursor"] = encode_cursor(offset + limit)
    meta.update(limit=limit, sort="-billing_start_date", total=len(posted))
    items = [item for inv in page for item in inv["transaction_line_items"]]
    view = PayloadView(items, "units", meta, cursor=request.query.get("cursor", ""))
    return json_response(request, {"data": page, "meta": meta}, view)


async def invoices_month_to_date(request: web.Request) -> web.Response:
    state = request.app[STATE_KEY]
    events = state.events_for(Provider.FASTLY)
    body = month_to_date(state.fastly, state.today, events)
    if Month.of(state.today) not in state.scenario.visible_months(state.today):
        body["transaction_line_items"] = []
        body["monthly_transaction_amount"] = "0"
    return json_response(request, body, PayloadView(body["transaction_line_items"], "units"))


ROUTES = (
    ("/billing/v3/usage-metrics", usage_metrics, "fastly.usage_metrics"),
    ("/billing/v3/service-usage-metrics", service_usage_metrics, "fastly.service_usage_metrics"),
    ("/billing/v3/invoices/month-to-date", invoices_month_to_date, "fastly.invoices_month_to_date"),
    ("/billing/v3/invoices", invoices, "fastly.invoices"),
)


def add_routes(app: web.Application) -> None:
    for path, handler, name in ROUTES:
        # no implicit HEAD route: it would be unnamed, so neither counted nor checked for auth
        app.router.add_get(path, handler, name=name, allow_head=False)
