"""Akamai Invoicing API v3: the invoice totals of a source's finalized months (optional).

``GET /invoicing-api/v3/contracts/{contractId}/invoices?month=YYYY-MM`` lists a contract's
invoices and credit memos of a month; a 404 means none was issued (yet). It is signed with
EdgeGrid like the Billing API, with the credentials of the source's ``invoicing_section``
of its ``.edgerc`` (an API client with the Invoicing API's grant; default: ``section``).
Each invoice or credit memo becomes one invoice line of usage type ``invoice_total``: the
audit compares their sum with the month's expected total.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable, Mapping, Sequence
from decimal import Decimal
from typing import Any, Final
from urllib.parse import quote

from reconciler.domain import Month
from reconciler.errors import BadProviderDataError, ProviderAuthError, ProviderError
from reconciler.money import check_currency
from reconciler.providers.base import InvoiceLine

log = logging.getLogger(__name__)
INVOICE_TOTAL: Final = "invoice_total"
_TYPES = ("INVOICE", "CREDIT_MEMO")

Get = Callable[[str, Mapping[str, str]], Awaitable[Any]]


def invoices_endpoint(contract: str) -> str:
    return f"/invoicing-api/v3/contracts/{quote(contract, safe='')}/invoices"


async def read_invoices(
    get: Get, source: str, contracts: Sequence[str], months: Sequence[Month]
) -> list[InvoiceLine]:
    """The invoices and credit memos of ``contracts`` in ``months``."""
    lines: list[InvoiceLine] = []
    for contract in contracts:
        endpoint = invoices_endpoint(contract)
        for month in months:
            try:
                payload = await get(endpoint, {"month": str(month)})
            except ProviderAuthError as e:
                if e.status != 403:
                    raise
                # The API client lacks the Invoicing API's grant: usage is still reconciled.
                log.warning("source '%s': cannot read Akamai invoices (%s): not audited", source, e)
                return []
            except ProviderError as e:
                if e.status == 404:
                    continue  # no invoice for that month (yet)
                raise
            lines += invoice_lines(source, endpoint, contract, month, payload)
    return lines


def invoice_lines(
    source: str, endpoint: str, contract: str, month: Month, payload: Any
) -> list[InvoiceLine]:
    if not isinstance(payload, list):
        raise BadProviderDataError(source, endpoint, "expected a JSON array of invoices")
    out: list[InvoiceLine] = []
    for index, record in enumerate(payload):
        where = f"{month} invoice {index}"
        if not isinstance(record, dict):
            raise BadProviderDataError(source, endpoint, f"{where}: not an object")
        total = record.get("invoiceTotal")
        kind = record.get("invoiceType")
        if isinstance(total, bool) or not isinstance(total, int | Decimal):
            raise BadProviderDataError(source, endpoint, f"{where}: invoiceTotal is not a number")
        if kind not in _TYPES:
            raise BadProviderDataError(source, endpoint, f"{where}: invoiceType {kind!r} unknown")
        try:
            currency = check_currency(record.get("invoiceCurrency"))
        except ValueError as e:
            raise BadProviderDataError(source, endpoint, f"{where}: {e}") from None
        out.append(
            InvoiceLine(
                source=source,
                account=str(record.get("contractId") or contract),
                month=month,
                usage_type=INVOICE_TOTAL,
                product_name=f"{kind} {record.get('invoiceId', '')}".strip(),
                region="",
                units=Decimal(0),
                amount=Decimal(total),
                currency=currency,
                invoice_id=_invoice_id(record.get("invoiceId")),
            )
        )
    return out


def _invoice_id(value: Any) -> str:
    """The invoice's id as text (the API gives a number; nothing when it gives none)."""
    if isinstance(value, bool) or not isinstance(value, int | str | Decimal):
        return ""
    return str(value)
