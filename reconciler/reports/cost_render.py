"""The cost section of the Markdown and JSON reports (the HTML one is templates/costs.html.j2).

Amounts are rounded to their currency's minor unit for reading; the JSON carries them exact.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from reconciler.domain import canonical_decimal
from reconciler.money import Money
from reconciler.reconcile.spend import LAST_INVOICE
from reconciler.reports.costs import CostReport


def money(amount: Any, currency: str, *, signed: bool = False) -> str:
    return Money(amount, currency).display(signed=signed)


def team_cost_note(team: str) -> str:
    return (
        f"Team {team}'s own cost: the lines it owns and its share of shared cost, each "
        "source's month apportioned to the cent as the Teams table splits it. The invoice "
        "audit and the commitments are on the whole-account report."
    )


def audit_status(matches: bool | None) -> str:
    return {None: "not priced", True: "matches", False: "MISMATCH"}[matches]


def cost_markdown(costs: CostReport | None, md: Callable[[object], str]) -> list[str]:
    if costs is None or costs.empty:
        return []
    out = [f"## Cost of team {md(costs.team)}" if costs.team else "## Cost", ""]
    if costs.team:
        out += [md(team_cost_note(costs.team)), ""]
    if costs.invoices:
        label = "Projected share of the invoice" if costs.team else "Projected invoice"
        out += [f"**{label}:** " + "; ".join(md(i.describe()) for i in costs.invoices), ""]
    out += ["| source | month | state | expected cost |", "|---|---|---|---:|"]
    for m in costs.months:
        state = m.state + (f" ({LAST_INVOICE})" if m.at_last_rates else "")
        out.append(f"| {md(m.source)} | {m.month} | {state} | {money(m.amount, m.currency)} |")
    out.append("")
    if costs.audit:
        out += [
            "### Invoice audit",
            "",
            "| source | month | invoice line | invoiced | expected | difference | |",
            "|---|---|---|---:|---:|---:|---|",
        ]
        for row in costs.audit:
            expected = "—" if row.expected is None else money(row.expected, row.currency)
            diff = row.difference
            shown = "—" if diff is None else money(diff, row.currency, signed=True)
            out.append(
                f"| {md(row.source)} | {row.month} | {md(row.line)} | "
                f"{money(row.invoiced, row.currency)} | {expected} | {shown} | "
                f"{audit_status(row.matches)} |"
            )
        out.append("")
    if costs.commitments:
        out += [
            "### Commitments",
            "",
            "| commitment | source | month | used | committed | billed | overage | shortfall "
            "| left |",
            "|---|---|---|---:|---:|---:|---:|---:|---:|",
        ]
        for c in costs.commitments:
            out.append(
                f"| {md(c.commitment)} | {md(c.source)} | {c.month} | {c.used} | {c.committed} | "
                f"{money(c.billed, c.currency)} | {money(c.overage, c.currency)} | "
                f"{money(c.shortfall, c.currency)} | {c.remaining} |"
            )
        out.append("")
    return out


def cost_json(costs: CostReport | None) -> dict[str, Any] | None:
    if costs is None:
        return None

    def exact(value: Any) -> str | None:
        return None if value is None else canonical_decimal(value)

    return {
        "team": costs.team,
        "months": [
            {
                "source": m.source,
                "month": str(m.month),
                "currency": m.currency,
                "amount": exact(m.amount),
                "state": m.state,
                "rates": "last invoice" if m.at_last_rates else "declared",
            }
            for m in costs.months
        ],
        "audit": [
            {
                "source": r.source,
                "month": str(r.month),
                "line": r.line,
                "currency": r.currency,
                "invoiced": exact(r.invoiced),
                "expected": exact(r.expected),
                "difference": exact(r.difference),
                "status": audit_status(r.matches),
            }
            for r in costs.audit
        ],
        "commitments": [
            {
                "commitment": c.commitment,
                "source": c.source,
                "month": str(c.month),
                "currency": c.currency,
                "used": exact(c.used),
                "committed": exact(c.committed),
                "billed": exact(c.billed),
                "overage": exact(c.overage),
                "shortfall": exact(c.shortfall),
                "remaining": exact(c.remaining),
            }
            for c in costs.commitments
        ],
    }
