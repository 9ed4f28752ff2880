"""The provider's invoice against usage: tiers and credits summed, fees kept apart, units
normalized and never compared across, only invoices that bill the month compared."""

from __future__ import annotations

from dataclasses import replace
from datetime import date
from decimal import Decimal

import pytest
from hypothesis import given
from hypothesis import strategies as st

from reconciler.domain import FindingKind, LineStatus, Month
from reconciler.reconcile.expectations import MonthLine
from reconciler.reconcile.invoices import InvoiceLine, check_provider_invoices, normalized_unit
from reconciler.reconcile.measures import MeasureKind

MAY = Month(2024, 5)
F, C = LineStatus.FINALIZED, LineStatus.COLLECTING
NA_BANDWIDTH = "North America Bandwidth"


def usage(
    quantity: str,
    *,
    usage_type: str = NA_BANDWIDTH,
    unit: str = "GB",
    region: str = "North America",
    status: LineStatus = F,
    service: str = "",
    kind: MeasureKind = MeasureKind.VOLUME,
) -> MonthLine:
    return MonthLine(
        "fastly", "fastly", "", "cdn_usage", "", usage_type, region, service, MAY,
        Decimal(quantity), unit, status, kind=kind,
    )  # fmt: skip


def item(
    units: str | None,
    *,
    product_name: str = NA_BANDWIDTH,
    usage_type: str = "bandwidth",
    region: str = "North America",
    unit: str | None = None,
    amount: str | None = "1.00",
    start: date | None = date(2024, 5, 1),
    end: date | None = date(2024, 5, 31),
    description: str = "",
) -> InvoiceLine:
    return InvoiceLine(
        source="fastly",
        account="cust",
        month=MAY,
        usage_type=usage_type,
        product_name=product_name,
        region=region,
        units=Decimal(units) if units is not None else None,
        amount=Decimal(amount) if amount is not None else None,
        currency="USD",
        description=description,
        unit=unit,
        billing_start=start,
        billing_end=end,
    )


def found(lines: list[MonthLine], items: list[InvoiceLine]) -> list[tuple[str, str, str]]:
    """(kind, invoiced, observed) of each finding."""
    out = []
    for evaluated in check_provider_invoices(lines, items):
        entry = evaluated.item
        assert entry.before is not None and entry.after is not None
        out.append(
            (entry.kind, f"{entry.before.quantity} {entry.before.unit}", str(entry.after.quantity))
        )
    return out


P = MeasureKind.PERCENTILE
MISMATCH, UNIT = FindingKind.INVOICE_MISMATCH.value, FindingKind.UNIT_MISMATCH.value


@pytest.mark.parametrize(
    ("lines", "items", "expected"),
    [
        # One item, equal or not.
        ([usage("110")], [item("110")], []),
        ([usage("100")], [item("110")], [(MISMATCH, "110 GB", "100")]),
        # Still collecting: not compared.
        ([usage("100", status=C)], [item("110")], []),
        # Price tiers: two items of one usage type are one total.
        ([usage("150")], [item("100"), item("50")], []),
        ([usage("160")], [item("100"), item("50")], [(MISMATCH, "150 GB", "160")]),
        # A credit of units is part of the total.
        ([usage("140")], [item("100"), item("50"), item("-10")], []),
        # A fee, a tax, a credit without usage type: kept, never compared with usage.
        ([usage("100")], [item("100"), item(None, product_name="", usage_type="")], []),
        ([usage("100")], [item("100"), item("1", product_name="Support", usage_type="")], []),
        ([usage("100")], [item("100"), item("3", product_name="", usage_type="tax")], []),
        # An item whose invoice does not bill the whole month (starts inside it) is not compared.
        ([usage("100")], [item("5", start=date(2024, 5, 20), end=date(2024, 5, 20))], []),
        ([usage("100")], [item("5", start=date(2024, 5, 1), end=date(2024, 7, 31))], []),
        # Unknown billing period (rows stored before it was kept): read as the month.
        ([usage("100")], [item("110", start=None, end=None)], [(MISMATCH, "110 GB", "100")]),
        # Units: normalized before comparing; never compared across units.
        ([usage("100", unit="gb")], [item("100", unit="GB")], []),
        ([usage("100", unit="GB")], [item("100", unit="Gigabytes")], []),
        ([usage("100", unit="GB")], [item("90", unit="gb")], [(MISMATCH, "90 gb", "100")]),
        ([usage("100", unit="GB")], [item("100", unit="TB")], [(UNIT, "100 TB", "100")]),
        # Items in two units: two totals, each against usage in its own unit.
        ([usage("100")], [item("100", unit="GB"), item("1", unit="TB")], [(UNIT, "1 TB", "100")]),
        # Regions: matched by region, case-insensitively.
        ([usage("100", region="north america")], [item("100")], []),
        ([usage("100", region="Europe")], [item("50")], []),
        # Service lines are not what the invoice bills.
        ([usage("100"), usage("100", service="svc")], [item("100")], []),
        # A percentile of several lines (two periods) has no sum to compare.
        ([usage("10", kind=P), usage("12", kind=P)], [item("22")], []),
        ([usage("10", kind=P)], [item("12")], [(MISMATCH, "12 GB", "10")]),
        # Other usage types of the month do not match.
        ([usage("100"), usage("7", usage_type="Europe Bandwidth")], [item("100")], []),
    ],
)
def test_invoice_rules(
    lines: list[MonthLine], items: list[InvoiceLine], expected: list[tuple[str, str, str]]
) -> None:
    assert found(lines, items) == expected


def test_tier_lines_give_one_finding_with_a_stable_fingerprint() -> None:
    tiers = [item("100"), item("50")]
    first = check_provider_invoices([usage("10")], tiers)
    assert len(first) == 1
    assert "2 invoice line items" in first[0].item.message
    again = check_provider_invoices([usage("11")], list(reversed(tiers)))
    assert again[0].item.fingerprint == first[0].item.fingerprint


def test_the_providers_spelling_is_displayed() -> None:
    [entry] = check_provider_invoices([usage("100", unit="gb")], [item("90", unit="GB")])
    assert entry.item.after is not None and entry.item.after.unit == "gb"
    assert entry.item.before is not None and entry.item.before.unit == "GB"
    assert "100 gb" in entry.item.message and "90 GB" in entry.item.message


@pytest.mark.parametrize(
    ("spelling", "unit"),
    [("GB", "gb"), (" gb ", "gb"), ("Gigabytes", "gb"), ("unit", "unit"), ("Units", "unit"),
     ("TB", "tb"), ("Mbps", "mbps"), ("furlongs", "furlongs")],
)  # fmt: skip
def test_unit_normalization(spelling: str, unit: str) -> None:
    assert normalized_unit(spelling) == unit


def test_kinds_of_items() -> None:
    assert item("1").kind == "usage"
    assert item(None, product_name="", usage_type="").kind == "not usage"
    assert item(None).kind == "not usage"
    assert item("1", start=date(2024, 5, 20)).kind == "other period"


amounts = st.decimals(min_value=-1000, max_value=10**9, places=3, allow_nan=False)


@given(st.lists(amounts, min_size=1, max_size=6), st.randoms())
def test_tiers_sum_in_any_order(parts: list[Decimal], rnd: object) -> None:
    total = sum(parts, Decimal(0))
    items = [replace(item("0"), units=part) for part in parts]
    rnd.shuffle(items)  # type: ignore[attr-defined]
    assert check_provider_invoices([usage(str(total))], items) == []
