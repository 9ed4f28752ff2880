"""Commitments: what a committed month (or contract term) bills. Pure: no I/O, no clock.

A quantity commitment bills the committed quantity at ``commit_price`` whatever is used, and
what is used above it at ``overage_price``; a percentile commitment (95/5 Mbps) compares the
month's percentile value, never a sum. A money commitment bills at least ``amount``: the
month's rated cost, or the commitment when the cost is below it. Below its commit, a month is
billed at the commit and the shortfall (unused quantity or money) is shown.

A term commitment spans ``effective_from``..``effective_to``: its commit is bought once (a
commitment purchase in the term's first month) and each month's usage draws it down; usage
beyond what is left is overage. A term shortfall is what is left when the term ends.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from decimal import Decimal, localcontext

from reconciler.cost_settings import CommitmentSettings, CreditSettings
from reconciler.domain import EXACT_CONTEXT, Month

ZERO = Decimal(0)


@dataclass(frozen=True, slots=True)
class CommitmentMonth:
    """What a commitment bills in one month, and where it stands."""

    commitment: str
    source: str
    month: Month
    money: bool
    currency: str
    used: Decimal
    committed: Decimal
    purchase: Decimal
    overage_quantity: Decimal
    overage: Decimal
    shortfall_quantity: Decimal
    shortfall: Decimal
    remaining: Decimal

    @property
    def billed(self) -> Decimal:
        with localcontext(EXACT_CONTEXT):
            return self.purchase + self.overage

    @property
    def adjustment(self) -> Decimal:
        """What a money commitment adds to the month's rated cost (its lines already carry
        what a quantity commitment bills)."""
        if not self.money:
            return ZERO
        with localcontext(EXACT_CONTEXT):
            return self.billed - self.used

    def describe(self, unit: str) -> str:
        used = f"{self.used} {unit}" if unit else f"{self.used} {self.currency}"
        text = f"{self.commitment}: {used} used of {self.committed}"
        if self.overage_quantity:
            text += f"; overage {self.overage_quantity} -> {self.overage} {self.currency}"
        if self.shortfall:
            text += f"; shortfall {self.shortfall} {self.currency}"
        return text


def months_of(commitment: CommitmentSettings | CreditSettings, month: Month) -> bool:
    """Whether ``month`` lies (at least partly) within the commitment's dates."""
    start, end = commitment.effective_from, commitment.effective_to
    return (start is None or month.last_day >= start) and (end is None or month.first_day <= end)


def quantity_month(
    commitment: CommitmentSettings, source: str, month: Month, used: Decimal
) -> CommitmentMonth:
    """A monthly quantity commitment (volume total or percentile value ``used``)."""
    assert commitment.quantity is not None and commitment.commit_price is not None
    committed = commitment.quantity
    overage_price = _overage_price(commitment)
    with localcontext(EXACT_CONTEXT):
        over = max(ZERO, used - committed)
        short = max(ZERO, committed - used)
        return CommitmentMonth(
            commitment.label,
            source,
            month,
            False,
            commitment.currency,
            used,
            committed,
            committed * commitment.commit_price,
            over,
            over * overage_price,
            short,
            short * commitment.commit_price,
            short,
        )


def money_month(
    commitment: CommitmentSettings, source: str, month: Month, cost: Decimal
) -> CommitmentMonth:
    """A monthly money commitment over the month's rated ``cost``."""
    assert commitment.amount is not None
    committed = commitment.amount.amount
    with localcontext(EXACT_CONTEXT):
        over = max(ZERO, cost - committed)
        short = max(ZERO, committed - cost)
    return CommitmentMonth(
        commitment.label,
        source,
        month,
        True,
        commitment.currency,
        cost,
        committed,
        committed,
        over,
        over,
        short,
        short,
        short,
    )


def term_months(
    commitment: CommitmentSettings, source: str, usage: Sequence[tuple[Month, Decimal]]
) -> list[CommitmentMonth]:
    """A term commitment's months in order: ``usage`` is each month's quantity (or rated cost
    for a money commitment). The purchase is billed in the term's first month."""
    assert commitment.effective_from is not None and commitment.effective_to is not None
    first = Month.of(commitment.effective_from)
    last = Month.of(commitment.effective_to)
    money = commitment.amount is not None
    committed = commitment.amount.amount if commitment.amount else commitment.quantity
    assert committed is not None
    price = Decimal(1) if money else commitment.commit_price
    assert price is not None
    overage_price = Decimal(1) if money else _overage_price(commitment)
    remaining = committed
    months: list[CommitmentMonth] = []
    with localcontext(EXACT_CONTEXT):
        for month, used in sorted(usage):
            if not first <= month <= last:
                continue
            drawn = min(remaining, used)
            over = used - drawn
            remaining -= drawn
            short = remaining if month == last else ZERO
            months.append(
                CommitmentMonth(
                    commitment.label,
                    source,
                    month,
                    money,
                    commitment.currency,
                    used,
                    committed,
                    committed * price if month == first else ZERO,
                    over,
                    over * overage_price,
                    short,
                    short * price,
                    remaining,
                )
            )
    return months


def _overage_price(commitment: CommitmentSettings) -> Decimal:
    price = commitment.overage_price or commitment.commit_price
    assert price is not None
    return price
