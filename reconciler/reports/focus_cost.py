"""The cost columns of the FOCUS export, from the declared rate cards (docs/focus-mapping.md).

A line that a rate prices gets its expected cost: ``ContractedCost`` (and ``BilledCost``,
``EffectiveCost``, ``ListCost``: reconciler knows the contract, not a separate list price)
with ``ContractedUnitPrice`` (the line's effective rate), ``PricingQuantity`` and
``PricingUnit`` (the consumed quantity and unit) and ``BillingCurrency``. A correction row is
priced at the same rate. A stat the provider marks not billable costs 0. A line no rate
prices keeps these columns empty. Costs are exact; a quotient (a share of a tiered total, a
prorated month) is written to 10 decimal places.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from decimal import Decimal, localcontext
from fractions import Fraction
from typing import Any

from sqlalchemy.ext.asyncio import AsyncConnection

from reconciler.domain import EXACT_CONTEXT, Month, canonical_decimal
from reconciler.reconcile.allocation import (
    MonthKey,
    OwnerShares,
    Weights,
    allocate,
    exact_shares,
)
from reconciler.reconcile.commitments import CommitmentMonth
from reconciler.reconcile.costing import CostSheet, LineCost, price_lines
from reconciler.reconcile.measures import PeriodValue, month_value
from reconciler.reconcile.spend import last_invoice_rates
from reconciler.reports.focus_rounding import rounding_rows
from reconciler.settings import Settings
from reconciler.store.costs import cost_lines, invoice_amounts
from reconciler.team_settings import UNALLOCATED

PLACES = Decimal("1E-10")
_Key = tuple[Any, ...]


@dataclass(frozen=True, slots=True)
class LinePrice:
    currency: str
    unit_price: Decimal
    billed_share: Decimal = Decimal(1)  # of the cost, what is billed with the usage
    effective_price: Decimal | None = None  # EffectiveCost per unit (None: unit_price)


def pricing_unit(unit: str, usage_type: str) -> str:
    """The FOCUS UnitFormat of what a price is per: Fastly counts requests in units of
    10,000; a 95/5 or peak figure is priced per Mbps."""
    if unit.lower() == "gb":
        return "GB"
    if unit == "unit" and usage_type.endswith("Requests"):
        return "10000 Requests"
    if unit.endswith(" Mbps") or unit.endswith(" Gbps"):
        return unit.rsplit(" ", 1)[1]
    return unit


def _amount(value: Decimal) -> str:
    with localcontext(EXACT_CONTEXT):
        if value.as_tuple().exponent < -10:  # type: ignore[operator]
            value = value.quantize(PLACES)
    return canonical_decimal(value)


@dataclass
class FocusPricing:
    """The effective rate of every priced line of a FOCUS export, and with ``[[teams]]`` the
    owners of each priced line and charge row (fractions adding up to 1)."""

    prices: dict[_Key, LinePrice]
    charges: list[dict[str, str]] = field(default_factory=list)
    owners: dict[_Key, Weights] = field(default_factory=dict)
    charge_owners: list[Weights] = field(default_factory=list)
    # The report's amount of each team in each (source, month, currency), to the cent.
    team_amounts: dict[MonthKey, dict[str, Decimal]] = field(default_factory=dict)
    providers: dict[str, str] = field(default_factory=dict)

    def rounding_rows(self, rows: Iterable[Mapping[str, str]]) -> list[dict[str, str]]:
        """Rows that make each team's ``EffectiveCost`` add up to its report amount."""

        def charge(
            source: str, month: Month, currency: str, description: str, amount: Decimal
        ) -> dict[str, str]:
            provider = self.providers[source]
            return _charge_row(source, provider, month, currency, amount, "Adjustment",
                               "Recurring", description, None, effective=amount)  # fmt: skip

        return rounding_rows(rows, self.team_amounts, charge)

    def columns(self, line: Any, quantity: Decimal) -> dict[str, str]:
        key = (
            line.source,
            line.account,
            line.product,
            line.usage_type,
            line.region,
            line.service,
            Month.parse(line.month),
            line.period_start,
        )
        price = self.prices.get(key)
        if price is None:
            return {}
        with localcontext(EXACT_CONTEXT):
            exact = quantity * price.unit_price
            cost = _amount(exact)
            billed = _amount(exact * price.billed_share)
            per_unit = price.unit_price if price.effective_price is None else price.effective_price
            effective = _amount(quantity * per_unit)
        unit_price = _amount(price.unit_price)
        return {
            "BillingCurrency": price.currency,
            "PricingQuantity": canonical_decimal(quantity),
            "PricingUnit": pricing_unit(line.unit, line.usage_type),
            "ListUnitPrice": unit_price,
            "ContractedUnitPrice": unit_price,
            "ListCost": cost,
            "ContractedCost": cost,
            # A term commitment's purchase is spread over the usage that draws it down.
            "EffectiveCost": effective,
            # A commitment's purchase is billed on its own row, not again with the usage.
            "BilledCost": billed,
        }


