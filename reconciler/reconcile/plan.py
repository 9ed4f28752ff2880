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

from reconciler import display
from reconciler.display import plural
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
from reconciler.money import Money
from reconciler.reconcile.forecast import forecast_json
from reconciler.reconcile.plan_groups import (
    ItemGroup,
    group_services,
    is_routine,
    month_closes,
)
from reconciler.reconcile.spend import ProjectedInvoice

FORMAT_VERSION = 1
LEGEND = "Symbols: + new   ~ changed   - disappeared   ! critical"


@dataclass(frozen=True)
class Plan:
    serial: int
    created_at: datetime
    items: tuple[PlanItem, ...]
    values_hashes: Mapping[str, str]
    invoices: tuple[ProjectedInvoice, ...] = ()

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

    def needs_review(self, min_severity: Severity = Severity.WARNING) -> bool:
        """Whether any item is at or above ``min_severity`` (what --detailed-exitcode asks)."""
        return any(item.severity.rank >= min_severity.rank for item in self.items)

    def expected_acknowledgements(self) -> dict[str, str]:
        return {item.fingerprint: self.values_hashes[item.fingerprint] for item in self.items}


_SUMMARY_ORDER = [
    "restated",
    "finalized_disappeared",
    "reopened",
    "unit_changed",
    "invoice_mismatch",
    "cost_mismatch",
    "repriced",
    "decreased",
    "finalized_changed",
    "disappeared",
    "over_expectation",
    "over_budget",
    "rate_mismatch",
    "projected_overage",
    "projected_over_budget",
    "under_expectation",
    "unit_mismatch",
    "no_match",
    "finalized",
    "left_window_collecting",
    "new",
    "reappeared",
    "grew",
]


def symbol(item: PlanItem) -> str:
    if item.severity == Severity.CRITICAL:
        return "!"
    if item.kind == ChangeKind.NEW:
        return "+"
    if item.kind in (ChangeKind.DISAPPEARED, ChangeKind.FINALIZED_DISAPPEARED):
        return "-"
    return "~"


def _side(obs: Observation | None) -> str:
    if obs is None:
        return "(absent)"
    return display.amount(obs.quantity, obs.unit)


def _status_line(item: PlanItem) -> str:
    before, after = item.before, item.after
    if item.category == ItemCategory.DRIFT and before and after and before.status != after.status:
        return f"{before.status.value} → {after.status.value}"
    side = after or before
    return side.status.value if side else ""


def describe(item: PlanItem) -> list[str]:
    """The lines of one item's block in the text plan."""
    kind = item.kind.replace("_", " ")
    head = f"  {symbol(item)} {kind:<18} {item.line_label}  {item.when}"
    if item.account:
        head += f"  ({item.account})"
    impact = impact_text(item)
    if impact:
        head += f"  {impact}"
    lines = [head]
    status = _status_line(item)
    if item.category == ItemCategory.FINDING and item.before is None and item.after is None:
        pass  # nothing measured (no_match): the message says what matched nothing
    elif item.category == ItemCategory.FINDING:
        expected = _side(item.before) if item.before else "-"
        lines.append(f"      observed: {_side(item.after)}   expected: {expected}   [{status}]")
    elif item.before is None and item.after is None:
        pass  # a month-level item (left_window_collecting): its message says it all
    else:
        change = f"      quantity: {_side(item.before)} → {_side(item.after)}"
        if item.before and item.after and item.before.unit != item.after.unit:
            change += f"   (unit {item.before.unit!r} → {item.after.unit!r})"
        elif item.delta is not None:
            percent = f", {display.percent(item.percent)}" if item.percent is not None else ""
            change += f"   ({display.signed(item.delta)}{percent})"
        lines.append(change + (f"   [{status}]" if status else ""))
        if item.moved_on is not None:
            lines.append(f"      now: {_side(item.moved_on)}   [{item.moved_on.status.value}]")
    if item.message:
        lines.append(f"      {item.message}")
    return lines


def impact_text(item: PlanItem) -> str:
    """``+1,234.56 USD``: the money impact rounded to the currency's minor unit, or ''."""
    if item.impact is None or not item.impact_currency:
        return ""
    return Money(item.impact, item.impact_currency).display(signed=True)


