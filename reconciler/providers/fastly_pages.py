"""Fastly service-usage pages decoded straight to stored rows: the hot path of a pull.

A page in the documented list shape is decoded by msgspec into typed records whose
quantities stay the JSON number's own text (``msgspec.Raw``), so no value passes through a
float or a generic object, and each record becomes one row of
:mod:`reconciler.providers.rows`. Whatever this path does not plainly accept — another shape,
a field of another type, a quantity that is not a plain non-negative number within bounds, an
empty required field, a text longer than the state keeps (:data:`~reconciler.providers.rows
.TEXT_LIMITS`, checked by the decoder itself), a month not asked for, a ``last_updated_at``, a
character that is not printable — sends the whole page to the careful path
(:mod:`reconciler.providers.fastly_records`), which accepts what it can and names what is
wrong. A page whose bytes are plain ASCII without escapes cannot hold an unprintable
character, so its text fields are not checked one by one; any other page's are. Its rows
therefore fit the state as they are: staging checks no length of theirs.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass
from decimal import Decimal, InvalidOperation
from hashlib import blake2b
from itertools import repeat
from typing import Annotated, Any, Final

import msgspec

from reconciler.domain import Month, canonical_decimal
from reconciler.providers import normalize as n
from reconciler.providers.normalize import BadRecord, loads_exact
from reconciler.providers.rows import TEXT_LIMITS, Row

__all__ = ["FastPage", "ServiceRows", "decode_service_page"]

_MAX_COUNT: Final = n.MAX_COUNT


# Strings no longer than the state keeps for their field (a longer one: the careful path,
# which names it).
_Account = Annotated[str, msgspec.Meta(max_length=TEXT_LIMITS["account"])]
_Service = Annotated[str, msgspec.Meta(max_length=TEXT_LIMITS["service"])]
_Product = Annotated[str, msgspec.Meta(max_length=TEXT_LIMITS["product"])]
_UsageType = Annotated[str, msgspec.Meta(max_length=TEXT_LIMITS["usage_type"])]
_Unit = Annotated[str, msgspec.Meta(max_length=TEXT_LIMITS["unit"])]
_Region = Annotated[str, msgspec.Meta(max_length=TEXT_LIMITS["region"])]
_ServiceName = Annotated[str, msgspec.Meta(max_length=TEXT_LIMITS["service_name"])]


class _Record(msgspec.Struct):
    month: str
    customer_id: _Account
    service_id: _Service
    product_id: _Product
    usage_type: _UsageType
    unit: _Unit
    quantity: msgspec.Raw
    raw_quantity: msgspec.Raw = msgspec.Raw()
    region: _Region | None = None
    service_name: _ServiceName | None = None
    last_updated_at: None = None  # an update time: the careful path reads it


class _Meta(msgspec.Struct):
    next_cursor: str | None = None
    total: Annotated[int, msgspec.Meta(ge=0, le=_MAX_COUNT)] | None = None


class _Page(msgspec.Struct):
    data: list[_Record]
    meta: _Meta | None = None


_DECODER: Final = msgspec.json.Decoder(_Page)


@dataclass(frozen=True, slots=True)
class FastPage:
    """A page msgspec decoded; ``body`` is kept for the careful path, should it be needed."""

    page: _Page
    body: bytes | bytearray
    plain: bool  # ASCII without escapes or DEL: every text field is printable

    @property
    def next_cursor(self) -> str | None:
        return self.page.meta.next_cursor if self.page.meta else None

    @property
    def total(self) -> int | None:
        return self.page.meta.total if self.page.meta else None

    def careful(self) -> Any:
        """The page as the careful path reads it."""
        return loads_exact(self.body)


def decode_service_page(body: bytes | bytearray) -> Any:
    """A :class:`FastPage`, or (another shape, a bad field) the exact JSON document."""
    try:
        page = _DECODER.decode(body)
    except msgspec.DecodeError:  # includes ValidationError
        return loads_exact(body)
    plain = body.isascii() and b"\\" not in body and b"\x7f" not in body
    return FastPage(page, body, plain)


_MAX_DIGITS: Final = 30  # before the point and after it: the bounds of normalize.bounded
_ZERO: Final = ord("0")


def quantity_text(raw: msgspec.Raw) -> str | None:
    """The canonical text of a quantity, or None when it is not one (the careful path
    then says why)."""
    token = bytes(raw)
    # A plain JSON number within bounds (at most 30 digits before the point and 30 after
    # it), read without a regular expression: bytes.isdigit() is ASCII digits only.
    whole, point, fraction = token.partition(b".")
    if whole.isdigit() and len(whole) <= _MAX_DIGITS and (len(whole) == 1 or whole[0] != _ZERO):
        if not point:
            return whole.decode()
        if fraction.isdigit() and len(fraction) <= _MAX_DIGITS:
            fraction = fraction.rstrip(b"0")
            return (whole + b"." + fraction).decode() if fraction else whole.decode()
    if token[:1] not in b"-0123456789" or not token:
        return None  # a string, a literal, an object: not a number
    try:
        value = Decimal(token.decode())
    except InvalidOperation:
        return None
    if not value.is_finite() or value < 0:
        return None
    try:
        return canonical_decimal(n.bounded("quantity", value))
    except BadRecord:
        return None


# A list of quantities each already in its canonical text (no sign, no leading zero, a
# fraction without trailing zeros, at most 30 digits on either side of the point), joined by
# commas: the common page, whose texts then need no look one by one.
_CANONICAL: Final = rb"(?:0|[1-9][0-9]{0,29})(?:\.[0-9]{0,29}[1-9])?"
_CANONICAL_LIST: Final = re.compile(rb"%s(?:,%s)*" % (_CANONICAL, _CANONICAL))


def _canonical_already(tokens: Sequence[msgspec.Raw]) -> list[str | None] | None:
    """Every token's text when all are canonical already (one match over the list)."""
    joined = b",".join(tokens)
    if _CANONICAL_LIST.fullmatch(joined) is None:
        return None
    return list(joined.decode().split(","))


