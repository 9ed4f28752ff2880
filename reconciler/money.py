"""Money: an exact Decimal amount in one ISO 4217 currency.

Amounts are never rounded while they are computed or stored; only :func:`display` rounds,
half to even, to the currency's minor unit (two decimals for USD and EUR, none for JPY,
three for KWD). Amounts in different currencies are never added: :meth:`Money.__add__`
refuses, and totals are kept per currency.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass
from decimal import ROUND_HALF_EVEN, Decimal, InvalidOperation, localcontext
from functools import cache
from typing import Any

from babel.numbers import get_currency_precision, list_currencies

from reconciler.domain import EXACT_CONTEXT, canonical_decimal

_MONEY_RE = re.compile(r"^\s*(-?[0-9][0-9_,]*(?:\.[0-9]+)?)\s+([A-Za-z]{3})\s*$")


@cache
def _known_currencies() -> frozenset[str]:
    return frozenset(list_currencies())


def check_currency(code: Any) -> str:
    """The code itself when it is an ISO 4217 currency code (upper case), else ValueError."""
    if not isinstance(code, str) or code.upper() != code or code not in _known_currencies():
        raise ValueError(f"unknown currency {code!r} (expected an ISO 4217 code such as 'USD')")
    return code


def is_currency(code: str) -> bool:
    return code in _known_currencies()


@cache
def minor_unit(currency: str) -> Decimal:
    """The smallest amount a currency is shown in: ``0.01`` for USD, ``1`` for JPY."""
    return Decimal(1).scaleb(-get_currency_precision(currency))


@dataclass(frozen=True, order=True, slots=True)
class Money:
    """An exact amount in one currency."""

    amount: Decimal
    currency: str

    @classmethod
    def zero(cls, currency: str) -> Money:
        return cls(Decimal(0), currency)

    @classmethod
    def parse(cls, value: Any) -> Money:
        """``"5000 USD"`` (an amount, a space and an ISO 4217 code)."""
        if isinstance(value, Money):
            return value
        match = _MONEY_RE.match(value) if isinstance(value, str) else None
        if match is None:
            raise ValueError(f"invalid amount {value!r} (expected e.g. '5000 USD')")
        try:
            amount = Decimal(match.group(1).replace("_", "").replace(",", ""))
        except InvalidOperation:
            raise ValueError(f"invalid amount {value!r}") from None
        return cls(amount, check_currency(match.group(2)))

    def __add__(self, other: Money) -> Money:
        self._same_currency(other)
        with localcontext(EXACT_CONTEXT):
            return Money(self.amount + other.amount, self.currency)

    def __sub__(self, other: Money) -> Money:
        self._same_currency(other)
        with localcontext(EXACT_CONTEXT):
            return Money(self.amount - other.amount, self.currency)

    def __neg__(self) -> Money:
        return Money(-self.amount, self.currency)

    def _same_currency(self, other: Money) -> None:
        if other.currency != self.currency:
            raise ValueError(f"cannot combine {self.currency} and {other.currency} amounts")

    @property
    def exact(self) -> str:
        """The exact amount as text (no exponent, no trailing zeros)."""
        return canonical_decimal(self.amount)

    def rounded(self) -> Decimal:
        """The amount rounded half to even to the currency's minor unit (for display)."""
        with localcontext(EXACT_CONTEXT):
            return self.amount.quantize(minor_unit(self.currency), ROUND_HALF_EVEN)

    def display(self, *, signed: bool = False) -> str:
        """``1,234.56 USD`` (``+1,234.56 USD`` with ``signed``), rounded to the minor unit."""
        value = self.rounded()
        places = max(0, -minor_unit(self.currency).as_tuple().exponent)  # type: ignore[operator]
        text = f"{value:,.{places}f}"
        if text.startswith("-") and value == 0:
            text = text[1:]
        if signed and not text.startswith("-"):
            text = "+" + text
        return f"{text} {self.currency}"

    def __str__(self) -> str:
        return self.display()


def totals_by_currency(amounts: Iterable[Money]) -> dict[str, Money]:
    """Sums per currency, sorted by currency code: amounts of two currencies never meet."""
    totals: dict[str, Money] = {}
    for money in amounts:
        current = totals.get(money.currency)
        totals[money.currency] = money if current is None else current + money
    return dict(sorted(totals.items()))


def display(amount: Decimal, currency: str, *, signed: bool = False) -> str:
    return Money(amount, currency).display(signed=signed)