def summary_line(plan: Plan) -> str:
    """``Plan: 4 restated, 1 decreased; 2 month closes (56 lines finalized).``"""
    if plan.empty:
        return "No changes. Usage matches expectations."
    review = Counter(item.kind for item in plan.items if not is_routine(item))
    order = {kind: i for i, kind in enumerate(_SUMMARY_ORDER)}
    parts = [
        f"{n:,} {kind.replace('_', ' ')}"
        for kind, n in sorted(review.items(), key=lambda kv: (order.get(kv[0], 99), kv[0]))
    ]
    text = "Plan: " + (", ".join(parts) if parts else "nothing to review")
    closes = month_closes(plan.items)
    if closes:
        lines = Counter(close.kind for close in closes for _ in close.items)
        finalized = ", ".join(
            f"{plural(n, 'line')} {kind.replace('_', ' ')}" for kind, n in lines.items()
        )
        text += f"; {plural(len(closes), 'month close')} ({finalized})"
    return text + "."


def _describe_group(group: ItemGroup) -> list[str]:
    lines = describe(group.item)
    if group.services:
        names = [_service_change(item) for item in group.services]
        lines.append(f"      and {plural(len(names), 'service')}: " + ", ".join(names))
    return lines


def _service_change(item: PlanItem) -> str:
    name = item.service_name or item.service
    delta = item.delta
    return f"{name} ({display.signed(delta)})" if delta is not None else name


def _select(items: list[PlanItem], limit_per_kind: int) -> tuple[list[ItemGroup], Counter[str]]:
    """The item groups a text plan shows (at most ``limit_per_kind`` per kind) and how many
    items of each kind it leaves out."""
    shown: list[ItemGroup] = []
    per_kind: Counter[str] = Counter()
    hidden: Counter[str] = Counter()
    for group in group_services([i for i in items if not is_routine(i)]):
        kind = group.item.kind
        if limit_per_kind and per_kind[kind] >= limit_per_kind:
            hidden[kind] += 1 + len(group.services)
            continue
        per_kind[kind] += 1
        shown.append(group)
    return shown, hidden


def _by_source(plan: Plan) -> dict[str, list[PlanItem]]:
    by_source: dict[str, list[PlanItem]] = {}
    for item in plan.items:
        by_source.setdefault(item.source, []).append(item)
    return by_source


def shown_items(plan: Plan, *, limit_per_kind: int = 50) -> list[PlanItem]:
    """Exactly the items ``render_text`` shows with this limit (a routine month close and the
    services listed under an account line count as shown): what a plain ``apply`` may
    acknowledge after displaying the plan."""
    shown: list[PlanItem] = []
    for items in _by_source(plan).values():
        groups, _ = _select(items, limit_per_kind)
        for group in groups:
            shown += [group.item, *group.services]
        shown += [i for i in items if is_routine(i)]
    return shown


def _source_block(source: str, items: list[PlanItem], limit_per_kind: int) -> list[str]:
    out = [f"Source {source} ({items[0].provider}):"]
    groups, hidden = _select(items, limit_per_kind)
    for group in groups:
        out.extend(_describe_group(group))
    for kind, count in hidden.items():
        out.append(f"  … and {count:,} more {kind.replace('_', ' ')} (see --json or --limit 0)")
    closes = month_closes(items)
    if closes:
        out.append("  Month closes (finalized within tolerance; recorded by 'apply'):")
        out.extend(f"    {close.describe()}" for close in closes)
    out.append("")
    return out


def invoices_line(invoices: Sequence[ProjectedInvoice]) -> str:
    """``Projected invoice 2024-07 (as of 2024-07-14): akamai 1.00 USD; fastly 2.00 USD.``"""
    if not invoices:
        return ""
    groups: dict[tuple[str, str], list[str]] = {}
    for invoice in invoices:
        key = (str(invoice.month), str(invoice.as_of))
        groups.setdefault(key, []).append(invoice.describe())
    return " ".join(
        f"Projected invoice {month} (as of {as_of}): " + "; ".join(parts) + "."
        for (month, as_of), parts in sorted(groups.items())
    )


