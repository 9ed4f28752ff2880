"""Events: scripted changes to provider data that take effect on a simulated day.

An event selects lines by provider and exact field values (a field left out matches every
line) and changes them from ``day`` on; data served for earlier days is unchanged, so a client
pulling before and after sees the change happen. Kinds:

- ``restate``: multiply the month's quantity by ``factor`` (meant for a finalized month; on
  Fastly the invoice already posted keeps its units, so usage no longer matches it).
- ``decrease``: multiply by ``factor`` (< 1), meant for a month still collecting.
- ``unit_change``: report ``unit`` instead (and multiply by ``factor``, default 1).
- ``disappear``: the line is absent from ``day`` until ``until`` (exclusive; never if unset).
- ``reopen`` (Akamai only): a finalized period is ``COLLECTING_DATA`` again until ``until``.
- ``spike``: the daily rate is multiplied by ``factor`` for the days from ``day`` on.
- ``invoice_overcharge`` (Fastly): invoices posted from ``day`` on bill ``factor`` times the
  units of the lines they match (more than was used); ``invoice_rate``: they bill the
  matched lines at ``factor`` times the price; ``invoice_credit``: they carry a credit of
  ``factor`` USD (the month's invoice without it is a missing credit). Usage is unchanged.

Selector fields: ``product`` (Fastly ``product_id`` / Akamai ``productId``), ``usage_type``
(Fastly usage type name / Akamai ``statType``), ``service`` (Fastly service id or name),
``contract`` (Akamai), ``region``, ``month`` (``YYYY-MM``). An event with no ``service`` also
applies to Fastly's account-level line; one with a ``service`` applies to that service only.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import date, timedelta
from decimal import Decimal, InvalidOperation
from enum import StrEnum
from typing import Any

from reconciler.domain import Month, Provider


class EventKind(StrEnum):
    RESTATE = "restate"
    DECREASE = "decrease"
    UNIT_CHANGE = "unit_change"
    DISAPPEAR = "disappear"
    REOPEN = "reopen"
    SPIKE = "spike"
    # Fastly invoices only (the usage is unchanged): see reconciler.sandbox.invoice_faults.
    INVOICE_OVERCHARGE = "invoice_overcharge"
    INVOICE_RATE = "invoice_rate"
    INVOICE_CREDIT = "invoice_credit"


INVOICE_KINDS = frozenset(
    {EventKind.INVOICE_OVERCHARGE, EventKind.INVOICE_RATE, EventKind.INVOICE_CREDIT}
)


_DEFAULT_FACTOR = {
    EventKind.RESTATE: Decimal("1.05"),
    EventKind.DECREASE: Decimal("0.5"),
    EventKind.SPIKE: Decimal(3),
}
SELECTOR_FIELDS = ("product", "usage_type", "service", "contract", "region", "month")


@dataclass(frozen=True, slots=True)
class LineRef:
    """The identity of one served line, as events see it (None: not part of this line)."""

    provider: Provider
    product: str
    usage_type: str | None
    month: Month
    region: str
    service: tuple[str, str] | None = None  # (id, name) of a Fastly service line
    contract: str | None = None


@dataclass(frozen=True, slots=True)
class SandboxEvent:
    """One scripted change; see the module docstring for the kinds."""

    kind: EventKind
    day: date
    provider: Provider
    match: Mapping[str, str] = field(default_factory=dict)
    factor: Decimal = Decimal(1)
    unit: str | None = None
    until: date | None = None

    def active(self, as_of: date) -> bool:
        if as_of < self.day:
            return False
        return self.until is None or as_of < self.until

    def matches(self, line: LineRef) -> bool:
        if line.provider is not self.provider:
            return False
        for name, wanted in self.match.items():
            if name == "service":
                if line.service is None or wanted not in line.service:
                    return False
            elif name == "month":
                if str(line.month) != wanted:
                    return False
            elif getattr(line, name) != wanted:
                return False
        return True

    def to_json(self) -> dict[str, Any]:
        out: dict[str, Any] = {
            "kind": self.kind.value,
            "day": self.day.isoformat(),
            "provider": self.provider.value,
            **self.match,
        }
        if self.kind in _DEFAULT_FACTOR or self.factor != 1:
            out["factor"] = str(self.factor)
        if self.unit is not None:
            out["unit"] = self.unit
        if self.until is not None:
            out["until"] = self.until.isoformat()
        return out


def parse_event(data: object) -> SandboxEvent:
    """Build an event from its JSON form; raises ValueError naming the bad field."""
    if not isinstance(data, dict):
        raise ValueError("an event must be a JSON object")
    allowed = {"kind", "day", "provider", "factor", "unit", "until", *SELECTOR_FIELDS}
    unknown = sorted(set(data) - allowed)
    if unknown:
        raise ValueError(f"unknown event field(s): {', '.join(unknown)}")
    try:
        kind = EventKind(str(data.get("kind")))
    except ValueError:
        raise ValueError(f"event kind must be one of {[k.value for k in EventKind]}") from None
    try:
        provider = Provider(str(data.get("provider")))
    except ValueError:
        raise ValueError("event provider must be 'fastly' or 'akamai'") from None
    day = _parse_day(data.get("day"), "day")
    until = _parse_day(data["until"], "until") if data.get("until") is not None else None
    if until is not None and until <= day:
        raise ValueError("event 'until' must be after 'day'")
    match: dict[str, str] = {}
    for name in SELECTOR_FIELDS:
        if data.get(name) is None:
            continue
        if not isinstance(data[name], str):
            raise ValueError(f"event field '{name}' must be a string")
        if name == "month":
            Month.parse(data[name])
        match[name] = data[name]
    if provider is Provider.FASTLY and ("contract" in match or kind is EventKind.REOPEN):
        raise ValueError("Fastly events take no 'contract' and cannot 'reopen'")
    if provider is Provider.AKAMAI and "service" in match:
        raise ValueError("Akamai events take no 'service'")
    factor = _parse_factor(data.get("factor"), kind)
    unit = data.get("unit")
    if kind is EventKind.UNIT_CHANGE and not isinstance(unit, str):
        raise ValueError("a unit_change event needs a 'unit' string")
    return SandboxEvent(kind, day, provider, match, factor, unit, until)


def _parse_day(value: object, name: str) -> date:
    try:
        return date.fromisoformat(str(value))
    except ValueError:
        raise ValueError(f"event '{name}' must be a date YYYY-MM-DD") from None


def _parse_factor(value: object, kind: EventKind) -> Decimal:
    if value is None:
        return _DEFAULT_FACTOR.get(kind, Decimal(1))
    try:
        factor = Decimal(str(value))
    except InvalidOperation:
        raise ValueError("event 'factor' must be a number") from None
    if not factor.is_finite() or factor <= 0:
        raise ValueError("event 'factor' must be a positive number")
    if kind is EventKind.DECREASE and factor >= 1:
        raise ValueError("a decrease event needs a 'factor' below 1")
    return factor


@dataclass(slots=True)
class LineEffects:
    """What the active events do to one line on one day."""

    factor: Decimal = Decimal(1)
    spikes: list[tuple[date, Decimal]] = field(default_factory=list)
    unit: str | None = None
    hidden: bool = False
    reopened: bool = False
    changed_on: date | None = None


def effects(events: Iterable[SandboxEvent], line: LineRef, as_of: date) -> LineEffects | None:
    """The combined effect of ``events`` on ``line`` as of ``as_of``; None when none apply."""
    result: LineEffects | None = None
    for event in events:
        if event.kind in INVOICE_KINDS or not event.active(as_of) or not event.matches(line):
            continue
        if result is None:
            result = LineEffects()
        result.changed_on = max(event.day, result.changed_on or event.day)
        if event.kind is EventKind.SPIKE:
            result.spikes.append((event.day, event.factor))
        elif event.kind is EventKind.DISAPPEAR:
            result.hidden = True
        elif event.kind is EventKind.REOPEN:
            result.reopened = True
        else:
            result.factor *= event.factor
            if event.kind is EventKind.UNIT_CHANGE:
                result.unit = event.unit
    return result


def accrued(
    daily: int, first: date, last: date, as_of: date, spikes: Sequence[tuple[date, Decimal]]
) -> int | Decimal:
    """Sum of a daily rate over ``first..last`` through ``as_of``, spikes multiplying days."""
    end = min(as_of, last)
    if end < first:
        return 0
    if not spikes:
        return daily * ((end - first).days + 1)
    total = Decimal(0)
    day = first
    while day <= end:
        multiplier = Decimal(1)
        for spike_day, factor in spikes:
            if spike_day <= day:
                multiplier *= factor
        total += daily * multiplier
        day += timedelta(days=1)
    return total


def peak(
    daily: int, first: date, last: date, as_of: date, spikes: Sequence[tuple[date, Decimal]]
) -> int | Decimal:
    """A peak measure over ``first..last`` through ``as_of``: the highest spiked daily value."""
    end = min(as_of, last)
    if end < first:
        return 0
    multiplier = Decimal(1)
    for spike_day, factor in spikes:
        if spike_day <= end:
            multiplier = max(multiplier, multiplier * factor)
    return daily if multiplier == 1 else daily * multiplier
