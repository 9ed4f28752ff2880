"""Frozen value types shared by every layer: months, usage lines, changes and findings.

Quantities are :class:`~decimal.Decimal` everywhere; datetimes are aware UTC.
"""

from __future__ import annotations

import calendar
import functools
import hashlib
import re
from dataclasses import dataclass, field
from datetime import UTC, date, datetime
from decimal import Context, Decimal, localcontext
from enum import StrEnum
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from reconciler.reconcile.forecast import Forecast

# Sums and differences of quantities must not round: 28 digits (the default) is not enough
# for a 20-digit quantity with 10 decimals.
EXACT_CONTEXT = Context(prec=100)

_MONTH_RE = re.compile(r"^(\d{4})-(\d{2})$")


@dataclass(frozen=True, order=True, slots=True)
class Month:
    """A calendar month, written ``YYYY-MM``."""

    year: int
    month: int

    def __post_init__(self) -> None:
        if not 1 <= self.month <= 12 or not 1 <= self.year <= 9999:
            raise ValueError(f"invalid month {self.year:04d}-{self.month:02d}")

    @classmethod
    def parse(cls, text: str) -> Month:
        match = _MONTH_RE.match(text.strip()) if isinstance(text, str) else None
        if match is None:
            raise ValueError(f"invalid month {text!r} (expected YYYY-MM)")
        return cls(int(match.group(1)), int(match.group(2)))

    @classmethod
    def of(cls, day: date) -> Month:
        return cls(day.year, day.month)

    def __str__(self) -> str:
        return _month_text(self.year, self.month)

    def __add__(self, months: int) -> Month:
        index = self.year * 12 + (self.month - 1) + months
        return Month(index // 12, index % 12 + 1)

    def __sub__(self, months: int) -> Month:
        return self + (-months)

    def months_until(self, other: Month) -> int:
        """Number of months from ``self`` to ``other`` (negative when other is earlier)."""
        return (other.year * 12 + other.month) - (self.year * 12 + self.month)

    @property
    def first_day(self) -> date:
        return date(self.year, self.month, 1)

    @property
    def last_day(self) -> date:
        return date(self.year, self.month, self.days)

    @property
    def days(self) -> int:
        return calendar.monthrange(self.year, self.month)[1]

    def range_to(self, end: Month) -> list[Month]:
        """Months from ``self`` to ``end``, both inclusive."""
        return [self + i for i in range(self.months_until(end) + 1)]


@functools.lru_cache(maxsize=4096)
def _month_text(year: int, month: int) -> str:
    return f"{year:04d}-{month:02d}"


@functools.lru_cache(maxsize=4096)
def iso_day(day: date) -> str:
    """``YYYY-MM-DD``, cached: a million lines share a few dozen period dates."""
    return day.isoformat()


def utcnow() -> datetime:
    return datetime.now(UTC)


class LineStatus(StrEnum):
    COLLECTING = "collecting"
    FINALIZED = "finalized"


class Provider(StrEnum):
    FASTLY = "fastly"
    AKAMAI = "akamai"


class Severity(StrEnum):
    INFO = "info"
    WARNING = "warning"
    CRITICAL = "critical"

    @property
    def rank(self) -> int:
        return _SEVERITY_RANK[self]


_SEVERITY_RANK = {Severity.INFO: 0, Severity.WARNING: 1, Severity.CRITICAL: 2}


class ChangeKind(StrEnum):
    """Drift between two runs: the provider changed something."""

    NEW = "new"
    GREW = "grew"
    DECREASED = "decreased"
    FINALIZED = "finalized"
    RESTATED = "restated"
    REOPENED = "reopened"
    UNIT_CHANGED = "unit_changed"
    DISAPPEARED = "disappeared"
    REAPPEARED = "reappeared"
    FINALIZED_CHANGED = "finalized_changed"
    FINALIZED_DISAPPEARED = "finalized_disappeared"
    LEFT_WINDOW_COLLECTING = "left_window_collecting"


class FindingKind(StrEnum):
    """A month total measured against a declared expectation."""

    OVER_EXPECTATION = "over_expectation"
    UNDER_EXPECTATION = "under_expectation"
    UNIT_MISMATCH = "unit_mismatch"
    PROJECTED_OVERAGE = "projected_overage"
    INVOICE_MISMATCH = "invoice_mismatch"
    COST_MISMATCH = "cost_mismatch"
    RATE_MISMATCH = "rate_mismatch"
    OVER_BUDGET = "over_budget"
    PROJECTED_OVER_BUDGET = "projected_over_budget"
    REPRICED = "repriced"
    NO_MATCH = "no_match"


class FindingState(StrEnum):
    OPEN = "open"
    ACKNOWLEDGED = "acknowledged"
    RESOLVED = "resolved"


def canonical_decimal(value: Decimal) -> str:
    """The one text form of a quantity: no exponent, no trailing zeros, ``-0`` as ``0``."""
    if not value.is_finite():
        raise ValueError(f"not a finite quantity: {value}")
    # format() never rounds, unlike normalize(), which applies the context's precision.
    text = format(value, "f")
    if "." in text:
        text = text.rstrip("0").rstrip(".")
    return "0" if text in ("-0", "") else text


@dataclass(frozen=True, slots=True)
class LineKey:
    """What identifies one usage line across runs."""

    source: str
    account: str
    product: str
    usage_type: str
    region: str
    service: str
    month: Month
    period_start: date

    def parts(self) -> tuple[str, ...]:
        return key_parts(self)

    @property
    def digest(self) -> str:
        """Stable 32-hex-digit id used as the line's key in the store."""
        return line_digest(self.parts())

    def __str__(self) -> str:
        service = f"/{self.service}" if self.service else ""
        region = f" [{self.region}]" if self.region else ""
        line = f"{self.account}/{self.product}/{self.usage_type}{region}{service}"
        return f"{self.source}:{line} {self.month}"


def key_parts(line: LineKey | UsageLine) -> tuple[str, ...]:
    """The text parts of a line's identity (both types carry the same key fields)."""
    return (
        line.source,
        line.account,
        line.product,
        line.usage_type,
        line.region,
        line.service,
        str(line.month),
        iso_day(line.period_start),
    )


def line_digest(parts: tuple[str, ...]) -> str:
    return hashlib.blake2b("\x1f".join(parts).encode(), digest_size=16).hexdigest()


# An Akamai reporting group's share of a contract product is a line whose service is the
# group's id under this prefix (a CP code is a bare number, a Fastly service id has no colon).
REPORTING_GROUP_PREFIX = "reporting-group:"


def reporting_group_service(group: str) -> str:
    """The service of a reporting group's lines."""
    return REPORTING_GROUP_PREFIX + group


def reporting_group_of(service: str) -> str | None:
    """The reporting group a line's service names, or None (not a reporting group's line)."""
    if service.startswith(REPORTING_GROUP_PREFIX):
        return service[len(REPORTING_GROUP_PREFIX) :]
    return None


@dataclass(frozen=True, slots=True)
class UsageLine:
    """One exact usage quantity as a provider reported it, normalized."""

    source: str
    provider: Provider
    account: str
    product: str
    product_name: str
    usage_type: str
    region: str
    service: str
    month: Month
    period_start: date
    period_end: date
    quantity: Decimal
    raw_quantity: Decimal | None
    unit: str
    billable: bool | None
    status: LineStatus
    updated_at: datetime | None = None
    service_name: str = ""

    @property
    def digest(self) -> str:
        """The same as ``self.key.digest``, without building the key (hot path)."""
        return line_digest(key_parts(self))

    @property
    def key(self) -> LineKey:
        return LineKey(
            self.source,
            self.account,
            self.product,
            self.usage_type,
            self.region,
            self.service,
            self.month,
            self.period_start,
        )


@dataclass(frozen=True, slots=True)
class Observation:
    """A line's values at one point in time (one side of a before → after)."""

    quantity: Decimal
    unit: str
    status: LineStatus


@dataclass(frozen=True, slots=True)
class Change:
    """Drift of one line between the current state and a new complete pull."""

    kind: ChangeKind
    severity: Severity
    key: LineKey
    before: Observation | None
    after: Observation | None
    details: dict[str, Any] = field(default_factory=dict)

    @property
    def delta(self) -> Decimal | None:
        return quantity_delta(self.before, self.after)

    @property
    def percent(self) -> Decimal | None:
        return quantity_percent(self.before, self.after)


def quantity_delta(before: Observation | None, after: Observation | None) -> Decimal | None:
    if before is None or after is None:
        return None
    with localcontext(EXACT_CONTEXT):
        return after.quantity - before.quantity


def quantity_percent(before: Observation | None, after: Observation | None) -> Decimal | None:
    delta = quantity_delta(before, after)
    if delta is None or before is None or before.quantity == 0:
        return None
    with localcontext(EXACT_CONTEXT):
        return (delta * 100 / before.quantity).quantize(Decimal("0.01"))


class ItemCategory(StrEnum):
    DRIFT = "drift"
    FINDING = "finding"


@dataclass(frozen=True, slots=True)
class PlanItem:
    """One thing to review: a drift change or an expectation finding.

    This is the shape shared by ``plan``, ``apply``, alerts and reports. For a finding,
    ``before`` holds the expected value (the limit or declared quantity) and ``after`` the
    observed month total; the line fields hold the expectation's match (may be globs or empty).
    """

    category: ItemCategory
    kind: str
    severity: Severity
    fingerprint: str
    source: str
    provider: str
    account: str
    product: str
    usage_type: str
    region: str
    service: str
    month: Month
    before: Observation | None
    after: Observation | None
    message: str = ""
    product_name: str = ""
    forecast: Forecast | None = None  # a projected overage's forecast
    impact: Decimal | None = None  # money impact, exact, in impact_currency
    impact_currency: str = ""
    service_name: str = ""
    # A drift item's line period (both set, or neither): a month sent in several periods
    # has one line per period, told apart by these dates.
    period_start: date | None = None
    period_end: date | None = None
    # A drift item's line as it is now (None when unknown or gone): a collecting line goes on
    # changing after the change the item reports.
    current: Observation | None = None
    team: str = ""  # the owning team, when alerts name it (derived from [[teams]], not stored)

    @property
    def moved_on(self) -> Observation | None:
        """The line's current values when they are no longer the ones the change left."""
        if self.current is None or self.current == self.after:
            return None
        return self.current

    @property
    def delta(self) -> Decimal | None:
        return quantity_delta(self.before, self.after)

    @property
    def percent(self) -> Decimal | None:
        return quantity_percent(self.before, self.after)

    @property
    def split_period(self) -> tuple[date, date] | None:
        """The line's period when it is one part of a month sent in several periods, else
        None. A collecting period from the 1st is the month to date, not a part of it."""
        start, end = self.period_start, self.period_end
        if start is None or end is None:
            return None
        side = self.after or self.before
        collecting = side is not None and side.status == LineStatus.COLLECTING
        if start == self.month.first_day and (end >= self.month.last_day or collecting):
            return None
        return start, end

    @property
    def when(self) -> str:
        """``2024-05``, or ``2024-05 (05-01..05-15)`` for one period of a split month."""
        split = self.split_period
        if split is None:
            return str(self.month)
        return f"{self.month} ({split[0]:%m-%d}..{split[1]:%m-%d})"

    @property
    def line_label(self) -> str:
        """Human description of the line: product / usage type [region] service (team)."""
        parts = [p for p in (self.product_name or self.product, self.usage_type) if p]
        label = " / ".join(parts)
        if self.region:
            label += f" [{self.region}]"
        if self.service:
            label += f" service {self.service_name or self.service}"
        if self.team:
            label = f"{label} (team {self.team})".lstrip()
        return label