def _prices(sheet: CostSheet) -> dict[_Key, LinePrice]:
    """Each line's effective rate. A percentile, peak or gauge month is one FOCUS row (the
    period that gives the month its value): every period's rate is the month's whole cost
    over that value, so the one row carries the month's cost."""
    prices: dict[_Key, LinePrice] = {}
    months: dict[tuple[Any, ...], list[LineCost]] = defaultdict(list)
    for cost in sheet.lines:
        line = cost.line
        if line.additive:
            with localcontext(EXACT_CONTEXT):
                rate = cost.amount / line.quantity if line.quantity else Decimal(0)
                share = (cost.amount - cost.prepaid) / cost.amount if cost.amount else Decimal(1)
                effective = cost.effective / line.quantity if line.quantity else Decimal(0)
            key = (*line.identity, line.month, line.period_start)
            prices[key] = LinePrice(cost.currency, rate, share, effective)
        else:
            months[(*line.identity, line.month)].append(cost)
    for periods in months.values():
        lines = [c.line for c in periods]
        value = month_value(lines[0].kind, (PeriodValue(x.period_start, x.quantity) for x in lines))
        with localcontext(EXACT_CONTEXT):
            total = sum((c.amount for c in periods), Decimal(0))
            prepaid = sum((c.prepaid for c in periods), Decimal(0))
            rate = total / value if value else Decimal(0)
            share = (total - prepaid) / total if total else Decimal(1)
            effective = sum((c.effective for c in periods), Decimal(0)) / value if value else rate
        for line in lines:
            prices[(*line.identity, line.month, line.period_start)] = LinePrice(
                periods[0].currency, rate, share, effective
            )
    return prices


async def focus_pricing(
    conn: AsyncConnection, settings: Settings, first: Month, last: Month, sources: Sequence[str]
) -> FocusPricing:
    """Price the export's months of every selected source (declared rates, else the last
    invoice's)."""
    months = first.range_to(last)
    pricing = FocusPricing({})
    for source in settings.sources:
        if sources and source.name not in sources:
            continue
        lines = await cost_lines(conn, settings, source.name, months)
        invoices = await invoice_amounts(conn, source.name, source.provider, months)
        rates = list(settings.rates) or last_invoice_rates(invoices, lines)
        sheet = price_lines(rates, settings.commitments, lines, settings.credits)
        pricing.prices.update(_prices(sheet))
        charges = _charges(sheet, settings, source.name, source.provider)
        pricing.charges += [row for row, _ in charges]
        pricing.providers[source.name] = source.provider
        if settings.teams:
            shares = exact_shares(sheet, lines, settings.teams, settings.showback)
            pricing.owners.update(shares.lines)
            pricing.charge_owners += [_charge_owners(shares, key) for _, key in charges]
            allocation = allocate(sheet, lines, settings.teams, settings.showback)
            for c in allocation.costs:
                key = (c.source, c.month, c.currency)
                pricing.team_amounts.setdefault(key, {})[c.team] = c.amount
    return pricing


def _charge_owners(shares: OwnerShares, key: MonthKey) -> Weights:
    """A commitment's or credit's row split as the showback splits it: the shared
    adjustment's weights, else (a purchase) the owners' parts of the month."""
    if key in shares.adjustments:
        return dict(shares.adjustments[key])
    parts = shares.months.get(key, {})
    total = sum(parts.values(), Fraction(0))
    if total <= 0:
        return {UNALLOCATED: Fraction(1)}
    return {name: value / total for name, value in parts.items() if value}


