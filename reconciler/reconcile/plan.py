"""Plans: what to review, shown like ``terraform plan`` and saved as JSON for ``apply``.

Pure: a plan is built from review items and the state serial it was made from; ``apply``
acknowledges exactly the items a plan lists, and only while the serial still matches.
"""

from __future__ import annotations

import json
from collections import Counter
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal
from typing import Any

from reconciler.domain import (
    ChangeKind,
    ItemCategory,
    LineStatus,
    Observation,
    PlanItem,
    Severity,
    canonical_decimal,
)
from reconciler.errors import ReconcilerError
from reconciler.reconcile.forecast import forecast_json

FORMAT_VERSION = 1
LEGEND = "Symbols: + new   ~ changed   - disappeared   ! critical"


@dataclass(frozen=True)
class Plan:
    serial: int
    created_at: datetime
    items: tuple[PlanItem, ...]
    values_hashes: Mapping[str, str]

    @property
    def drift(self) -> list[PlanItem]:
        return [i for i in self.items if i.category == ItemCategory.DRIFT]

    @property
    def findings(self) -> list[PlanItem]:
        return [i for i in self.items if i.category == ItemCategory.FINDING]

    @property
    def empty(self) -> bool:
        return not self.items

    def summary(self) -> dict[str, int]:
        counts = Counter(item.kind for item in self.items)
        order = {kind: i for i, kind in enumerate(_SUMMARY_ORDER)}
        return dict(sorted(counts.items(), key=lambda kv: (order.get(kv[0], 99), kv[0])))

    def expected_acknowledgements(self) -> dict[str, str]:
        return {item.fingerprint: self.values_hashes[item.fingerprint] for item in self.items}


_SUMMARY_ORDER = [
    "restated",
    "reopened",
    "unit_changed",
    "invoice_mismatch",
    "decreased",
    "disappeared",
    "over_expectation",
    "projected_overage",
    "under_expectation",
    "unit_mismatch",
    "no_match",
    "finalized",
    "new",
    "reappeared",
    "grew",
]


def symbol(item: PlanItem) -> str:
    if item.severity == Severity.CRITICAL:
        return "!"
    if item.kind == ChangeKind.NEW:
        return "+"
    if item.kind == ChangeKind.DISAPPEARED:
        return "-"
    return "~"


def format_quantity(value: Decimal) -> str:
    text = canonical_decimal(value)
    whole, _, fraction = text.partition(".")
    sign = "-" if whole.startswith("-") else ""
    whole = f"{int(whole.lstrip('-')):,}"
    return f"{sign}{whole}" + (f".{fraction}" if fraction else "")


def _signed(value: Decimal) -> str:
    return ("+" if value > 0 else "") + format_quantity(value)


def _side(obs: Observation | None) -> str:
    if obs is None:
        return "(absent)"
    unit = f" {obs.unit}" if obs.unit and obs.unit != "unit" else ""
    return f"{format_quantity(obs.quantity)}{unit}"


def _status_line(item: PlanItem) -> str:
    before, after = item.before, item.after
    if item.category == ItemCategory.DRIFT and before and after and before.status != after.status:
        return f"{before.status.value} → {after.status.value}"
    side = after or before
    return side.status.value if side else ""


def describe(item: PlanItem) -> list[str]:
    """The lines of one item's block in the text plan."""
    kind = item.kind.replace("_", " ")
    head = f"  {symbol(item)} {kind:<18} {item.line_label}  {item.month}"
    if item.account:
        head += f"  ({item.account})"
    lines = [head]
    status = _status_line(item)
    if item.category == ItemCategory.FINDING:
        expected = _side(item.before) if item.before else "-"
        lines.append(f"      observed: {_side(item.after)}   expected: {expected}   [{status}]")
    else:
        change = f"      quantity: {_side(item.before)} → {_side(item.after)}"
        if item.before and item.after and item.before.unit != item.after.unit:
            change += f"   (unit {item.before.unit!r} → {item.after.unit!r})"
        elif item.delta is not None:
            percent = f", {_signed(item.percent)}%" if item.percent is not None else ""
            change += f"   ({_signed(item.delta)}{percent})"
        lines.append(change + (f"   [{status}]" if status else ""))
    if item.message:
        lines.append(f"      {item.message}")
    return lines


