"""The showback section of the Markdown and JSON reports (HTML: templates/showback.html.j2).

Amounts are already apportioned to the minor unit (they add up to each month's total); the
share of the bill is one decimal of a percent.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from reconciler.domain import canonical_decimal
from reconciler.reports.cost_render import money
from reconciler.reports.showback import Showback, TeamMonth

SPLITS = {
    "proportional": "proportional to each owner's part of the month",
    "fixed": "by the declared fixed shares",
    "owner": "to one owner",
}


def share_text(row: TeamMonth) -> str:
    percent = row.share_percent
    return "—" if percent is None else f"{percent}%"


def showback_note(showback: Showback) -> str:
    return (
        "Each line's cost goes to the team whose rule matches it first; shared cost "
        f"(account-level lines, commitments, credits) is split {SPLITS[showback.split]}. "
        "What no rule matches is unallocated. A month's teams and unallocated add up to its "
        "total exactly."
    )


def showback_markdown(showback: Showback | None, md: Callable[[object], str]) -> list[str]:
    if showback is None:
        return []
    title = f"## Team {showback.team}" if showback.team else "## Teams"
    out = [title, "", showback_note(showback), ""]
    out += [f"**Open findings:** {md(showback.findings_text())}", ""]
    out += ["| team | month | state | cost | share of the bill |", "|---|---|---|---:|---:|"]
    for row in showback.rows():
        team = md(row.team) + (" (incl. shared)" if row.shared else "")
        out.append(
            f"| {team} | {row.month} | {row.state} | {money(row.amount, row.currency)} | "
            f"{share_text(row)} |"
        )
    out.append("")
    usage = showback.usage_rows(showback.last_month)
    if usage:
        out += [f"### Usage by team, {showback.last_month}", ""]
        out += ["| team | source | month | usage type | quantity |", "|---|---|---|---|---:|"]
        for u in usage:
            out.append(
                f"| {md(u.team)} | {md(u.source)} | {u.month} | {md(u.usage_type)} | "
                f"{canonical_decimal(u.quantity)} {md(u.unit)} |"
            )
        out.append("")
    return out


def showback_json(showback: Showback | None) -> dict[str, Any] | None:
    if showback is None:
        return None
    return {
        "team": showback.team,
        "teams": list(showback.teams),
        "split": showback.split,
        "months": [
            {
                "team": row.team,
                "month": str(row.month),
                "state": row.state,
                "currency": row.currency,
                "amount": canonical_decimal(row.amount),
                "total": canonical_decimal(row.total),
                "share_percent": None
                if row.share_percent is None
                else canonical_decimal(row.share_percent),
                "shared": row.shared,
            }
            for row in showback.rows()
        ],
        "usage": [
            {
                "team": u.team,
                "source": u.source,
                "month": str(u.month),
                "usage_type": u.usage_type,
                "unit": u.unit,
                "quantity": canonical_decimal(u.quantity),
            }
            for u in showback.usage_rows()
        ],
        "open_findings": dict(sorted(showback.open_findings.items())),
    }
