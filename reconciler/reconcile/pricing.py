"""Rates: what a month of usage costs by a rate card. Pure: no I/O, no clock.

A rate card is one or more versions of a ``[[rates]]`` table with the same matchers, each in
force from ``effective_from`` to ``effective_to`` (days, inclusive). A month is priced by the
versions in force during it: each version prices the part of the month it covers. Volume
(additive) usage is allocated to a version by the days of each line's period inside the
version's window; graduated tiers apply to that part's total. A percentile or peak value is
not a flow: it is priced whole, by each version's price weighted by the share of the month's
days the version covers. Amounts are exact; nothing is rounded here.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import date, timedelta
from decimal import Decimal, localcontext

from reconciler.cost_settings import RateSettings
from reconciler.domain import EXACT_CONTEXT, Month

ZERO = Decimal(0)


@dataclass(frozen=True, slots=True)
class Tier:
    """Units up to ``up_to`` (cumulative; None: the rest) cost ``unit_price`` each."""

    up_to: Decimal | None
    unit_price: Decimal


@dataclass(frozen=True, slots=True)
class RateVersion:
    """One version of a rate card: its prices and the days it is in force."""

    label: str
    currency: str
    unit: str | None
    tiers: tuple[Tier, ...]
    effective_from: date | None
    effective_to: date | None

    @classmethod
    def of(cls, rate: RateSettings) -> RateVersion:
        if rate.unit_price is not None:
            tiers: tuple[Tier, ...] = (Tier(None, rate.unit_price),)
        else:
            tiers = tuple(Tier(t.up_to, t.unit_price) for t in rate.tiers)
        return cls(
            rate.label, rate.currency, rate.unit, tiers, rate.effective_from, rate.effective_to
        )

    def window(self, month: Month) -> tuple[date, date] | None:
        """The days of ``month`` this version is in force (None: not at all)."""
        first = max(month.first_day, self.effective_from or month.first_day)
        last = min(month.last_day, self.effective_to or month.last_day)
        return (first, last) if first <= last else None


@dataclass(frozen=True, slots=True)
class Usage:
    """A quantity of one unit covering the days ``start``..``end`` (inclusive)."""

    quantity: Decimal
    unit: str
    start: date
    end: date

    @property
    def days(self) -> int:
        return (self.end - self.start).days + 1


@dataclass(frozen=True, slots=True)
class Charge:
    """One step of a computation: ``quantity`` at ``unit_price`` (times ``weight``)."""

    rate: str
    start: date
    end: date
    tier: int
    quantity: Decimal
    unit_price: Decimal
    weight: Decimal
    amount: Decimal

    def describe(self, unit: str, currency: str) -> str:
        text = f"{self.rate}: {self.quantity} {unit} x {self.unit_price} {currency}"
        if self.tier:
            text += f" (tier {self.tier})"
        if self.weight != 1:
            text += f" x {self.weight.normalize():f} of the month"
        return f"{text} [{self.start}..{self.end}]"


@dataclass(frozen=True, slots=True)
class PricedMonth:
    """The cost of one month of what a rate card matches, with how it was computed."""

    currency: str
    amount: Decimal
    quantity: Decimal
    charges: tuple[Charge, ...]

    @property
    def unit_price(self) -> Decimal | None:
        """The effective rate (amount per unit), None for no usage."""
        if self.quantity == 0:
            return None
        with localcontext(EXACT_CONTEXT):
            return self.amount / self.quantity


def tiered(quantity: Decimal, tiers: Sequence[Tier]) -> list[tuple[int, Decimal, Decimal]]:
    """(tier number from 1, units in it, unit price) for ``quantity`` through graduated tiers.

    A single untiered price is tier 0.
    """
    if len(tiers) == 1 and tiers[0].up_to is None:
        return [(0, quantity, tiers[0].unit_price)]
    steps: list[tuple[int, Decimal, Decimal]] = []
    below = ZERO
    with localcontext(EXACT_CONTEXT):
        for number, tier in enumerate(tiers, start=1):
            if quantity <= below:
                break
            top = quantity if tier.up_to is None else min(quantity, tier.up_to)
            steps.append((number, top - below, tier.unit_price))
            if tier.up_to is None:
                break
            below = tier.up_to
    return steps


def overlap_days(usage: Usage, first: date, last: date) -> int:
    start, end = max(usage.start, first), min(usage.end, last)
    return max(0, (end - start).days + 1)


def version_part(usage: Usage, first: date, last: date) -> Decimal:
    """What of ``usage`` falls in a version's window ``first``..``last`` (by days)."""
    if usage.days <= 0:
        return ZERO
    with localcontext(EXACT_CONTEXT):
        return usage.quantity * overlap_days(usage, first, last) / usage.days


