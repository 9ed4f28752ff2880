"""A page of usage lines already in the form the state database stores them.

A provider's hot path (Fastly's service usage: a million lines a pull) turns a page straight
into rows of text, which staging writes as they are; every other page is a list of
:class:`~reconciler.domain.UsageLine`, which :func:`line_row` turns into the same rows. Both
are sequences of lines: iterating a :class:`LineRows` gives each row back as a UsageLine, so
whoever reads a pull reads lines, whichever way they came.

The row's text form: dates ``YYYY-MM-DD``; quantities canonical (:func:`canonical_decimal`:
exact, no exponent, no trailing zeros); the provider's update time as UTC
``YYYY-MM-DD HH:MM:SS.ffffff``; the provider, the month and the status as their text.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from datetime import UTC, date, datetime
from decimal import Decimal
from typing import Any, Final, overload

from reconciler.domain import LineStatus, Month, Provider, UsageLine, canonical_decimal, line_digest

__all__ = ["ROW_FIELDS", "TEXT_LIMITS", "LineRows", "Row", "line_row", "row_line"]

# The order of a row's fields (staging's columns after the run id).
ROW_FIELDS: Final = (
    "key_hash",
    "source",
    "provider",
    "account",
    "product",
    "product_name",
    "usage_type",
    "region",
    "service",
    "service_name",
    "month",
    "period_start",
    "period_end",
    "quantity",
    "raw_quantity",
    "unit",
    "status",
    "billable",
    "provider_updated_at",
)
# The most characters the state keeps in each text field of a row (the columns of staging and
# of the tracked lines); longer text is refused, never cut.
TEXT_LIMITS: Final = {
    "key_hash": 32,
    "source": 64,
    "provider": 16,
    "account": 128,
    "product": 256,
    "product_name": 512,
    "usage_type": 256,
    "region": 128,
    "service": 128,
    "service_name": 512,
    "month": 7,
    "unit": 64,
    "status": 16,
}
TIME_FORMAT: Final = "%Y-%m-%d %H:%M:%S.%f"

Row = tuple[Any, ...]


def line_row(line: UsageLine) -> Row:
    """One line in the stored text form."""
    updated = line.updated_at
    return (
        line.digest,
        line.source,
        str(line.provider),
        line.account,
        line.product,
        line.product_name,
        line.usage_type,
        line.region,
        line.service,
        line.service_name,
        str(line.month),
        line.period_start.isoformat(),
        line.period_end.isoformat(),
        canonical_decimal(line.quantity),
        None if line.raw_quantity is None else canonical_decimal(line.raw_quantity),
        line.unit,
        str(line.status),
        line.billable,
        None if updated is None else updated.astimezone(UTC).strftime(TIME_FORMAT),
    )


def row_line(row: Row) -> UsageLine:
    """The line a row stores (the inverse of :func:`line_row`)."""
    (_, source, provider, account, product, product_name, usage_type, region, service) = row[:9]
    (service_name, month, start, end, quantity, raw, unit, status, billable, updated) = row[9:]
    return UsageLine(
        source=source,
        provider=Provider(provider),
        account=account,
        product=product,
        product_name=product_name,
        usage_type=usage_type,
        region=region,
        service=service,
        month=Month.parse(month),
        period_start=date.fromisoformat(start),
        period_end=date.fromisoformat(end),
        quantity=Decimal(quantity),
        raw_quantity=None if raw is None else Decimal(raw),
        unit=unit,
        billable=billable,
        status=LineStatus(status),
        updated_at=None
        if updated is None
        else datetime.strptime(updated, TIME_FORMAT).replace(tzinfo=UTC),
        service_name=service_name,
    )


def row_key(row: Row) -> str:
    """The key digest a row's identity fields give (what :attr:`UsageLine.digest` gives)."""
    return line_digest((row[1], row[3], row[4], row[6], row[7], row[8], row[10], row[11]))


class LineRows(Sequence[UsageLine]):
    """A page of lines held as stored rows; read as lines, it builds each one on demand.

    ``within_limits``: whoever made the rows has checked every text field against
    :data:`TEXT_LIMITS` (staging checks the others' lengths itself).
    """

    __slots__ = ("rows", "within_limits")

    def __init__(self, rows: list[Row], *, within_limits: bool = False) -> None:
        self.rows = rows
        self.within_limits = within_limits

    def __len__(self) -> int:
        return len(self.rows)

    @overload
    def __getitem__(self, index: int) -> UsageLine: ...
    @overload
    def __getitem__(self, index: slice) -> list[UsageLine]: ...
    def __getitem__(self, index: int | slice) -> UsageLine | list[UsageLine]:
        if isinstance(index, slice):
            return [row_line(row) for row in self.rows[index]]
        return row_line(self.rows[index])

    def __iter__(self) -> Iterator[UsageLine]:
        return map(row_line, self.rows)
