"""Usage lines as a FinOps FOCUS dataset (CSV); the mapping is documented in docs/focus-mapping.md.

One row per present account-level usage line of the report's months (Fastly's per-service
lines break the same usage down again and are left out, so quantities add up). A line whose
quantity changed after its month was finalized gets its first finalized quantity as a regular
row and one ``ChargeClass = Correction`` row per later change carrying the difference, so the
rows of a line always add up to its current quantity. The cost and price columns come from
the declared rate cards (:mod:`reconciler.reports.focus_cost`); without them they are empty.

Rows follow the measure kind (``x_MeasureKind``): a percentile, peak or gauge month split in
periods is one row (see :func:`month_rows`); a stat the provider marks not billable says so
(``x_Billable`` = ``false``, "(not billable)" in the description) and is never billed usage.
"""

from __future__ import annotations

import csv
import io
import json
from collections import defaultdict
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import UTC, date, datetime, time, timedelta
from decimal import Decimal, localcontext
from fractions import Fraction
from typing import Any

from sqlalchemy import select, true
from sqlalchemy.ext.asyncio import AsyncEngine

from reconciler.domain import EXACT_CONTEXT, LineStatus, Month, canonical_decimal
from reconciler.reconcile.allocation import Weights
from reconciler.reconcile.measures import MeasureKind
from reconciler.reconcile.ownership import owner_of
from reconciler.reports.focus_cost import FocusPricing, focus_pricing
from reconciler.reports.history import lines_table, restated_lines
from reconciler.reports.model import RestatedLine
from reconciler.settings import Settings
from reconciler.store.db import reader
from reconciler.team_settings import TeamSettings

FOCUS_COLUMNS = (
    "BillingAccountId",
    "BillingAccountName",
    "SubAccountId",
    "SubAccountName",
    "BillingPeriodStart",
    "BillingPeriodEnd",
    "ChargePeriodStart",
    "ChargePeriodEnd",
    "ChargeCategory",
    "ChargeClass",
    "ChargeDescription",
    "ChargeFrequency",
    "ConsumedQuantity",
    "ConsumedUnit",
    "PricingQuantity",
    "PricingUnit",
    "BilledCost",
    "EffectiveCost",
    "ListCost",
    "ContractedCost",
    "BillingCurrency",
    "ListUnitPrice",
    "ContractedUnitPrice",
    "ServiceProviderName",
    "HostProviderName",
    "InvoiceIssuerName",
    "ProviderName",
    "PublisherName",
    "ServiceCategory",
    "ServiceSubcategory",
    "ServiceName",
    "SkuId",
    "SkuMeter",
    "SkuPriceId",
    "RegionId",
    "RegionName",
    "ResourceId",
    "ResourceName",
    "InvoiceId",
    "Tags",
    "x_Source",
    "x_LineKey",
    "x_LineStatus",
    "x_UsageType",
    "x_RawQuantity",
    "x_CorrectedQuantity",
    "x_RecordedAt",
    "x_MeasureKind",
    "x_Billable",
)
PROVIDER_NAMES = {"fastly": "Fastly", "akamai": "Akamai"}
CORRECTION = "Correction"


@dataclass(frozen=True, slots=True)
class FocusRow:
    values: dict[str, str]

    def __getitem__(self, column: str) -> str:
        return self.values.get(column, "")


