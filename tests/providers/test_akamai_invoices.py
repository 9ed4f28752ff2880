"""Akamai Invoicing API v3 payloads: invoices and credit memos become invoice-total lines."""

from __future__ import annotations

import json
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest

from reconciler.domain import Month
from reconciler.errors import BadProviderDataError
from reconciler.providers.akamai_invoices import INVOICE_TOTAL, invoice_lines

# The Invoicing API reference's list-invoices example.
EXAMPLE = Path(__file__).resolve().parents[1] / "fixtures" / "akamai-invoices-example.json"
JUNE = Month(2024, 6)
GOOD: dict[str, Any] = {
    "invoiceId": 1234567890,
    "invoiceDate": "2024-07-03",
    "invoiceTotal": Decimal("50000.42"),
    "invoiceCurrency": "USD",
    "invoiceType": "INVOICE",
    "contractId": "K-0N7RAK7",
    "accountId": "A-CCT7890",
    "files": [],
}


def test_invoices_and_credit_memos() -> None:
    memo = {**GOOD, "invoiceId": 8234567890, "invoiceType": "CREDIT_MEMO",
            "invoiceTotal": Decimal("-1020.71")}  # fmt: skip
    lines = invoice_lines("akamai", "/x", "K-0N7RAK7", JUNE, [GOOD, memo])
    assert [(x.usage_type, x.product_name, x.amount, x.currency, x.invoice_id) for x in lines] == [
        (INVOICE_TOTAL, "INVOICE 1234567890", Decimal("50000.42"), "USD", "1234567890"),
        (INVOICE_TOTAL, "CREDIT_MEMO 8234567890", Decimal("-1020.71"), "USD", "8234567890"),
    ]


def test_the_documented_example_parses() -> None:
    payload = json.loads(EXAMPLE.read_text(), parse_float=Decimal)
    lines = invoice_lines("akamai", "/x", "K-0N7RAK71", JUNE, payload)
    assert sum((x.amount for x in lines if x.amount is not None), Decimal(0)) == Decimal("48979.71")


@pytest.mark.parametrize(
    ("change", "error"),
    [
        ({"invoiceTotal": "50000.42"}, "invoiceTotal is not a number"),
        ({"invoiceTotal": True}, "invoiceTotal is not a number"),
        ({"invoiceType": "RECEIPT"}, "invoiceType 'RECEIPT' unknown"),
        ({"invoiceCurrency": "usd"}, "unknown currency 'usd'"),
    ],
)
def test_bad_invoices_are_refused_with_the_field(change: dict[str, Any], error: str) -> None:
    with pytest.raises(BadProviderDataError, match=error):
        invoice_lines("akamai", "/x", "K-0N7RAK7", JUNE, [{**GOOD, **change}])
