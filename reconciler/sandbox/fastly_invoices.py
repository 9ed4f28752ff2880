"""Fastly invoices: posted once a month finalizes, with units equal to that day's usage.

An invoice for month M is posted on ``scenario.finalized_on(M)``. Its line items carry the
account-level quantity of each usage type as it stood that day, so a later ``restate`` event
changes usage but not the invoice, as happens for real.

Scenario switches make invoices look like a real account's: ``fastly_invoice_tiers`` bills
each usage type in two price tiers (two line items whose units add up to the usage),
``fastly_invoice_fees`` adds a platform fee (one unit) and a sales tax line (no units), both
without product or usage type, and ``fastly_midmonth_invoices`` posts, on the 5th of each
month, a subscription invoice billing the 5th to the 4th of the next month (one line item
with a product, a usage type and one unit): it starts inside a month but bills no month of
usage.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import date, timedelta
from decimal import ROUND_DOWN, ROUND_HALF_EVEN, Decimal
from typing import Any

from reconciler.domain import Month
from reconciler.sandbox import invoice_faults
from reconciler.sandbox.events import EventKind, SandboxEvent
from reconciler.sandbox.fastly_data import FastlyData
from reconciler.sandbox.scenario import det_id, det_int

TIER_DISCOUNT = Decimal("0.8")  # the second tier's rate, relative to the first
PLATFORM_FEE = Decimal("250.00")
SALES_TAX = Decimal("0.07")
SUBSCRIPTION_AMOUNT = Decimal("500.00")
SUBSCRIPTION_DAY = 5


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


def posted_invoices(
    data: FastlyData,
    today: date,
    start: date | None,
    end: date | None,
    events: Sequence[SandboxEvent],
) -> list[dict[str, Any]]:
    """Every invoice posted by ``today`` whose billing period starts in ``start..end``,
    newest billing period first."""
    invoices = [
        (m.first_day, invoice(data, m, events)) for m in posted_months(data, today, start, end)
    ]
    if data.scenario.fastly_midmonth_invoices:
        for month in data.scenario.visible_months(today):
            begins = month.first_day.replace(day=SUBSCRIPTION_DAY)
            if (
                begins <= today
                and (start is None or begins >= start)
                and (end is None or begins <= end)
            ):
                invoices.append((begins, subscription_invoice(data, month)))
    invoices.sort(key=lambda pair: pair[0], reverse=True)
    return [doc for _, doc in invoices]


def _usage_item(
    data: FastlyData, usage_type: int, units: Decimal, rate: Decimal, *, coupon: bool
) -> dict[str, Any]:
    kind = data.usage_types[usage_type]
    amount = (units * rate).quantize(Decimal("0.01"), ROUND_HALF_EVEN)
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
    return item


def _fee_item(
    description: str, amount: Decimal, units: Decimal | None, *, coupon: bool
) -> dict[str, Any]:
    item: dict[str, Any] = {"description": description, "amount": amount}
    if coupon:
        item["credit_coupon_code"] = None
    item.update(
        {
            "rate": amount if units is not None else None,
            "units": units,
            "product_name": None,
            "product_group": "Fees",
            "product_line": "Fees",
            "region": None,
            "usage_type": None,
        }
    )
    return item


def _line_items(
    data: FastlyData, month: Month, as_of: date, events: Sequence[SandboxEvent], *, coupon: bool
) -> tuple[list[dict[str, Any]], Decimal]:
    scenario = data.scenario
    kept = [e for e in events if e.kind is not EventKind.DISAPPEAR]
    items: list[dict[str, Any]] = []
    for usage_type in range(len(data.usage_types)):
        quantity = data.account_quantity(usage_type, month, as_of, kept)
        if quantity is None:
            continue
        rate, _ = data.money(quantity.value, usage_type)
        ref = data.line_ref(usage_type, month, None)
        units, rate = invoice_faults.billed(events, ref, as_of, quantity.value, rate)
        if scenario.fastly_invoice_tiers:
            first = (units / 2).quantize(Decimal("0.001"), ROUND_DOWN)
            second_rate = (rate * TIER_DISCOUNT).normalize()
            items.append(_usage_item(data, usage_type, first, rate, coupon=coupon))
            items.append(_usage_item(data, usage_type, units - first, second_rate, coupon=coupon))
        else:
            items.append(_usage_item(data, usage_type, units, rate, coupon=coupon))
    for number, credit in enumerate(invoice_faults.credits(events, month, as_of), start=1):
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
    total = sum((item["amount"] for item in items), Decimal(0))
    if scenario.fastly_invoice_fees and items:
        tax = ((total + PLATFORM_FEE) * SALES_TAX).quantize(Decimal("0.01"), ROUND_HALF_EVEN)
        items.append(_fee_item("Platform fee", PLATFORM_FEE, Decimal(1), coupon=coupon))
        items.append(_fee_item("Sales tax", tax, None, coupon=coupon))
        total += PLATFORM_FEE + tax
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


def subscription_invoice(data: FastlyData, month: Month) -> dict[str, Any]:
    """The subscription invoice posted on the 5th of ``month`` (5th to the 4th of the next)."""
    scenario = data.scenario
    begins = month.first_day.replace(day=SUBSCRIPTION_DAY)
    ends = (month + 1).first_day.replace(day=SUBSCRIPTION_DAY) - timedelta(days=1)
    number = det_int(scenario.seed, "subscription", month, low=1_000_000, high=9_999_999)
    item = {
        "description": "Platform subscription",
        "amount": SUBSCRIPTION_AMOUNT,
        "credit_coupon_code": None,
        "rate": SUBSCRIPTION_AMOUNT,
        "units": Decimal(1),
        "product_name": "Platform Subscription",
        "product_group": "Subscriptions",
        "product_line": "Platform",
        "region": None,
        "usage_type": "subscription",
    }
    return {
        "customer_id": scenario.fastly_customer_id,
        "invoice_id": str(number),
        "invoice_posted_on": f"{begins.isoformat()}T00:00:00Z",
        "billing_start_date": f"{begins.isoformat()}T00:00:00Z",
        "billing_end_date": f"{ends.isoformat()}T23:59:59Z",
        "statement_number": det_id(scenario.seed, "subscription", month, length=10).upper(),
        "currency_code": "USD",
        "monthly_transaction_amount": SUBSCRIPTION_AMOUNT,
        "transaction_line_items": [item],
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
