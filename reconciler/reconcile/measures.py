"""Measure kinds: what a stat's number means, and so how a month of it aggregates. Pure.

Every usage line has a kind:

- ``volume`` adds up over days, periods, regions and services (GB, Total MB, requests, hits);
- ``percentile`` is a burstable-billing figure the provider computes over the month
  (95/5 Mbps): it never adds up; the month's value is its largest period value;
- ``peak`` is the month's maximum (Peak Mbps): the largest period value, never added;
- ``gauge`` is a level, not a flow (storage GB): the month's value is its latest period.

The kind of a stat comes from, in order: the ``[[measures]]`` overrides of the configuration
(first match wins), the built-in catalog of the stat types Fastly and Akamai use, and for a
stat neither knows, its unit and name where they are unambiguous; anything else is a volume.
:func:`classify` gives the kind and the reason for it; :func:`month_value` the value of one
line's month (one region, one service, one usage type and unit) from its period values.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import date
from decimal import Decimal, localcontext
from enum import StrEnum
from fnmatch import fnmatchcase
from typing import Protocol

from reconciler.domain import EXACT_CONTEXT


class MeasureKind(StrEnum):
    VOLUME = "volume"
    PERCENTILE = "percentile"
    PEAK = "peak"
    GAUGE = "gauge"

    @property
    def adds_up(self) -> bool:
        """Whether values of different regions or services of one month may be added.

        Volumes add; so do gauges of one moment (storage held in two regions is held in
        both). A percentile or a peak of two regions is not the sum of theirs.
        """
        return self in (MeasureKind.VOLUME, MeasureKind.GAUGE)

    @property
    def projected(self) -> bool:
        """Only a flow is projected to month end; no other kind has a run rate."""
        return self is MeasureKind.VOLUME

    @property
    def lower_bound_to_date(self) -> bool:
        """A collecting month's value can only go up: what is seen so far is a lower bound."""
        return self in (MeasureKind.PERCENTILE, MeasureKind.PEAK)


@dataclass(frozen=True, slots=True)
class Classified:
    """A stat's measure kind and why it has it (shown by ``config check``)."""

    kind: MeasureKind
    reason: str


class MeasureRule(Protocol):
    """One ``[[measures]]`` entry: globs matched against a stat, and the kind it gets."""

    @property
    def provider(self) -> str: ...
    @property
    def product(self) -> str: ...
    @property
    def usage_type(self) -> str: ...
    @property
    def unit(self) -> str: ...
    @property
    def kind(self) -> MeasureKind: ...


@dataclass(frozen=True, slots=True)
class CatalogEntry:
    """A built-in rule: the kind of a provider's stat type (globs, case-sensitive)."""

    provider: str
    usage_type: str
    unit: str
    kind: MeasureKind
    product: str = "*"


_V, _P, _K, _G = MeasureKind.VOLUME, MeasureKind.PERCENTILE, MeasureKind.PEAK, MeasureKind.GAUGE

BUILTIN_CATALOG: tuple[CatalogEntry, ...] = (
    # Fastly bills bandwidth (GB, raw bytes) and requests (units of 10,000) per region.
    CatalogEntry("fastly", "* Bandwidth", "*", _V),
    CatalogEntry("fastly", "* Requests", "*", _V),
    # Akamai Billing API stat types.
    CatalogEntry("akamai", "Total MB", "*", _V),
    CatalogEntry("akamai", "Total GB", "*", _V),
    CatalogEntry("akamai", "Total Hits", "*", _V),
    CatalogEntry("akamai", "*Hits", "*", _V),
    CatalogEntry("akamai", "Images", "*", _V),
    CatalogEntry("akamai", "95/5 Mbps", "*", _P),
    CatalogEntry("akamai", "95/5 Gbps", "*", _P),
    CatalogEntry("akamai", "Peak Mbps", "*", _K),
    CatalogEntry("akamai", "Peak Gbps", "*", _K),
    CatalogEntry("akamai", "Storage GB", "*", _G),
    CatalogEntry("akamai", "Storage MB", "*", _G),
)

