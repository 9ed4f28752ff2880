"""Exact JSON and strict field readers shared by the provider normalizers.

Numbers are parsed as :class:`~decimal.Decimal` (integers too), digit for digit, so no
quantity ever passes through a float. ``NaN``, ``Infinity`` and ``-Infinity`` (which Python's
json module accepts although JSON does not) become a :class:`NonFinite` marker that no reader
accepts as a number, so the error can name the record it was found in.

Numbers are bounded when read: a quantity has at most :data:`MAX_INTEGER_DIGITS` digits
before the point and :data:`MAX_FRACTION_DIGITS` after it (``1e4300`` or ``1e99999999999999``
is bad provider data, never a value the engine stores, formats or sums).

Readers raise :class:`BadRecord` with the field's problem only; the normalizer's loop adds
which record it was (``page 2 record 17 (month 2024-05, service SU1Z...)``) and turns it
into a BadProviderDataError for the whole pull.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterable
from datetime import UTC, date, datetime
from decimal import Decimal
from functools import lru_cache
from typing import Any, Final

from reconciler.domain import Month

__all__ = [
    "MAX_FRACTION_DIGITS",
    "MAX_INTEGER_DIGITS",
    "BadRecord",
    "NonFinite",
    "bounded",
    "clean",
    "describe",
    "fits",
    "flag",
    "integer",
    "items",
    "loads_exact",
    "month",
    "optional_number",
    "optional_quantity",
    "optional_text",
    "period_day",
    "quantity",
    "show",
    "text",
    "timestamp",
]


MAX_INTEGER_DIGITS: Final = 30
MAX_FRACTION_DIGITS: Final = 30
MAX_COUNT: Final = 10**12


class NonFinite:
    """A bare ``NaN`` / ``Infinity`` / ``-Infinity`` token: present, but not a number."""

    __slots__ = ("token",)

    def __init__(self, token: str) -> None:
        self.token = token

    def __repr__(self) -> str:
        return self.token


_DECODER: Final = json.JSONDecoder(
    parse_float=Decimal, parse_int=Decimal, parse_constant=NonFinite, strict=True
)


def loads_exact(data: bytes | bytearray | str) -> Any:
    """Parse JSON text with every number as an exact Decimal; raises ValueError if invalid."""
    try:
        text = data.decode("utf-8") if isinstance(data, bytes | bytearray) else data
    except UnicodeDecodeError as e:
        raise ValueError(f"not UTF-8 text (byte {e.start})") from None
    if text.startswith("\ufeff"):
        text = text[1:]
    return _DECODER.decode(text)


# What a provider string must not carry into terminals, logs, messages or the database:
# C0 and C1 controls (escape sequences; NUL, which PostgreSQL cannot store), lone surrogates
# (no UTF-8 form) and bidirectional overrides (they reorder what a reader sees).
_UNSAFE: Final = re.compile("[\x00-\x1f\x7f-\x9f\ud800-\udfff\u202a-\u202e\u2066-\u2069]")


def clean(value: str) -> str:
    """``value`` with unsafe characters replaced by U+FFFD; printable text is returned as is."""
    return value if value.isprintable() else _UNSAFE.sub("\ufffd", value)


class BadRecord(ValueError):
    """One field of one record is unusable; the message names the field, not the record."""


def show(value: Any, limit: int = 40) -> str:
    """A short printable form of a bad value for an error message."""
    if isinstance(value, NonFinite):
        return value.token
    if isinstance(value, Decimal):
        text = str(value)
    else:
        try:
            text = json.dumps(value, default=str)
        except ValueError:
            text = repr(value)
    return text if len(text) <= limit else text[: limit - 1] + "…"


def describe(record: Any, fields: Iterable[tuple[str, str]]) -> str:
    """`` (month 2024-05, service SU1Z...)`` from the fields a record has as strings."""
    if not isinstance(record, dict):
        return ""
    parts = []
    for key, label in fields:
        value = record.get(key)
        if isinstance(value, str) and value:
            value = clean(value)
            parts.append(f"{label} {value if len(value) <= 40 else value[:39] + '…'}")
    return f" ({', '.join(parts)})" if parts else ""


def _get(record: dict[str, Any], key: str) -> Any:
    if type(record) is not dict:
        raise BadRecord(f"is not a JSON object (got {show(record)})")
    return record.get(key)


def text(record: dict[str, Any], key: str) -> str:
    """A required, non-empty string."""
    value = _get(record, key)
    if type(value) is str and value:
        return clean(value)
    if value is None:
        raise BadRecord(f"{key} is missing")
    raise BadRecord(f"{key} is not a non-empty string (got {show(value)})")


def optional_text(record: dict[str, Any], key: str) -> str:
    """A string, or "" when missing or null."""
    value = _get(record, key)
    if value is None:
        return ""
    if type(value) is str:
        return clean(value)
    raise BadRecord(f"{key} is not a string (got {show(value)})")


def bounded(key: str, value: Decimal) -> Decimal:
    """``value`` if its fixed-point form has at most :data:`MAX_INTEGER_DIGITS` digits before
    the point and :data:`MAX_FRACTION_DIGITS` after it (trailing zeros do not count)."""
    _, digits, exponent = value.as_tuple()
    assert isinstance(exponent, int)
    if not value:  # 0E-999999999 is zero, but its fixed-point form would be huge
        return value if -MAX_FRACTION_DIGITS <= exponent <= MAX_INTEGER_DIGITS else Decimal(0)
    significant = len(digits)
    while significant > 1 and digits[significant - 1] == 0:
        significant -= 1
    exponent += len(digits) - significant
    whole = significant + exponent
    if whole > MAX_INTEGER_DIGITS or -exponent > MAX_FRACTION_DIGITS:
        raise BadRecord(
            f"{key} has more digits than a usage quantity can have (at most "
            f"{MAX_INTEGER_DIGITS} before the point and {MAX_FRACTION_DIGITS} after it; "
            f"got {show(value)})"
        )
    return value


def fits(value: Decimal) -> bool:
    """A quick test for the hot path: plain notation of at most 30 characters is within
    :func:`bounded`'s limits (anything else is checked by :func:`bounded` itself)."""
    text = str(value)
    return len(text) <= MAX_INTEGER_DIGITS + 1 and "E" not in text


