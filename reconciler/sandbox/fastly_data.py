"""Fastly account data computed on demand: service lines, account lines and invoices.

Service-level lines live in a virtual index space ordered by month, then service, then usage
type (the API's ``sort: month``). A page is generated from an offset in that space, so serving
a million lines needs memory for one page only. A line's daily rate (in thousandths of its
unit) is ``weight[service] x level[usage type, month] + extra[service, usage type]``, so the
account-level rate of a usage type is a precomputed sum and account lines equal the sum of
their service lines exactly.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import date
from decimal import ROUND_HALF_EVEN, Decimal
from typing import Any

from reconciler.domain import Month, Provider
from reconciler.sandbox.catalog import FASTLY_USAGE_TYPES, SERVICE_NAMES, FastlyUsageType
from reconciler.sandbox.events import (
    EventKind,
    LineEffects,
    LineRef,
    SandboxEvent,
    accrued,
    effects,
)
from reconciler.sandbox.scenario import Scenario, det_id, det_int, elapsed_days


@dataclass(frozen=True, slots=True)
class FastlyService:
    service_id: str
    name: str


@dataclass(frozen=True, slots=True)
class ServiceQuery:
    """The index space of one service-usage query: months x services x usage types."""

    months: Sequence[Month]
    services: Sequence[int]
    usage_types: Sequence[int]

    @property
    def size(self) -> int:
        return len(self.months) * len(self.services) * len(self.usage_types)

    def at(self, index: int) -> tuple[Month, int, int]:
        per_month = len(self.services) * len(self.usage_types)
        month, rest = divmod(index, per_month)
        service, usage_type = divmod(rest, len(self.usage_types))
        return self.months[month], self.services[service], self.usage_types[usage_type]


@dataclass(frozen=True, slots=True)
class Quantity:
    value: Decimal
    raw: int
    unit: str
    changed_on: date | None


class FastlyData:
    """Deterministic Fastly usage for one scenario; every method takes the day to serve."""

    def __init__(self, scenario: Scenario) -> None:
        self.scenario = scenario
        seed = scenario.seed
        self.usage_types: tuple[FastlyUsageType, ...] = FASTLY_USAGE_TYPES[
            : scenario.fastly_usage_types
        ]
        self.services = [self._service(i) for i in range(scenario.fastly_services)]
        self._weight = [det_int(seed, "w", i, low=1, high=40) for i in self.services_range]
        count = len(self.usage_types)
        self._extra = [
            det_int(seed, "x", i, u, low=0, high=999)
            for i in self.services_range
            for u in range(count)
        ]
        self._weight_sum = sum(self._weight)
        self._extra_sum = [sum(self._extra[u::count]) for u in range(count)]
        self._levels: dict[tuple[int, Month], int] = {}

    @property
    def services_range(self) -> range:
        return range(self.scenario.fastly_services)

    def _service(self, index: int) -> FastlyService:
        seed = self.scenario.seed
        service_id = det_id(seed, "service", index, length=22)
        base = SERVICE_NAMES[index % len(SERVICE_NAMES)]
        name = base if index < len(SERVICE_NAMES) else f"s{index:05d}.{base}"
        return FastlyService(service_id, name)

    def _level(self, usage_type: int, month: Month) -> int:
        key = (usage_type, month)
        level = self._levels.get(key)
        if level is None:
            level = det_int(self.scenario.seed, "level", usage_type, month, low=20, high=4000)
            self._levels[key] = level
        return level

    def service_rate(self, service: int, usage_type: int, month: Month) -> int:
        extra = self._extra[service * len(self.usage_types) + usage_type]
        return self._weight[service] * self._level(usage_type, month) + extra

    def account_rate(self, usage_type: int, month: Month) -> int:
        return self._weight_sum * self._level(usage_type, month) + self._extra_sum[usage_type]

    # --- quantities ----------------------------------------------------------------------

    def line_ref(self, usage_type: int, month: Month, service: int | None) -> LineRef:
        kind = self.usage_types[usage_type]
        svc = self.services[service] if service is not None else None
        return LineRef(
            Provider.FASTLY,
            kind.product_id,
            kind.name,
            month,
            kind.region,
            service=(svc.service_id, svc.name) if svc is not None else None,
        )

    def _quantity(
        self, daily_milli: int, usage_type: int, month: Month, as_of: date, fx: LineEffects | None
    ) -> Quantity:
        kind = self.usage_types[usage_type]
        spikes = fx.spikes if fx is not None else ()
        milli = accrued(daily_milli, month.first_day, month.last_day, as_of, spikes)
        if fx is None and isinstance(milli, int):
            raw = _raw_milli(milli, kind.raw_per_unit)
            return Quantity(Decimal(milli).scaleb(-3), raw, kind.unit, None)
        value = Decimal(milli).scaleb(-3) * (fx.factor if fx is not None else 1)
        raw = _raw(value, kind.raw_per_unit)
        unit = fx.unit if fx is not None and fx.unit is not None else kind.unit
        return Quantity(value, raw, unit, fx.changed_on if fx is not None else None)

    def _plain(self, daily_milli: int, usage_type: int, days: int) -> Quantity | None:
        if days == 0:
            return None
        kind = self.usage_types[usage_type]
        milli = daily_milli * days
        raw = _raw_milli(milli, kind.raw_per_unit)
        return Quantity(Decimal(milli).scaleb(-3), raw, kind.unit, None)

    def service_quantity(
        self,
        service: int,
        usage_type: int,
        month: Month,
        as_of: date,
        events: Sequence[SandboxEvent],
    ) -> Quantity | None:
        """A service line's quantity on ``as_of``; None if absent (no usage yet, or hidden)."""
        fx = effects(events, self.line_ref(usage_type, month, service), as_of) if events else None
        if fx is not None and fx.hidden:
            return None
        if elapsed_days(month.first_day, month.last_day, as_of) == 0:
            return None
        return self._quantity(
            self.service_rate(service, usage_type, month), usage_type, month, as_of, fx
        )

    def account_quantity(
        self, usage_type: int, month: Month, as_of: date, events: Sequence[SandboxEvent]
    ) -> Quantity | None:
        """The account line: the exact sum of the service lines, hidden ones included."""
        if elapsed_days(month.first_day, month.last_day, as_of) == 0:
            return None
        own = effects(events, self.line_ref(usage_type, month, None), as_of) if events else None
        if own is not None and own.hidden:
            return None
        if not any(e.active(as_of) and e.match.get("service") for e in events):
            rate = self.account_rate(usage_type, month)
            return self._quantity(rate, usage_type, month, as_of, own)
        total, changed = Decimal(0), own.changed_on if own is not None else None
        for service in self.services_range:
            ref = self.line_ref(usage_type, month, service)
            fx = effects(events, ref, as_of)
            if fx is not None:
                fx.hidden = False
                fx.unit = None
            rate = self.service_rate(service, usage_type, month)
            part = self._quantity(rate, usage_type, month, as_of, fx)
            total += part.value
            if part.changed_on is not None:
                changed = max(changed or part.changed_on, part.changed_on)
        kind = self.usage_types[usage_type]
        unit = own.unit if own is not None and own.unit else kind.unit
        return Quantity(total, _raw(total, kind.raw_per_unit), unit, changed)

    # --- records -------------------------------------------------------------------------

    def service_record(
        self, month: Month, service: int, usage_type: int, q: Quantity
    ) -> dict[str, Any]:
        kind = self.usage_types[usage_type]
        svc = self.services[service]
        return {
            "customer_id": self.scenario.fastly_customer_id,
            "service_id": svc.service_id,
            "service_name": svc.name,
            "month": str(month),
            "product_id": kind.product_id,
            "usage_type": kind.name,
            "name": kind.name,
            "region": kind.region,
            "unit": q.unit,
            "quantity": q.value,
            "raw_quantity": q.raw,
        }

    def account_record(
        self, month: Month, usage_type: int, q: Quantity, as_of: date
    ) -> dict[str, Any]:
        kind = self.usage_types[usage_type]
        updated = min(as_of, (month + 1).first_day)
        if q.changed_on is not None:
            updated = max(updated, q.changed_on)
        return {
            "month": str(month),
            "usage_type": kind.name,
            "name": kind.name,
            "region": kind.region,
            "unit": q.unit,
            "quantity": q.value,
            "raw_quantity": q.raw,
            "product_id": kind.product_id,
            "last_updated_at": f"{updated.isoformat()}T04:11:00Z",
        }

    # --- service pages -------------------------------------------------------------------

    def service_page(
        self,
        query: ServiceQuery,
        offset: int,
        limit: int,
        as_of: date,
        events: Sequence[SandboxEvent],
    ) -> tuple[list[dict[str, Any]], int | None]:
        """Up to ``limit`` records from ``offset``; the offset to continue from, or None."""
        events = [e for e in events if e.active(as_of)]
        records: list[dict[str, Any]] = []
        index = offset
        days: dict[Month, int] = {}
        while index < query.size and len(records) < limit:
            month, service, usage_type = query.at(index)
            index += 1
            q: Quantity | None
            if events:
                q = self.service_quantity(service, usage_type, month, as_of, events)
            else:  # the common case, kept cheap: a million lines go through here
                if month not in days:
                    days[month] = elapsed_days(month.first_day, month.last_day, as_of)
                q = self._plain(
                    self.service_rate(service, usage_type, month), usage_type, days[month]
                )
            if q is not None:
                records.append(self.service_record(month, service, usage_type, q))
        return records, (index if index < query.size else None)

    def service_total(
        self, query: ServiceQuery, as_of: date, events: Sequence[SandboxEvent]
    ) -> int:
        """How many records the query yields: the index space less the hidden lines."""
        months = [m for m in query.months if elapsed_days(m.first_day, m.last_day, as_of)]
        hiding = [
            e
            for e in events
            if e.active(as_of) and e.kind is EventKind.DISAPPEAR and e.provider is Provider.FASTLY
        ]
        total = len(months) * len(query.services) * len(query.usage_types)
        for position, event in enumerate(hiding):
            for month in months:
                if event.match.get("month", str(month)) != str(month):
                    continue
                for usage_type in query.usage_types:
                    if not self._type_matches(event, usage_type):
                        continue
                    for service in self._services_matching(event, query.services):
                        ref = self.line_ref(usage_type, month, service)
                        if event.matches(ref) and not any(
                            earlier.matches(ref) for earlier in hiding[:position]
                        ):
                            total -= 1
        return total

    def _type_matches(self, event: SandboxEvent, usage_type: int) -> bool:
        kind = self.usage_types[usage_type]
        fields = {"product": kind.product_id, "usage_type": kind.name, "region": kind.region}
        return all(event.match.get(name, value) == value for name, value in fields.items())

    def _services_matching(self, event: SandboxEvent, services: Sequence[int]) -> Sequence[int]:
        wanted = event.match.get("service")
        if wanted is None:
            return services
        return [
            s for s in services if wanted in (self.services[s].service_id, self.services[s].name)
        ]

    def service_index(self, wanted: str) -> int | None:
        for index, service in enumerate(self.services):
            if wanted in (service.service_id, service.name):
                return index
        return None

    def money(self, units: Decimal, usage_type: int) -> tuple[Decimal, Decimal]:
        rate = self.usage_types[usage_type].rate_usd
        return rate, (units * rate).quantize(Decimal("0.01"), ROUND_HALF_EVEN)


def _raw(value: Decimal, per_unit: int) -> int:
    return int((value * per_unit).to_integral_value(ROUND_HALF_EVEN))


def _raw_milli(milli: int, per_unit: int) -> int:
    """``round(milli * per_unit / 1000)``, half to even like :func:`_raw`, in integers."""
    whole, rest = divmod(milli * per_unit, 1000)
    if rest > 500 or (rest == 500 and whole % 2):
        whole += 1
    return whole
