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
from collections.abc import Sequence
from dataclasses import dataclass
from decimal import Decimal, localcontext
from typing import Any

from sqlalchemy.ext.asyncio import AsyncConnection

from reconciler.domain import EXACT_CONTEXT, Month, canonical_decimal
from reconciler.reconcile.costing import CostSheet, LineCost, price_lines
from reconciler.reconcile.measures import PeriodValue, month_value
from reconciler.reconcile.spend import last_invoice_rates
from reconciler.settings import Settings
from reconciler.store.costs import cost_lines, invoice_amounts

PLACES = Decimal("1E-10")
_Key = tuple[Any, ...]


@dataclass(frozen=True, slots=True)
class LinePrice:
    currency: str
    unit_price: Decimal


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
    """The effective rate of every priced line of a FOCUS export."""

    prices: dict[_Key, LinePrice]

    def columns(self, line: Any, quantity: Decimal) -> dict[str, str]:
        key = (
            line.source, line.account, line.product, line.usage_type, line.region,
            line.service, Month.parse(line.month), line.period_start,
        )  # fmt: skip
        price = self.prices.get(key)
        if price is None:
            return {}
        with localcontext(EXACT_CONTEXT):
            cost = _amount(quantity * price.unit_price)
        unit_price = _amount(price.unit_price)
        return {
            "BillingCurrency": price.currency,
            "PricingQuantity": canonical_decimal(quantity),
            "PricingUnit": pricing_unit(line.unit, line.usage_type),
            "ListUnitPrice": unit_price,
            "ContractedUnitPrice": unit_price,
            "ListCost": cost,
            "ContractedCost": cost,
            "EffectiveCost": cost,
            "BilledCost": cost,
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
            prices[(*line.identity, line.month, line.period_start)] = LinePrice(cost.currency, rate)
        else:
            months[(*line.identity, line.month)].append(cost)
    for periods in months.values():
        lines = [c.line for c in periods]
        value = month_value(lines[0].kind, (PeriodValue(x.period_start, x.quantity) for x in lines))
        with localcontext(EXACT_CONTEXT):
            total = sum((c.amount for c in periods), Decimal(0))
            rate = total / value if value else Decimal(0)
        for line in lines:
            prices[(*line.identity, line.month, line.period_start)] = LinePrice(
                periods[0].currency, rate
            )
    return prices


async def focus_pricing(
    conn: AsyncConnection, settings: Settings, first: Month, last: Month, sources: Sequence[str]
) -> FocusPricing:
    """Price the export's months of every selected source (declared rates, else the last
    invoice's)."""
    months = first.range_to(last)
    prices: dict[_Key, LinePrice] = {}
    for source in settings.sources:
        if sources and source.name not in sources:
            continue
        lines = await cost_lines(conn, settings, source.name, months)
        invoices = await invoice_amounts(conn, source.name, source.provider, months)
        rates = list(settings.rates) or last_invoice_rates(invoices, lines)
        prices.update(_prices(price_lines(rates, settings.commitments, lines)))
    return FocusPricing(prices)