def render_text(plan: Plan, *, limit_per_kind: int = 50) -> str:
    """The human plan: legend, the items grouped by source (services under their account
    line, routine month closes as one line each), a summary line (and the projected invoice
    of the open month where rates price it)."""
    money = invoices_line(plan.invoices)
    if plan.empty:
        return (money + "\n" if money else "") + summary_line(plan) + "\n"
    out = [
        "reconciler has compared the latest usage with the last reviewed state and with the",
        "declared expectations. Review the items below; 'reconciler apply' acknowledges them.",
        "",
        LEGEND,
        "",
    ]
    for source, items in _by_source(plan).items():
        out.extend(_source_block(source, items, limit_per_kind))
    if money:
        out.append(money)
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
        "service_name": item.service_name,
        "month": str(item.month),
        "period_start": item.period_start.isoformat() if item.period_start else None,
        "period_end": item.period_end.isoformat() if item.period_end else None,
        "routine": is_routine(item),
        "before": _observation_json(item.before),
        "after": _observation_json(item.after),
        "current": _observation_json(item.current),
        "delta": canonical_decimal(delta) if delta is not None else None,
        "percent": canonical_decimal(percent) if percent is not None else None,
        "message": item.message,
        "impact": None
        if item.impact is None
        else {"amount": canonical_decimal(item.impact), "currency": item.impact_currency},
    }
    if item.forecast is not None:
        data["forecast"] = forecast_json(item.forecast)
    if item.team:
        data["team"] = item.team
    if values_hash is not None:
        data["values_hash"] = values_hash
    return data


def render_json(plan: Plan, stale: Mapping[str, str] | None = None) -> str:
    """The plan as JSON (also the ``plan --out`` file). ``stale`` names each source whose
    refresh failed, with its error: the plan shows that source's last stored state."""
    data = {
        "format_version": FORMAT_VERSION,
        "serial": plan.serial,
        "created_at": plan.created_at.isoformat(),
        "stale_sources": [
            {"source": source, "error": error} for source, error in (stale or {}).items()
        ],
        "drift": [item_json(i, plan.values_hashes.get(i.fingerprint)) for i in plan.drift],
        "findings": [item_json(i, plan.values_hashes.get(i.fingerprint)) for i in plan.findings],
        "summary": plan.summary(),
        "projected_invoices": [
            {
                "source": i.source,
                "month": str(i.month),
                "as_of": i.as_of.isoformat(),
                "currency": i.currency,
                "amount": canonical_decimal(i.amount),
                "rates": "last invoice" if i.at_last_rates else "declared",
            }
            for i in plan.invoices
        ],
    }
    return json.dumps(data, indent=2) + "\n"


@dataclass(frozen=True)
class SavedPlan:
    """A plan read back from a file: the serial it was made from and what it showed."""

    serial: int
    acknowledgements: dict[str, str]


def _saved_entries(data: dict[str, Any], key: str) -> list[tuple[str, str]]:
    entries = data.get(key)
    if not isinstance(entries, list):
        raise ValueError(f"{key!r} must be a list of plan items")
    pairs = []
    for index, entry in enumerate(entries):
        if not isinstance(entry, dict):
            raise ValueError(f"{key}[{index}] is not a plan item")
        fingerprint, values_hash = entry.get("fingerprint"), entry.get("values_hash")
        if not isinstance(fingerprint, str) or not isinstance(values_hash, str):
            raise ValueError(f"{key}[{index}] has no fingerprint and values_hash")
        pairs.append((fingerprint, values_hash))
    return pairs


def parse_saved_plan(text: str, origin: str) -> SavedPlan:
    """Read a plan saved by ``plan --out``; anything else is refused with one line."""
    try:
        data = json.loads(text)
        if not isinstance(data, dict):
            raise ValueError(f"it holds a JSON {type(data).__name__}, not a plan object")
        if data.get("format_version") != FORMAT_VERSION:
            raise ValueError(f"unsupported format_version {data.get('format_version')!r}")
        serial = data.get("serial")
        if not isinstance(serial, int) or isinstance(serial, bool) or serial < 0:
            raise ValueError(f"'serial' must be a whole number, not {serial!r}")
        acks = dict(_saved_entries(data, "drift") + _saved_entries(data, "findings"))
    except (ValueError, RecursionError) as exc:
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
            -abs(i.impact) if i.impact is not None else Decimal(0),
            str(i.month),
            i.line_label,
        ),
    )
