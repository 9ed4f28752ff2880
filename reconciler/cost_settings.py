"""The ``[[rates]]``, ``[[commitments]]`` tables of the configuration.

A rate prices the lines it matches (``source``, ``product``, ``usage_type``, ``region``,
``service``: exact or glob, as expectations) in one ISO 4217 currency, with a flat
``unit_price`` or graduated ``tiers`` applied to the month's total, from ``effective_from``
to ``effective_to`` (both days inclusive). A commitment is a monthly or contract-term commit
in quantity (``quantity`` + ``unit`` at ``commit_price``, with ``overage_price``) or in money
(``amount``).
"""

from __future__ import annotations

from datetime import date
from decimal import Decimal, InvalidOperation
from itertools import pairwise
from typing import Annotated, Any, Literal

from pydantic import BeforeValidator, Field, PlainSerializer, model_validator

from reconciler.money import Money, check_currency
from reconciler.settings_base import StrictSettings


def non_negative_decimal(value: Any, what: str) -> Decimal:
    """An exact, finite, non-negative Decimal from a TOML number or string; ``what`` names it
    in the error (a price, a quantity)."""
    if isinstance(value, bool):
        raise ValueError(f"invalid {what} {value!r}")
    try:
        number = Decimal(str(value).replace("_", "").strip())
    except InvalidOperation:
        raise ValueError(f"invalid {what} {value!r}") from None
    if not number.is_finite() or number < 0:
        raise ValueError(f"{what} must be a finite number >= 0, got {value!r}")
    return number


def parse_price(value: Any) -> Decimal:
    return non_negative_decimal(value, "price")


Price = Annotated[Decimal, BeforeValidator(parse_price)]
Currency = Annotated[str, BeforeValidator(check_currency)]
MoneyValue = Annotated[
    Money,
    BeforeValidator(Money.parse),
    PlainSerializer(lambda m: f"{m.exact} {m.currency}", return_type=str, when_used="json"),
]


class _Matcher(StrictSettings):
    name: str = ""
    source: str = "*"
    product: str = "*"
    usage_type: str = "*"
    region: str = "*"
    service: str = "*"
    per_service: bool = False
    effective_from: date | None = None
    effective_to: date | None = None

    @model_validator(mode="after")
    def _dates_in_order(self) -> Any:
        if (
            self.effective_from is not None
            and self.effective_to is not None
            and self.effective_to < self.effective_from
        ):
            raise ValueError("effective_to is before effective_from")
        return self

    @property
    def label(self) -> str:
        if self.name:
            return self.name
        parts = [p for p in (self.source, self.product, self.usage_type, self.region) if p != "*"]
        return "/".join(parts) or "all usage"


class TierSettings(StrictSettings):
    """One step of a graduated price: units up to ``up_to`` (cumulative) at ``unit_price``."""

    up_to: Price | None = None
    unit_price: Price


class RateSettings(_Matcher):
    currency: Currency
    unit: str | None = None
    unit_price: Price | None = None
    tiers: list[TierSettings] = Field(default_factory=list)

    @model_validator(mode="after")
    def _one_price(self) -> RateSettings:
        if (self.unit_price is None) == (not self.tiers):
            raise ValueError("set either unit_price or tiers")
        bounds = [t.up_to for t in self.tiers]
        if bounds and any(b is None for b in bounds[:-1]):
            raise ValueError("only the last tier may leave up_to unset")
        given = [b for b in bounds if b is not None]
        if any(b <= a for a, b in pairwise(given)) or (given and given[0] == 0):
            raise ValueError("tiers' up_to must be positive and increase")
        return self


class CommitmentSettings(_Matcher):
    """A commit per month (``period = "month"``) or over the contract term (``"term"``)."""

    period: Literal["month", "term"] = "month"
    currency: Currency
    quantity: Price | None = None
    unit: str | None = None
    commit_price: Price | None = None
    overage_price: Price | None = None
    amount: MoneyValue | None = None

    @model_validator(mode="after")
    def _one_commit(self) -> CommitmentSettings:
        if (self.quantity is None) == (self.amount is None):
            raise ValueError("set either quantity (with unit and commit_price) or amount")
        if self.quantity is not None and (self.unit is None or self.commit_price is None):
            raise ValueError("a quantity commitment needs unit and commit_price")
        if self.amount is not None and self.amount.currency != self.currency:
            raise ValueError(
                f"amount is in {self.amount.currency}, the commitment in {self.currency}"
            )
        if self.period == "term" and (self.effective_from is None or self.effective_to is None):
            raise ValueError("a term commitment needs effective_from and effective_to")
        return self


class CreditSettings(_Matcher):
    """A credit the contract grants every month from ``effective_from`` to ``effective_to``
    (a service credit, a discount in money): the month's expected total is lower by it."""

    amount: MoneyValue

    @model_validator(mode="after")
    def _positive(self) -> CreditSettings:
        if self.amount.amount <= 0:
            raise ValueError("a credit's amount is positive (it is subtracted)")
        return self


def rate_card_problems(rates: list[RateSettings]) -> list[str]:
    """Versions of one rate card (same matchers) must share a currency and never overlap."""
    cards: dict[tuple[object, ...], list[tuple[int, RateSettings]]] = {}
    for index, rate in enumerate(rates):
        key = (
            rate.source,
            rate.product,
            rate.usage_type,
            rate.region,
            rate.service,
            rate.per_service,
        )
        cards.setdefault(key, []).append((index, rate))
    problems: list[str] = []
    for versions in cards.values():
        first_index, first = versions[0]
        for index, rate in versions[1:]:
            if rate.currency != first.currency:
                problems.append(
                    f"rates[{index}]: currency {rate.currency} differs from rates[{first_index}] "
                    f"({first.currency}) for the same lines"
                )
        ordered = sorted(versions, key=lambda v: v[1].effective_from or date.min)
        for (a_index, a), (b_index, b) in pairwise(ordered):
            if (
                a.effective_to is None
                or b.effective_from is None
                or b.effective_from <= a.effective_to
            ):
                problems.append(
                    f"rates[{b_index}]: in force on the same days as rates[{a_index}] for the "
                    "same lines (set effective_from / effective_to)"
                )
    return problems
