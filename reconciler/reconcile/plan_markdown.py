"""The plan as Markdown: for a CI job's log or a pull-request comment.

One table per source (services under their account line, routine month closes as one line
each), then the summary line. Every value from a provider is escaped so it cannot break the
table or inject markup, and the text stays within GitHub's comment size: past it, the tables
are cut at a row and a note says how many items were left out.
"""

from __future__ import annotations

import re

from reconciler.display import number as format_quantity
from reconciler.display import plural
from reconciler.domain import ItemCategory, PlanItem
from reconciler.reconcile.plan import Plan, summary_line, symbol
from reconciler.reconcile.plan_groups import group_services, is_routine, month_closes

# GitHub refuses comments over 65,536 characters; leave room for a note and a footer.
MAX_CHARS = 65_000
# Characters that could open markup or break a table cell (a leading -, + or # cannot occur:
# every cell and bullet starts with reconciler's own text).
_SPECIAL = re.compile(r"([\\`*_\[\]<>|~])")
HEADER = "| | Change | Line | Month | Before | After | Difference |"
RULE = "|---|---|---|---|---:|---:|---:|"


def escape(text: str) -> str:
    """``text`` as literal Markdown inside a table cell: one line, markup escaped."""
    flat = " ".join(text.split())
    return _SPECIAL.sub(r"\\\1", flat)


def _side(item: PlanItem, before: bool) -> str:
    obs = item.before if before else item.after
    if obs is None:
        return "absent" if item.category == ItemCategory.DRIFT else "-"
    unit = f" {obs.unit}" if obs.unit and obs.unit != "unit" else ""
    return escape(f"{format_quantity(obs.quantity)}{unit}")


def _difference(item: PlanItem) -> str:
    if item.delta is None:
        return ""
    sign = "+" if item.delta > 0 else ""
    text = f"{sign}{format_quantity(item.delta)}"
    if item.percent is not None:
        text += f" ({'+' if item.percent > 0 else ''}{format_quantity(item.percent)}%)"
    return escape(text)


def _row(item: PlanItem, services: list[PlanItem]) -> str:
    line = escape(item.line_label)
    if item.account:
        line += f" ({escape(item.account)})"
    if services:
        names = ", ".join(escape(s.service_name or s.service) for s in services)
        line += f"<br>and {plural(len(services), 'service')}: {names}"
    cells = [
        escape(symbol(item)),
        escape(item.kind.replace("_", " ")) + f" ({item.severity.value})",
        line,
        escape(item.when),
        _side(item, True),
        _side(item, False),
        _difference(item),
    ]
    return "| " + " | ".join(cells) + " |"


def _source_lines(source: str, items: list[PlanItem]) -> list[tuple[str, int]]:
    """The source's Markdown lines, each with how many plan items it stands for."""
    lines: list[tuple[str, int]] = [(f"#### Source {escape(source)}", 0), ("", 0)]
    groups = group_services([i for i in items if not is_routine(i)])
    if groups:
        lines += [(HEADER, 0), (RULE, 0)]
        lines += [(_row(g.item, g.services), 1 + len(g.services)) for g in groups]
        lines.append(("", 0))
    for close in month_closes(items):
        lines.append((f"- {escape(close.describe())}", len(close.items)))
    if lines[-1][0]:
        lines.append(("", 0))
    return lines


def render_markdown(plan: Plan, *, max_chars: int = MAX_CHARS) -> str:
    """The plan as GitHub-flavoured Markdown of at most ``max_chars`` characters."""
    title = "### reconciler plan"
    summary = escape(summary_line(plan))
    if plan.empty:
        return f"{title}\n\n{summary}\n"
    by_source: dict[str, list[PlanItem]] = {}
    for item in plan.items:
        by_source.setdefault(item.source, []).append(item)
    body: list[tuple[str, int]] = []
    for source, items in by_source.items():
        body += _source_lines(source, items)
    head = f"{title}\n\n**{summary}**\n\n"
    footer = f"_State serial {plan.serial}; 'reconciler apply' acknowledges these items._\n"
    out, used, left_out = [head], len(head) + len(footer) + 200, 0
    for text, count in body:
        if left_out or used + len(text) + 1 > max_chars:
            left_out += count
            continue
        out.append(text + "\n")
        used += len(text) + 1
    if left_out:
        out.append(
            f"\n_… and {plural(left_out, 'more item')} not shown here "
            "(run 'reconciler plan' for all of them)._\n\n"
        )
    out.append(footer)
    return "".join(out)
