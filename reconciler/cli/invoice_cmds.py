"""``state invoices``: the provider's invoice line items as stored, each shown as what it is."""

from __future__ import annotations

import json
from typing import Any

import click
from sqlalchemy import select

from reconciler.cli import AppContext, command, pass_app, run_async
from reconciler.display import number as format_quantity
from reconciler.domain import Month, canonical_decimal
from reconciler.reconcile.invoices import InvoiceLine
from reconciler.store.db import open_configured_state, reader
from reconciler.store.invoice_rows import invoice_from_row, invoices_t


def _number(value: Any) -> str | None:
    return canonical_decimal(value) if value is not None else None


def invoice_json(line: InvoiceLine) -> dict[str, Any]:
    return {
        "source": line.source,
        "account": line.account,
        "month": str(line.month),
        "invoice_id": line.invoice_id,
        "position": line.position,
        "kind": line.kind,
        "description": line.description,
        "product_name": line.product_name,
        "usage_type": line.usage_type,
        "region": line.region,
        "units": _number(line.units),
        "unit": line.unit,
        "amount": _number(line.amount),
        "currency": line.currency,
        "billing_start": str(line.billing_start) if line.billing_start else None,
        "billing_end": str(line.billing_end) if line.billing_end else None,
    }


def invoice_text(line: InvoiceLine) -> str:
    what = " / ".join(p for p in (line.product_name, line.usage_type) if p) or line.description
    if line.region:
        what += f" [{line.region}]"
    if line.description and line.description not in what:
        what += f" ({line.description})"
    units = ""
    if line.units is not None:
        units = f"  units {format_quantity(line.units)}{f' {line.unit}' if line.unit else ''}"
    amount = ""
    if line.amount is not None:
        amount = f"  {canonical_decimal(line.amount)}{f' {line.currency}' if line.currency else ''}"
    invoice = f"invoice {line.invoice_id} " if line.invoice_id else ""
    where = f"{line.source}  {line.month}  {invoice}#{line.position}"
    return f"{where}  {line.kind:<12} {what}{units}{amount}"


@command("invoices")
@click.option("--json", "as_json", is_flag=True, help="One JSON object per line (JSON Lines).")
@click.option("--source", help="Only this source.")
@click.option("--month", help="Only this month (YYYY-MM).")
@pass_app
def state_invoices(app: AppContext, as_json: bool, source: str | None, month: str | None) -> None:
    """List the provider's invoice line items as of the latest pull: usage (compared with the
    month's usage), not usage (fees, taxes, credits: never compared) or other period (an
    invoice that does not bill the whole month: not compared)."""
    settings = app.settings
    try:
        wanted = str(Month.parse(month)) if month else None
    except ValueError as e:
        raise click.BadParameter(str(e), param_hint="'--month'") from None

    async def _rows() -> list[Any]:
        query = select(invoices_t).order_by(
            invoices_t.c.source, invoices_t.c.month, invoices_t.c.invoice_id, invoices_t.c.position
        )
        if source:
            query = query.where(invoices_t.c.source == source)
        if wanted:
            query = query.where(invoices_t.c.month == wanted)
        async with open_configured_state(settings) as engine, reader(engine).connect() as conn:
            return list((await conn.execute(query)).all())

    for row in run_async(_rows()):
        line = invoice_from_row(row)
        click.echo(json.dumps(invoice_json(line)) if as_json else invoice_text(line))