_PERCENTILE_RE = re.compile(r"\b(9[05]/5|95th|p9[05]|percentile)\b", re.IGNORECASE)
_PEAK_RE = re.compile(r"\b(peak|max(imum)?)\b", re.IGNORECASE)
_RATE_RE = re.compile(r"\b[kmgt]?bps\b", re.IGNORECASE)
_STORAGE_RE = re.compile(r"\b(storage|stored)\b", re.IGNORECASE)


def classify(
    provider: str,
    usage_type: str,
    unit: str,
    *,
    product: str = "",
    product_name: str = "",
    overrides: Sequence[MeasureRule] = (),
) -> Classified:
    """The kind of one stat type, and the reason: overrides, then catalog, then heuristics."""
    for index, rule in enumerate(overrides, start=1):
        if (
            fnmatchcase(provider, rule.provider)
            and (fnmatchcase(product, rule.product) or fnmatchcase(product_name, rule.product))
            and fnmatchcase(usage_type, rule.usage_type)
            and fnmatchcase(unit, rule.unit)
        ):
            return Classified(rule.kind, f"[[measures]] entry {index} of the configuration")
    for entry in BUILTIN_CATALOG:
        if (
            provider == entry.provider
            and (fnmatchcase(product, entry.product) or fnmatchcase(product_name, entry.product))
            and fnmatchcase(usage_type, entry.usage_type)
            and fnmatchcase(unit, entry.unit)
        ):
            return Classified(
                entry.kind, f"built-in catalog ({entry.provider} {entry.usage_type!r})"
            )
    return _by_unit_and_name(usage_type, unit)


def _by_unit_and_name(usage_type: str, unit: str) -> Classified:
    text = f"{usage_type} {unit}"
    clues: dict[MeasureKind, str] = {}
    if _PERCENTILE_RE.search(text):
        clues[_P] = "its name or unit names a percentile"
    if _PEAK_RE.search(text):
        clues[_K] = "its name or unit names a peak"
    if _STORAGE_RE.search(text):
        clues[_G] = "its name or unit names storage, a level"
    if not clues and _RATE_RE.search(unit):
        clues[_P] = f"its unit {unit!r} is a rate (bits per second), billed as a percentile"
    if len(clues) == 1:
        ((kind, why),) = clues.items()
        return Classified(kind, f"not in the catalog; {why}")
    if clues:
        names = " and ".join(sorted(clues))
        return Classified(_V, f"not in the catalog; ambiguous (looks like {names}): volume")
    return Classified(_V, "not in the catalog; nothing in its name or unit says otherwise: volume")


@dataclass(frozen=True, slots=True)
class PeriodValue:
    """The quantity one period of a month reported (Akamai can split a month in periods)."""

    period_start: date
    quantity: Decimal


def month_value(kind: MeasureKind, periods: Iterable[PeriodValue]) -> Decimal:
    """The value of one line's month from its periods, by kind (0 for no periods).

    Volume: the sum. Percentile and peak: the largest period value. Gauge: the latest
    period's value (the largest of the latest periods if several start the same day).
    """
    values = list(periods)
    if not values:
        return Decimal(0)
    if kind is MeasureKind.VOLUME:
        with localcontext(EXACT_CONTEXT):
            return sum((p.quantity for p in values), Decimal(0))
    if kind is MeasureKind.GAUGE:
        return max(values, key=lambda p: (p.period_start, p.quantity)).quantity
    return max(p.quantity for p in values)


def combine(kind: MeasureKind, values: Iterable[Decimal]) -> Decimal:
    """The value of several lines (regions, services) of one month; only for kinds that add.

    Raises ``ValueError`` for a percentile or a peak: those are evaluated line by line.
    """
    if not kind.adds_up:
        raise ValueError(f"{kind} values never add up over regions or services")
    with localcontext(EXACT_CONTEXT):
        return sum(values, Decimal(0))