def quantity_texts(tokens: Sequence[msgspec.Raw]) -> list[str | None]:
    """The canonical text of each quantity (None where one is not a quantity): one match
    over the whole list when every token is canonical already, else token by token."""
    texts = _canonical_already(tokens)
    return texts if texts is not None else [quantity_text(token) for token in tokens]


def raw_quantity_texts(tokens: Sequence[msgspec.Raw]) -> list[str | None] | None:
    """Like :func:`quantity_texts` for the optional raw quantities (absent or null: None);
    None when one is present but not a quantity."""
    texts = _canonical_already(tokens)
    if texts is not None:
        return texts
    out: list[str | None] = []
    for token in tokens:
        if len(token) == 0 or bytes(token) == b"null":
            out.append(None)
            continue
        text = quantity_text(token)
        if text is None:
            return None
        out.append(text)
    return out


class ServiceRows:
    """Turns decoded service records into rows, for the months asked for."""

    def __init__(self, source: str, calendar: dict[str, tuple[str, str, str]]) -> None:
        """``calendar``: month text → (first day, last day, status) of each month asked for."""
        self.source = source
        self.calendar = calendar

    @classmethod
    def of(cls, source: str, statuses: dict[Month, Any]) -> ServiceRows:
        return cls(
            source,
            {
                str(m): (m.first_day.isoformat(), m.last_day.isoformat(), str(status))
                for m, status in statuses.items()
            },
        )

    def rows(self, fast: FastPage) -> list[Row] | None:
        """The page's rows (every text within :data:`TEXT_LIMITS`: the source's name is at
        most 64 characters, the month 7), or None when any record needs the careful path.

        Column by column: each field of every record is read once into a list, checked as a
        whole, and the rows are zipped from the columns.
        """
        source, calendar = self.source, self.calendar
        data = fast.page.data
        if not data:
            return []
        months = [r.month for r in data]
        if not calendar.keys() >= set(months):
            return None  # a month not asked for
        firsts = [calendar[month][0] for month in months]
        lasts = [calendar[month][1] for month in months]
        statuses = [calendar[month][2] for month in months]
        accounts = [r.customer_id for r in data]
        services = [r.service_id for r in data]
        products = [r.product_id for r in data]
        usage_types = [r.usage_type for r in data]
        units = [r.unit for r in data]
        regions = [r.region or "" for r in data]
        names = [r.service_name or "" for r in data]
        required = (accounts, services, products, usage_types, units)
        if not all(map(all, required)):
            return None  # an empty required field
        texts = (*required, regions, names)
        if not fast.plain and not all(all(map(str.isprintable, column)) for column in texts):
            return None
        quantities = quantity_texts([r.quantity for r in data])
        raws = raw_quantity_texts([r.raw_quantity for r in data])
        if raws is None or None in quantities:
            return None
        keys = zip(
            repeat(source), accounts, products, usage_types, regions, services, months, firsts
        )
        digests = [
            blake2b(key.encode(), digest_size=16).hexdigest() for key in map("\x1f".join, keys)
        ]
        return list(
            zip(
                digests,
                repeat(source),
                repeat("fastly"),
                accounts,
                products,
                repeat(""),
                usage_types,
                regions,
                services,
                names,
                months,
                firsts,
                lasts,
                quantities,
                raws,
                units,
                statuses,
                repeat(None),
                repeat(None),
            )
        )