def _charges(
    sheet: CostSheet, settings: Settings, source: str, provider: str
) -> list[tuple[dict[str, str], MonthKey]]:
    """Rows of their own: commitment purchases (and a money commitment's true-up) and
    contract credits, each with its (source, month, currency)."""
    periods = {c.label: c.period for c in settings.commitments}
    units = {c.label: pricing_unit(c.unit or "", c.usage_type) for c in settings.commitments}
    rows: list[tuple[dict[str, str], MonthKey]] = []
    for month in sheet.commitments:
        if periods.get(month.commitment) == "term" and not month.money and month.shortfall:
            rows.append(
                (_unused_row(source, provider, month), (source, month.month, month.currency))
            )
        if month.money:
            amount = month.adjustment  # what the commitment adds to the rated usage
            category, quantity = "Adjustment", None
        else:
            amount = month.purchase
            category, quantity = "Purchase", month.committed
        if amount == 0:
            continue
        frequency = "One-Time" if periods.get(month.commitment) == "term" else "Recurring"
        key = (source, month.month, month.currency)
        rows.append(
            (
                _charge_row(
                    source,
                    provider,
                    month.month,
                    month.currency,
                    amount,
                    category,
                    frequency,
                    f"{month.commitment} commitment",
                    quantity,
                    effective=Decimal(0) if category == "Purchase" else amount,
                    unit=units.get(month.commitment, ""),
                ),
                key,
            )
        )
    for credit in sheet.credits:
        row = _charge_row(
            source,
            provider,
            credit.month,
            credit.currency,
            -credit.amount,
            "Credit",
            "Recurring",
            f"{credit.credit} credit",
            None,
            effective=-credit.amount,
        )
        rows.append((row, (source, credit.month, credit.currency)))
    return rows


def _unused_row(source: str, provider: str, month: CommitmentMonth) -> dict[str, str]:
    """What is left of a term commitment when the term ends: billed with the purchase, it is
    the last month's cost of nothing used (so the term's EffectiveCost adds up to what it
    billed)."""
    row = _charge_row(
        source,
        provider,
        month.month,
        month.currency,
        Decimal(0),
        "Usage",
        "Usage-Based",
        f"{month.commitment} commitment: {canonical_decimal(month.shortfall_quantity)} unused",
        None,
        effective=month.shortfall,
    )
    return row


def _charge_row(
    source: str,
    provider: str,
    month: Month,
    currency: str,
    billed: Decimal,
    category: str,
    frequency: str,
    description: str,
    quantity: Decimal | None,
    *,
    effective: Decimal,
    unit: str = "",
) -> dict[str, str]:
    from reconciler.reports.focus import PROVIDER_NAMES  # focus imports this module

    name = PROVIDER_NAMES.get(provider, provider)
    start, end = month.first_day, (month + 1).first_day
    row = {
        "BillingAccountId": source,
        "BillingPeriodStart": f"{start.isoformat()}T00:00:00Z",
        "BillingPeriodEnd": f"{end.isoformat()}T00:00:00Z",
        "ChargePeriodStart": f"{start.isoformat()}T00:00:00Z",
        "ChargePeriodEnd": f"{end.isoformat()}T00:00:00Z",
        "ChargeCategory": category,
        "ChargeDescription": description,
        "ChargeFrequency": frequency,
        "BilledCost": _amount(billed),
        "EffectiveCost": _amount(effective),
        "ListCost": _amount(billed),
        "ContractedCost": _amount(billed),
        "BillingCurrency": currency,
        "ServiceProviderName": name,
        "HostProviderName": name,
        "InvoiceIssuerName": name,
        "ProviderName": name,
        "PublisherName": name,
        "ServiceCategory": "Networking",
        "ServiceSubcategory": "Content Delivery",
        "ServiceName": description,
        "x_Source": source,
    }
    if quantity is not None and quantity:
        with localcontext(EXACT_CONTEXT):
            price = billed / quantity
        row.update(
            {
                "PricingQuantity": canonical_decimal(quantity),
                "PricingUnit": unit,
                "ListUnitPrice": _amount(price),
                "ContractedUnitPrice": _amount(price),
                "SkuId": f"commitment:{description}",
            }
        )
    return row
