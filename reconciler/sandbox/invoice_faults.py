"""Invoices that disagree with the contract: an overcharge, a wrong rate, a credit.

Scripted as events (``invoice_overcharge``, ``invoice_rate``, ``invoice_credit``) that change
what a posted Fastly invoice bills, never the usage, so the invoice audit has something real
to catch. An event applies to the invoices posted on or after its ``day``.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import date
from decimal import Decimal

from reconciler.domain import Month
from reconciler.sandbox.events import EventKind, LineRef, SandboxEvent


def billed(
    events: Sequence[SandboxEvent], line: LineRef, as_of: date, units: Decimal, rate: Decimal
) -> tuple[Decimal, Decimal]:
    """The (units, rate) an invoice posted on ``as_of`` bills for ``line``."""
    for event in events:
        if not event.active(as_of) or not event.matches(line):
            continue
        if event.kind is EventKind.INVOICE_OVERCHARGE:
            units *= event.factor
        elif event.kind is EventKind.INVOICE_RATE:
            rate *= event.factor
    return units, rate


def credits(events: Sequence[SandboxEvent], month: Month, as_of: date) -> list[Decimal]:
    """The credits (positive amounts) the invoice of ``month`` posted on ``as_of`` carries."""
    return [
        event.factor
        for event in events
        if event.kind is EventKind.INVOICE_CREDIT
        and event.active(as_of)
        and event.match.get("month", str(month)) == str(month)
    ]
