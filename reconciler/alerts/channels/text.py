"""Plain-text renderings of review items shared by Teams, email and PagerDuty (no Slack
mrkdwn, no escaping: each channel escapes for its own format)."""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence

from reconciler import display
from reconciler.domain import ItemCategory, Observation, PlanItem, Severity

SEVERITIES_DESC = (Severity.CRITICAL, Severity.WARNING, Severity.INFO)


def clip_plain(text: str, limit: int) -> str:
    return text if len(text) <= limit else text[: limit - 1] + "…"


def _observation(obs: Observation | None) -> str:
    if obs is None:
        return "—"
    return display.amount(obs.quantity, obs.unit)


def label(item: PlanItem) -> str:
    return clip_plain(item.line_label, 200) or "all lines"


def change(item: PlanItem) -> str:
    """``expected X · observed Y`` (a finding) or ``X → Y · Δ d unit (p%)`` (drift)."""
    before, after = item.before, item.after
    if item.category is ItemCategory.FINDING:
        text = f"expected {_observation(before)} · observed {_observation(after)}"
    else:
        text = f"{_observation(before)} → {_observation(after)}"
    if before is not None and after is not None and item.delta is not None:
        if before.unit != after.unit:
            return text + " · unit changed"
        text += f" · Δ {display.amount(item.delta, after.unit, with_sign=True)}"
        try:
            percent = item.percent
        except ArithmeticError:
            percent = None
        if percent is not None:
            text += f" ({display.percent(percent)})"
    return text


def item_title(item: PlanItem) -> str:
    return f"{item.severity.value.upper()} {item.kind}: {label(item)} · {item.when}"


def item_lines(item: PlanItem) -> list[str]:
    lines = [item_title(item), change(item)]
    if item.account:
        lines.append(f"account {item.account}")
    if item.message:
        lines.append(clip_plain(item.message.strip(), 500))
    return lines


def counts(items: Sequence[PlanItem]) -> str:
    by_severity = Counter(item.severity for item in items)
    noun = "item" if len(items) == 1 else "items"
    parts = [f"{by_severity[s]} {s.value}" for s in SEVERITIES_DESC if by_severity[s]]
    return f"{len(items)} {noun} ({', '.join(parts)})" if items else "no new items"


def title(source: str, run_id: int | None, resolved_only: bool) -> str:
    run = f" · run {run_id}" if run_id is not None else ""
    return f"reconciler · {source}{run}" + (" · resolved" if resolved_only else "")