def summary_line(plan: Plan) -> str:
    if plan.empty:
        return "No changes. Usage matches expectations."
    parts = [f"{n} {kind.replace('_', ' ')}" for kind, n in plan.summary().items()]
    return "Plan: " + ", ".join(parts) + "."


def render_text(plan: Plan, *, limit_per_kind: int = 50) -> str:
    """The human plan: legend, one block per item grouped by source, a summary line."""
    if plan.empty:
        return summary_line(plan) + "\n"
    out = [
        "reconciler has compared the latest usage with the last reviewed state and with the",
        "declared expectations. Review the items below; 'reconciler apply' acknowledges them.",
        "",
        LEGEND,
        "",
    ]
    by_source: dict[str, list[PlanItem]] = {}
    for item in plan.items:
        by_source.setdefault(item.source, []).append(item)
    for source, items in by_source.items():
        provider = items[0].provider
        out.append(f"Source {source} ({provider}):")
        shown: Counter[str] = Counter()
        hidden: Counter[str] = Counter()
        for item in items:
            if limit_per_kind and shown[item.kind] >= limit_per_kind:
                hidden[item.kind] += 1
                continue
            shown[item.kind] += 1
            out.extend(describe(item))
        for kind, count in hidden.items():
            out.append(f"  … and {count} more {kind.replace('_', ' ')} (see --json or --limit 0)")
        out.append("")
    out.append(summary_line(plan))
    return "\n".join(out) + "\n"


def _observation_json(obs: Observation | None) -> dict[str, str] | None:
    if obs is None:
        return None
    return {
        "quantity": canonical_decimal(obs.quantity),
        "unit": obs.unit,
        "status": obs.status.value,
    }


def item_json(item: PlanItem, values_hash: str | None = None) -> dict[str, Any]:
    delta, percent = item.delta, item.percent
    data: dict[str, Any] = {
        "kind": item.kind,
        "severity": item.severity.value,
        "fingerprint": item.fingerprint,
        "source": item.source,
        "provider": item.provider,
        "account": item.account,
        "product": item.product,
        "product_name": item.product_name,
        "usage_type": item.usage_type,
        "region": item.region,
        "service": item.service,
        "month": str(item.month),
        "before": _observation_json(item.before),
        "after": _observation_json(item.after),
        "delta": canonical_decimal(delta) if delta is not None else None,
        "percent": canonical_decimal(percent) if percent is not None else None,
        "message": item.message,
    }
    if item.forecast is not None:
        data["forecast"] = forecast_json(item.forecast)
    if values_hash is not None:
        data["values_hash"] = values_hash
    return data


def render_json(plan: Plan) -> str:
    data = {
        "format_version": FORMAT_VERSION,
        "serial": plan.serial,
        "created_at": plan.created_at.isoformat(),
        "drift": [item_json(i, plan.values_hashes.get(i.fingerprint)) for i in plan.drift],
        "findings": [item_json(i, plan.values_hashes.get(i.fingerprint)) for i in plan.findings],
        "summary": plan.summary(),
    }
    return json.dumps(data, indent=2) + "\n"


@dataclass(frozen=True)
class SavedPlan:
    """A plan read back from a file: the serial it was made from and what it showed."""

    serial: int
    acknowledgements: dict[str, str]


def parse_saved_plan(text: str, origin: str) -> SavedPlan:
    try:
        data = json.loads(text)
        if data.get("format_version") != FORMAT_VERSION:
            raise ValueError(f"unsupported format_version {data.get('format_version')!r}")
        serial = int(data["serial"])
        acks = {
            entry["fingerprint"]: entry["values_hash"]
            for entry in [*data["drift"], *data["findings"]]
        }
    except (ValueError, KeyError, TypeError) as exc:
        raise ReconcilerError(
            f"{origin} is not a plan saved by 'reconciler plan --out': {exc}"
        ) from None
    return SavedPlan(serial, acks)


def is_collecting(item: PlanItem) -> bool:
    side = item.after or item.before
    return side is not None and side.status == LineStatus.COLLECTING


def sort_for_plan(items: Sequence[PlanItem]) -> list[PlanItem]:
    order = {kind: i for i, kind in enumerate(_SUMMARY_ORDER)}
    return sorted(
        items,
        key=lambda i: (
            i.source,
            -i.severity.rank,
            order.get(i.kind, 99),
            str(i.month),
            i.line_label,
        ),
    )