@dataclass(frozen=True, slots=True)
class VolumeParts:
    """The part of a month's additive usage each version in force prices: kept, one line's
    change re-prices the month from these totals without summing all its lines again."""

    versions: tuple[RateVersion, ...]
    month: Month
    parts: tuple[Decimal | None, ...]  # per version; None: not in force this month

    @classmethod
    def of(
        cls, versions: Sequence[RateVersion], month: Month, usage: Sequence[Usage]
    ) -> VolumeParts:
        parts: list[Decimal | None] = []
        with localcontext(EXACT_CONTEXT):
            for version in versions:
                window = version.window(month)
                parts.append(
                    None if window is None else sum((version_part(u, *window) for u in usage), ZERO)
                )
        return cls(tuple(versions), month, tuple(parts))

    def replaced(self, old: Usage, new: Usage) -> VolumeParts:
        """The parts with one line's usage ``old`` changed to ``new``."""
        parts: list[Decimal | None] = []
        with localcontext(EXACT_CONTEXT):
            for version, part in zip(self.versions, self.parts, strict=True):
                window = version.window(self.month)
                if part is None or window is None:
                    parts.append(part)
                else:
                    parts.append(part - version_part(old, *window) + version_part(new, *window))
        return VolumeParts(self.versions, self.month, tuple(parts))

    @property
    def amount(self) -> Decimal:
        """What the parts cost through each version's tiers."""
        with localcontext(EXACT_CONTEXT):
            return sum(
                (
                    units * price
                    for version, part in zip(self.versions, self.parts, strict=True)
                    if part is not None
                    for _, units, price in tiered(part, version.tiers)
                ),
                ZERO,
            )


def price_volume(
    versions: Sequence[RateVersion], month: Month, usage: Sequence[Usage]
) -> PricedMonth | None:
    """Additive usage of ``month`` priced by the versions in force (None: no version is)."""
    charges: list[Charge] = []
    with localcontext(EXACT_CONTEXT):
        total = sum((u.quantity for u in usage), ZERO)
        for version in versions:
            window = version.window(month)
            if window is None:
                continue
            first, last = window
            part = sum((version_part(u, first, last) for u in usage), ZERO)
            for tier, units, price in tiered(part, version.tiers):
                charges.append(
                    Charge(
                        version.label, first, last, tier, units, price, Decimal(1), units * price
                    )
                )
    return _priced(versions, month, total, charges)


def price_value(
    versions: Sequence[RateVersion], month: Month, value: Decimal
) -> PricedMonth | None:
    """A month's percentile or peak ``value`` priced whole, each version weighted by days."""
    charges: list[Charge] = []
    with localcontext(EXACT_CONTEXT):
        for version in versions:
            window = version.window(month)
            if window is None:
                continue
            first, last = window
            weight = Decimal((last - first).days + 1) / month.days
            for tier, units, price in tiered(value, version.tiers):
                charges.append(
                    Charge(
                        version.label,
                        first,
                        last,
                        tier,
                        units,
                        price,
                        weight,
                        units * price * weight,
                    )
                )
    return _priced(versions, month, value, charges)


def _priced(
    versions: Sequence[RateVersion], month: Month, quantity: Decimal, charges: list[Charge]
) -> PricedMonth | None:
    if not any(v.window(month) for v in versions):
        return None
    with localcontext(EXACT_CONTEXT):
        amount = sum((c.amount for c in charges), ZERO)
    return PricedMonth(versions[0].currency, amount, quantity, tuple(charges))


def uncovered_days(versions: Sequence[RateVersion], month: Month) -> list[date]:
    """Days of ``month`` no version prices (a gap in a rate card's history)."""
    covered: set[date] = set()
    for version in versions:
        window = version.window(month)
        if window is not None:
            day = window[0]
            while day <= window[1]:
                covered.add(day)
                day += timedelta(days=1)
    return [
        month.first_day + timedelta(days=i)
        for i in range(month.days)
        if month.first_day + timedelta(days=i) not in covered
    ]
