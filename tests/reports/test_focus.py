"""FOCUS CSV: the columns, one row per account-level line, and the correction rows."""

from __future__ import annotations

import csv
import io
from collections import defaultdict
from datetime import date
from decimal import Decimal
from types import SimpleNamespace

from sqlalchemy.ext.asyncio import AsyncEngine

from reconciler.domain import Month
from reconciler.reports.focus import (
    FOCUS_COLUMNS,
    focus_rows,
    line_rows,
    render_focus_csv,
)
from tests.reports.seed import AKAMAI, FASTLY, FASTLY_ACCOUNT, MONTHS, Seeded

REQUIRED = (
    "BillingPeriodStart",
    "BillingPeriodEnd",
    "ChargePeriodStart",
    "ChargePeriodEnd",
    "ChargeCategory",
    "ChargeClass",
    "ChargeDescription",
    "ConsumedQuantity",
    "ConsumedUnit",
    "ServiceProviderName",
    "ServiceName",
    "SkuId",
    "RegionName",
    "BillingAccountId",
    "SubAccountId",
    "BilledCost",
    "EffectiveCost",
    "ListCost",
    "ContractedCost",
    "BillingCurrency",
)


async def _csv(engine: AsyncEngine, *sources: str) -> list[dict[str, str]]:
    rows = await focus_rows(engine, MONTHS[0], MONTHS[-1], sources)
    text = render_focus_csv(rows)
    reader = csv.DictReader(io.StringIO(text))
    assert tuple(reader.fieldnames or ()) == FOCUS_COLUMNS
    return list(reader)


async def test_columns_and_rows(engine: AsyncEngine, seeded: Seeded) -> None:
    rows = await _csv(engine)
    assert set(REQUIRED) <= set(FOCUS_COLUMNS)
    regular = [r for r in rows if r["ChargeClass"] == ""]
    assert len(regular) == seeded.account_lines  # per-service lines are not rows
    for row in rows:
        assert row["ChargeCategory"] == "Usage"
        assert row["ChargeFrequency"] == "Usage-Based"
        for cost in ("BilledCost", "EffectiveCost", "ListCost", "ContractedCost"):
            assert row[cost] == ""
        assert row["BillingCurrency"] == "" and row["SubAccountId"] == ""
        assert row["ServiceProviderName"] == {FASTLY: "Fastly", AKAMAI: "Akamai"}[row["x_Source"]]
    first = next(
        r
        for r in rows
        if r["x_UsageType"] == "North America Bandwidth"
        and r["BillingPeriodStart"][:7] == "2024-01"
    )
    assert first == {
        **first,
        "BillingAccountId": FASTLY_ACCOUNT,
        "BillingPeriodStart": "2024-01-01T00:00:00Z",
        "BillingPeriodEnd": "2024-02-01T00:00:00Z",
        "ChargePeriodStart": "2024-01-01T00:00:00Z",
        "ChargePeriodEnd": "2024-02-01T00:00:00Z",
        "ChargeDescription": "Full-Site Delivery: North America Bandwidth (North America)",
        "ConsumedQuantity": "41000.25",
        "ConsumedUnit": "GB",
        "ServiceName": "Full-Site Delivery",
        "SkuId": "cdn_usage",
        "RegionName": "North America",
        "x_LineStatus": "finalized",
    }
    halves = [
        (r["ChargePeriodStart"], r["ChargePeriodEnd"])
        for r in rows
        if r["x_Source"] == AKAMAI and r["RegionName"] == "EMEA" and r["SkuId"] == "1-ABC012"
        and r["BillingPeriodStart"][:7] == "2024-06"
    ]  # fmt: skip
    assert halves == [
        ("2024-06-01T00:00:00Z", "2024-06-16T00:00:00Z"),
        ("2024-06-16T00:00:00Z", "2024-07-01T00:00:00Z"),
    ]


async def test_corrections_add_up_to_the_current_quantity(
    engine: AsyncEngine, seeded: Seeded
) -> None:
    rows = await _csv(engine)
    corrections = [r for r in rows if r["ChargeClass"] == "Correction"]
    assert len(corrections) == 2
    by_line: dict[str, list[dict[str, str]]] = defaultdict(list)
    for row in rows:
        by_line[row["x_LineKey"]].append(row)
    fastly = next(c for c in corrections if c["x_Source"] == FASTLY)
    original, correction = by_line[fastly["x_LineKey"]]
    assert (original["ChargeClass"], original["ConsumedQuantity"]) == ("", "43500")
    assert correction["ConsumedQuantity"] == "1300"
    assert correction["x_CorrectedQuantity"] == "44800"
    assert correction["x_RecordedAt"] == "2024-06-05T06:00:30Z"
    assert correction["BillingPeriodStart"] == "2024-04-01T00:00:00Z"
    akamai = next(c for c in corrections if c["x_Source"] == AKAMAI)
    assert akamai["ConsumedQuantity"] == "-12.5" and akamai["x_CorrectedQuantity"] == "60"
    # Every line's rows sum to its current quantity: nothing counted twice.
    totals: dict[tuple[str, str, str], Decimal] = defaultdict(Decimal)
    for row in rows:
        key = (row["x_Source"], row["x_UsageType"], row["BillingPeriodStart"][:7])
        totals[key] += Decimal(row["ConsumedQuantity"])
    for (source, _product, usage_type, _unit), months in seeded.totals.items():
        for month, total in months.items():
            assert totals[(source, usage_type, str(month))] == total


async def test_source_filter(engine: AsyncEngine, seeded: Seeded) -> None:
    assert {r["x_Source"] for r in await _csv(engine, AKAMAI)} == {AKAMAI}


def _line(**overrides: object) -> SimpleNamespace:
    values: dict[str, object] = {
        "source": "s",
        "provider": "akamai",
        "account": "K-1",
        "product": "1-ABC",
        "product_name": '=HYPERLINK("http://evil")',
        "usage_type": "Total MB",
        "region": "GLOBAL",
        "month": "2020-07",
        "period_start": date(2017, 7, 1),
        "period_end": date(2017, 7, 31),
        "quantity": Decimal("-1.5"),
        "raw_quantity": None,
        "unit": "GB",
        "status": "finalized",
        "billable": None,
        "measure_kind": "volume",
        "key_hash": "k",
    }
    values.update(overrides)
    return SimpleNamespace(**values)


def test_period_outside_its_month_and_formula_cells() -> None:
    # Akamai really reports a 2020-07 period dated 2017-07-01..31: charge the whole month.
    rows = line_rows(_line(), None)
    assert (rows[0]["ChargePeriodStart"], rows[0]["ChargePeriodEnd"]) == (
        "2020-07-01T00:00:00Z",
        "2020-08-01T00:00:00Z",
    )
    assert Month.parse(rows[0]["BillingPeriodStart"][:7]) == Month(2020, 7)
    line = next(csv.DictReader(io.StringIO(render_focus_csv(rows))))
    assert line["ServiceName"] == '\'=HYPERLINK("http://evil")'  # not a formula
    assert line["ConsumedQuantity"] == "-1.5"  # a number stays a number
