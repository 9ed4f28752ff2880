"""Fastly invoices: posted once a month finalizes, with units equal to that day's usage.

An invoice for month M is posted on ``scenario.finalized_on(M)``. Its line items carry the
account-level quantity of each usage type as it stood that day, so a later ``restate`` event
changes usage but not the invoice, as happens for real.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import date
from decimal import ROUND_HALF_EVEN, Decimal
from typing import Any

from reconciler.domain import Month
from reconciler.sandbox import invoice_faults
from reconciler.sandbox.events import EventKind, SandboxEvent
from reconciler.sandbox.fastly_data import FastlyData
from reconciler.sandbox.scenario import det_id, det_int


def posted_months(
    data: FastlyData, today: date, start: date | None, end: date | None
) -> list[Month]:
    """Months with a posted invoice whose billing period lies in ``start..end``, newest first."""
    scenario = data.scenario
    months = []
    month = Month.of(today) - 1
    while month >= scenario.first_month:
        if (
            scenario.is_finalized(month, today)
            and (start is None or month.first_day >= start)
            and (end is None or month.last_day <= end)
        ):
            months.append(month)
        month = month - 1
    return months


def _line_items(
    data: FastlyData, month: Month, as_of: date, events: Sequence[SandboxEvent], *, coupon: bool
) -> tuple[list[dict[str, Any]], Decimal]:
    kept = [e for e in events if e.kind is not EventKind.DISAPPEAR]
    items: list[dict[str, Any]] = []
    total = Decimal(0)
    for usage_type, kind in enumerate(data.usage_types):
        quantity = data.account_quantity(usage_type, month, as_of, kept)
        if quantity is None:
            continue
        rate, _ = data.money(quantity.value, usage_type)
        ref = data.line_ref(usage_type, month, None)
        units, rate = invoice_faults.billed(events, ref, as_of, quantity.value, rate)
        amount = (units * rate).quantize(Decimal("0.01"), ROUND_HALF_EVEN)
        total += amount
        item: dict[str, Any] = {"description": kind.name, "amount": amount}
        if coupon:
            item["credit_coupon_code"] = None
        item.update(
            {
                "rate": rate,
                "units": units,
                "product_name": kind.name,
                "product_group": kind.product_group,
                "product_line": kind.product_line,
                "region": kind.region,
                "usage_type": kind.measure,
            }
        )
        items.append(item)
    for number, credit in enumerate(invoice_faults.credits(events, month, as_of), start=1):
        total -= credit
        items.append(
            {
                "description": "Service credit",
                "amount": -credit,
                "credit_coupon_code": f"CREDIT{number}",
                "rate": Decimal(0),
                "units": Decimal(0),
                "product_name": "Service credit",
                "product_group": "Credits",
                "product_line": "Credits",
                "region": "",
                "usage_type": "credit",
            }
        )
    return items, total


def invoice(data: FastlyData, month: Month, events: Sequence[SandboxEvent]) -> dict[str, Any]:
    scenario = data.scenario
    posted = scenario.finalized_on(month)
    items, total = _line_items(data, month, posted, events, coupon=True)
    number = det_int(scenario.seed, "invoice", month, low=1_000_000, high=9_999_999)
    return {
        "customer_id": scenario.fastly_customer_id,
        "invoice_id": str(number),
        "invoice_posted_on": f"{posted.isoformat()}T00:00:00Z",
        "billing_start_date": f"{month.first_day.isoformat()}T00:00:00Z",
        "billing_end_date": f"{month.last_day.isoformat()}T23:59:59Z",
        "statement_number": det_id(scenario.seed, "statement", month, length=10).upper(),
        "currency_code": "USD",
        "monthly_transaction_amount": total,
        "transaction_line_items": items,
    }


def month_to_date(data: FastlyData, today: date, events: Sequence[SandboxEvent]) -> dict[str, Any]:
    """The open month's invoice so far; its amount is a string, as the real API sends it."""
    scenario = data.scenario
    month = Month.of(today)
    items, total = _line_items(data, month, today, events, coupon=False)
    return {
        "customer_id": scenario.fastly_customer_id,
        "invoice_id": f"MTD{month.year:04d}{month.month:02d}",
        "billing_start_date": f"{month.first_day.isoformat()}T00:00:00Z",
        "billing_end_date": f"{month.last_day.isoformat()}T23:59:59Z",
        "monthly_transaction_amount": str(total),
        "transaction_line_items": items,
    }
