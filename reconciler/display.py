"""How numbers, units and counts read, the same in every view: the plan, ``state list``,
``findings``, reports, Slack and the other channels, and the findings' own messages.

- A quantity is its exact decimal with thousands separators and no trailing zeros
  (``1,234,567.5``): never rounded, so two views of one value never disagree.
- A money amount (a currency unit) is rounded to the currency's minor unit: ``601.70 USD``.
- The unit follows the number after a space; the provider's placeholder unit ``unit`` and
  an empty one are left out (``1,200``), never shown as ``1,200 unit``.
- A count agrees with its noun: ``1 line``, ``2 lines``.
"""

from __future__ import annotations

from decimal import Decimal

from reconciler.money import Money, is_currency

NO_UNIT = frozenset({"", "unit"})


def number(value: Decimal) -> str:
    """Exact decimal text with thousands separators: ``1234567.50`` → ``1,234,567.5``."""
    if not value.is_finite():
        return str(value)
    # format() never rounds, unlike normalize(), which applies the context's precision.
    text = format(value, ",f")
    if "." in text:
        text = text.rstrip("0").rstrip(".")
    return "0" if text in ("-0", "") else text


def signed(value: Decimal) -> str:
    """``+1,234.5``, ``-3``, ``0``."""
    text = number(value)
    return f"+{text}" if value > 0 else text


def amount(value: Decimal, unit: str, *, with_sign: bool = False) -> str:
    """A value with its unit: ``5,014.17 GB``, ``601.70 USD``, ``1,200`` (no unit)."""
    if is_currency(unit):
        return Money(value, unit).display(signed=with_sign)
    text = signed(value) if with_sign else number(value)
    return text if unit in NO_UNIT else f"{text} {unit}"


def percent(value: Decimal) -> str:
    """A signed percent: ``+8%``, ``-33.33%``."""
    return f"{signed(value)}%"


def plural(count: int, noun: str, plural_form: str | None = None) -> str:
    """``1 line``, ``2 lines``, ``1,024 lines`` (``plural_form`` for irregular nouns)."""
    return f"{count:,} {noun if count == 1 else plural_form or noun + 's'}"
