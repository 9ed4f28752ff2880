"""Stored invoice line items ↔ :class:`~reconciler.reconcile.invoices.InvoiceLine`."""

from __future__ import annotations

from typing import Any

from reconciler.domain import Month
from reconciler.reconcile.invoices import InvoiceLine
from reconciler.store.tables import InvoiceLineRow

invoices_t = InvoiceLineRow.__table__  # type: ignore[attr-defined]


def invoice_from_row(row: Any) -> InvoiceLine:
    """An invoice line item from an ``invoice_lines`` row."""
    return InvoiceLine(
        source=row.source,
        account=row.account,
        month=Month.parse(row.month),
        usage_type=row.usage_type,
        product_name=row.product_name,
        region=row.region,
        units=row.units,
        amount=row.amount,
        currency=row.currency,
        invoice_id=row.invoice_id,
        position=row.position,
        description=row.description,
        unit=row.unit,
        billing_start=row.billing_start,
        billing_end=row.billing_end,
    )