def quantity(record: dict[str, Any], key: str) -> Decimal:
    """A required finite number >= 0, of bounded size."""
    value = _get(record, key)
    if type(value) is Decimal and value.is_finite() and value >= 0:
        return bounded(key, value)
    if value is None:
        raise BadRecord(f"{key} is missing")
    return _bad_number(key, value)


def optional_quantity(record: dict[str, Any], key: str) -> Decimal | None:
    value = _get(record, key)
    if value is None:
        return None
    if type(value) is Decimal and value.is_finite() and value >= 0:
        return bounded(key, value)
    return _bad_number(key, value)


def _bad_number(key: str, value: Any) -> Decimal:
    if isinstance(value, NonFinite) or (isinstance(value, Decimal) and not value.is_finite()):
        raise BadRecord(f"{key} is not a finite number (got {show(value)})")
    if isinstance(value, Decimal):
        raise BadRecord(f"{key} is negative (got {show(value)})")
    raise BadRecord(f"{key} is not a number (got {show(value)})")


@lru_cache(maxsize=512)
def _month(value: str) -> Month:
    return Month.parse(value)


def month(record: dict[str, Any], key: str) -> Month:
    value = text(record, key)
    try:
        return _month(value)
    except ValueError:
        raise BadRecord(f"{key} is not a month YYYY-MM (got {show(value)})") from None


def period_day(record: dict[str, Any], key: str) -> date:
    """A required ``YYYY-MM-DD`` date."""
    value = text(record, key)
    try:
        if len(value) == 10:
            return date.fromisoformat(value)
    except ValueError:
        pass
    raise BadRecord(f"{key} is not a date YYYY-MM-DD (got {show(value)})")


def timestamp(record: dict[str, Any], key: str) -> datetime | None:
    """An ISO 8601 datetime as aware UTC (a zone-less one is taken as UTC); None if absent."""
    value = _get(record, key)
    if value is None or value == "":
        return None
    if type(value) is str:
        try:
            parsed = datetime.fromisoformat(value)
        except ValueError:
            pass
        else:
            if parsed.tzinfo is None:
                return parsed.replace(tzinfo=UTC)
            return parsed.astimezone(UTC)
    raise BadRecord(f"{key} is not an ISO 8601 date and time (got {show(value)})")


def flag(record: dict[str, Any], key: str) -> bool | None:
    """true, false, or None when missing or null."""
    value = _get(record, key)
    if value is None or type(value) is bool:
        return value
    raise BadRecord(f"{key} is not true or false (got {show(value)})")


def integer(record: dict[str, Any], key: str) -> int | None:
    """A whole number >= 0 (meta counts), or None when missing or null."""
    value = _get(record, key)
    if value is None:
        return None
    if (
        type(value) is Decimal
        and value.is_finite()
        and 0 <= value <= MAX_COUNT  # compared before int(): 1e99999999999999 is no count
        and value == value.to_integral()
    ):
        return int(value)
    raise BadRecord(f"{key} is not a whole number up to {MAX_COUNT} (got {show(value)})")


def optional_number(record: dict[str, Any], key: str) -> Decimal | None:
    """A finite number of either sign (money, credits), or None when missing or null."""
    value = _get(record, key)
    if value is None:
        return None
    if type(value) is Decimal and value.is_finite():
        return bounded(key, value)
    return _bad_number(key, value)


def items(record: dict[str, Any], key: str) -> list[Any]:
    """A required JSON array."""
    value = _get(record, key)
    if type(value) is list:
        return value
    if value is None:
        raise BadRecord(f"{key} is missing")
    raise BadRecord(f"{key} is not a list (got {show(value)})")
