"""How a plan's items are grouped for reading: routine month closes, services under accounts.

Pure. Grouping changes what a reader sees, never what ``apply`` acknowledges: every item stays
in the plan (and in its JSON) with its own fingerprint.

- A *routine month close* is a line that finalized within its tolerance (``finalized``, info):
  the month's lines of one source become one summary line instead of one item each.
- A Fastly change often shows once for the account-level line and once per service. The
  service items are shown under their account-level item, biggest change first.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from decimal import Decimal

from reconciler.display import plural
from reconciler.domain import ChangeKind, ItemCategory, Month, PlanItem, Severity

# Kinds whose info-level items are routine: recorded and acknowledged, shown as a summary.
ROUTINE_KINDS = frozenset({ChangeKind.FINALIZED.value})


def is_routine(item: PlanItem) -> bool:
    return item.kind in ROUTINE_KINDS and item.severity == Severity.INFO


@dataclass(frozen=True)
class MonthClose:
    """One source's month whose lines finalized within tolerance."""

    source: str
    kind: str
    month: Month
    items: tuple[PlanItem, ...]

    @property
    def unchanged(self) -> int:
        return sum(1 for i in self.items if i.delta is None or i.delta == 0)

    def describe(self) -> str:
        what = self.kind.replace("_", " ")
        lines = plural(len(self.items), "line")
        changed = len(self.items) - self.unchanged
        if not changed:
            return f"{self.month} {what}: {lines}, total unchanged"
        return f"{self.month} {what}: {lines}, {changed} changed within tolerance"


def month_closes(items: Iterable[PlanItem]) -> list[MonthClose]:
    """The routine items of ``items`` as one close per source, kind and month."""
    grouped: dict[tuple[str, str, Month], list[PlanItem]] = {}
    for item in items:
        if is_routine(item):
            grouped.setdefault((item.source, item.kind, item.month), []).append(item)
    return [
        MonthClose(source, kind, month, tuple(group))
        for (source, kind, month), group in sorted(grouped.items(), key=lambda kv: str(kv[0]))
    ]


@dataclass
class ItemGroup:
    """An item and the per-service items shown under it (biggest change first)."""

    item: PlanItem
    services: list[PlanItem] = field(default_factory=list)


def _line_of(item: PlanItem) -> tuple[object, ...]:
    return (
        item.source,
        item.kind,
        item.product,
        item.usage_type,
        item.region,
        item.month,
        item.period_start,
    )


def _size(item: PlanItem) -> Decimal:
    delta = item.delta
    return abs(delta) if delta is not None else Decimal(0)


def group_services(items: Sequence[PlanItem]) -> list[ItemGroup]:
    """``items`` in order, with each service-level drift item moved under the account-level
    item of the same change (same kind, product, usage type, region, month and period), if any."""
    parents: dict[tuple[object, ...], ItemGroup] = {}
    for item in items:
        if item.category == ItemCategory.DRIFT and not item.service:
            parents.setdefault(_line_of(item), ItemGroup(item))
    groups: list[ItemGroup] = []
    for item in items:
        parent = parents.get(_line_of(item))
        if item.service and item.category == ItemCategory.DRIFT and parent is not None:
            parent.services.append(item)
        elif parent is not None and parent.item is item:
            groups.append(parent)
        else:
            groups.append(ItemGroup(item))
    for group in groups:
        group.services.sort(key=lambda i: (-_size(i), i.service_name or i.service))
    return groups