def _timestamp(day: date) -> str:
    return datetime.combine(day, time(0), tzinfo=UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def _charge_period(month: Month, start: date, end: date) -> tuple[date, date]:
    """The line's period as [start, end) inside its billing month (providers' dates may not
    match the month they are reported for: then the whole month is the charge period)."""
    if not (month.first_day <= start <= end <= month.last_day):
        return month.first_day, (month + 1).first_day
    return start, end + timedelta(days=1)


def _base_values(line: Any) -> dict[str, str]:
    month = Month.parse(line.month)
    provider = PROVIDER_NAMES.get(line.provider, line.provider)
    start, end = _charge_period(month, line.period_start, line.period_end)
    name = line.product_name or line.product
    description = f"{name}: {line.usage_type}"
    if line.region:
        description += f" ({line.region})"
    if line.billable is False:
        description += " (not billable)"
    return {
        # Fastly's account-level usage names no account: the source stands for it.
        "BillingAccountId": line.account or line.source,
        "BillingPeriodStart": _timestamp(month.first_day),
        "BillingPeriodEnd": _timestamp((month + 1).first_day),
        "ChargePeriodStart": _timestamp(start),
        "ChargePeriodEnd": _timestamp(end),
        "ChargeCategory": "Usage",
        "ChargeDescription": description,
        "ChargeFrequency": "Usage-Based",
        "ConsumedUnit": line.unit,
        "ServiceProviderName": provider,
        "HostProviderName": provider,
        "InvoiceIssuerName": provider,
        "ProviderName": provider,
        "PublisherName": provider,
        "ServiceCategory": "Networking",
        "ServiceSubcategory": "Content Delivery",
        "ServiceName": name,
        "SkuId": line.product,
        "SkuMeter": line.usage_type,
        "RegionId": line.region,
        "RegionName": line.region,
        "x_Source": line.source,
        "x_LineKey": line.key_hash,
        "x_LineStatus": line.status,
        "x_UsageType": line.usage_type,
        "x_RawQuantity": "" if line.raw_quantity is None else canonical_decimal(line.raw_quantity),
        "x_MeasureKind": line.measure_kind,
        "x_Billable": "" if line.billable is None else str(line.billable).lower(),
    }


def line_rows(
    line: Any, restated: RestatedLine | None, pricing: FocusPricing | None = None
) -> list[FocusRow]:
    """The rows of one usage line: one, or the first finalized value plus its corrections."""
    base = _base_values(line)

    def cost(quantity: Decimal) -> dict[str, str]:
        return pricing.columns(line, quantity) if pricing is not None else {}

    if restated is None:
        quantity = line.quantity
        return [
            FocusRow({**base, "ConsumedQuantity": canonical_decimal(quantity), **cost(quantity)})
        ]
    versions = list(restated.versions)
    first = next(i for i, v in enumerate(versions) if v.status is LineStatus.FINALIZED)
    running = versions[first].quantity
    rows = [FocusRow({**base, "ConsumedQuantity": canonical_decimal(running), **cost(running)})]
    changes: list[tuple[Decimal, datetime | None]]
    changes = [(v.quantity, v.recorded_at) for v in versions[first + 1 :]]
    changes.append((line.quantity, None))
    for quantity, recorded_at in changes:
        if quantity == running:
            continue
        with localcontext(EXACT_CONTEXT):
            difference = quantity - running
        rows.append(
            FocusRow(
                {
                    **base,
                    "ChargeClass": CORRECTION,
                    "ConsumedQuantity": canonical_decimal(difference),
                    **cost(difference),
                    "x_CorrectedQuantity": canonical_decimal(quantity),
                    "x_RecordedAt": ""
                    if recorded_at is None
                    else recorded_at.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ"),
                }
            )
        )
        running = quantity
    return rows


async def focus_rows(
    engine: AsyncEngine,
    first: Month,
    last: Month,
    sources: Sequence[str] = (),
    settings: Settings | None = None,
) -> list[FocusRow]:
    """FOCUS rows for the account-level lines of months ``first``..``last`` (with their
    cost where ``settings`` declare rates or invoices carry them)."""
    c = lines_table.c
    query = (
        select(lines_table)
        .where(
            c.present == true(),
            c.service == "",
            c.month >= str(first),
            c.month <= str(last),
            c.source.in_(list(sources)) if sources else true(),
        )
        .order_by(c.source, c.month, c.product, c.usage_type, c.region, c.account, c.period_start)
    )
    async with reader(engine).connect() as conn:
        if conn.dialect.name == "postgresql":
            conn = await conn.execution_options(isolation_level="REPEATABLE READ")
        restated = {r.line_id: r for r in await restated_lines(conn, first, last, sources)}
        lines = (await conn.execute(query)).all()
        pricing = None
        if settings is not None:
            pricing = await focus_pricing(conn, settings, first, last, sources)
    teams = settings.teams if settings is not None else []
    rows: list[FocusRow] = []
    for line, span in month_rows(lines):
        owners = _line_owners(teams, pricing, line)
        for row in line_rows(line, restated.get(line.id), pricing):
            if span is not None:
                row.values["ChargePeriodStart"] = _timestamp(span[0])
                row.values["ChargePeriodEnd"] = _timestamp(span[1])
            rows.extend(by_owner(row, owners))
    if pricing is not None:
        owners_of_charges = pricing.charge_owners or [{}] * len(pricing.charges)
        for values, owners in zip(pricing.charges, owners_of_charges, strict=True):
            rows.extend(by_owner(FocusRow(values), owners))
        if teams:
            rows += [FocusRow(v) for v in pricing.rounding_rows(r.values for r in rows)]
    return rows


# Quantities and costs a row splits by its owners' shares (prices and identities stay).
_SPLIT_COLUMNS = (
    "ConsumedQuantity",
    "PricingQuantity",
    "BilledCost",
    "EffectiveCost",
    "ListCost",
    "ContractedCost",
)


def _line_owners(teams: Sequence[TeamSettings], pricing: FocusPricing | None, line: Any) -> Weights:
    if not teams:
        return {}
    key = (line.source, line.account, line.product, line.usage_type, line.region, line.service,
           Month.parse(line.month), line.period_start)  # fmt: skip
    if pricing is not None and key in pricing.owners:
        return dict(pricing.owners[key])
    return {owner_of(teams, line): Fraction(1)}


def by_owner(row: FocusRow, owners: Weights) -> list[FocusRow]:
    """The row once per owner (``Tags`` ``{"team": ...}``) with its share of the quantities
    and costs; unchanged when no teams are declared."""
    if not owners:
        return [row]
    out: list[FocusRow] = []
    for team, share in sorted(owners.items()):
        values = dict(row.values)
        values["Tags"] = json.dumps({"team": team}, separators=(",", ":"))
        if share != 1:
            for column in _SPLIT_COLUMNS:
                if values.get(column):
                    values[column] = _share(values[column], share)
        out.append(FocusRow(values))
    return out


def _share(value: str, share: Fraction) -> str:
    with localcontext(EXACT_CONTEXT):
        exact = Decimal(value) * share.numerator / share.denominator
        if exact.as_tuple().exponent < -10:  # type: ignore[operator]
            exact = exact.quantize(Decimal("1E-10"))
    return canonical_decimal(exact)


def month_rows(lines: Sequence[Any]) -> list[tuple[Any, tuple[date, date] | None]]:
    """The lines to export, and for a non-volume month in several periods the month's span.

    A volume's periods add up, so each period is a row. A percentile, a peak or a level does
    not: its month is one row, the period that gives the month its value (the largest for a
    percentile or peak, the latest for a gauge), over the span of all the month's periods, so
    a FOCUS tool adding rows never adds two halves of one 95/5 month.
    """
    groups: dict[tuple[Any, ...], list[Any]] = defaultdict(list)
    out: list[tuple[Any, tuple[date, date] | None]] = []
    for line in lines:
        if line.measure_kind == MeasureKind.VOLUME:
            out.append((line, None))
        else:
            groups[(line.source, line.month, line.account, line.product, line.usage_type,
                    line.region, line.unit)].append(line)  # fmt: skip
    for members in groups.values():
        if len(members) == 1:
            out.append((members[0], None))
            continue
        kind = MeasureKind(members[0].measure_kind)
        if kind is MeasureKind.GAUGE:
            chosen = max(members, key=lambda m: (m.period_start, m.quantity))
        else:
            chosen = max(members, key=lambda m: (m.quantity, m.period_start))
        month = Month.parse(chosen.month)
        start = min(_charge_period(month, m.period_start, m.period_end)[0] for m in members)
        end = max(_charge_period(month, m.period_start, m.period_end)[1] for m in members)
        out.append((chosen, (start, end)))
    return sorted(out, key=lambda pair: _order(pair[0]))


def _order(line: Any) -> tuple[Any, ...]:
    return (line.source, line.month, line.product, line.usage_type, line.region, line.account,
            line.period_start)  # fmt: skip


def render_focus_csv(rows: Iterable[FocusRow]) -> str:
    """CSV with a header row of :data:`FOCUS_COLUMNS`; empty cells for unknown values."""
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\r\n")
    writer.writerow(FOCUS_COLUMNS)
    for row in rows:
        writer.writerow([_cell(row[column]) for column in FOCUS_COLUMNS])
    return buffer.getvalue()


def _cell(value: str) -> str:
    # A spreadsheet runs a cell starting with one of these as a formula: keep it text.
    if value[:1] in ("=", "+", "@", "\t", "\r") or (
        value.startswith("-") and not _is_number(value)
    ):
        return "'" + value
    return value


def _is_number(value: str) -> bool:
    try:
        Decimal(value)
    except ArithmeticError:
        return False
    return True
