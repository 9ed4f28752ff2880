"""The FOCUS export's rounding rows: each team's ``EffectiveCost`` adds up to its report amount.

With ``[[teams]]``, the export splits a shared row among its owners exactly (to 10 decimal
places), while the report apportions each (source, month, currency) to the cent by largest
remainder (:func:`reconciler.reconcile.allocation.allocate`). So that a FOCUS tool summing a
team's rows gets the report's figure to the cent, each (source, month, currency, team) whose
rows add up to something else gets one ``Adjustment`` row, "rounding of team T's share to the
cent", carrying the difference (less than a cent) in every cost column.

A month whose rows as a whole differ from its rounded total by a cent or more is left as it is:
its ``EffectiveCost`` is not the billed view the report shows (a term commitment's purchase
amortized over the months that draw it), and no rounding reconciles the two.
"""

from __future__ import annotations

import json
from collections import defaultdict
from collections.abc import Callable, Iterable, Mapping
from decimal import Decimal, localcontext

from reconciler.domain import EXACT_CONTEXT, Month
from reconciler.money import minor_unit
from reconciler.reconcile.allocation import MonthKey

ChargeRow = Callable[[str, Month, str, str, Decimal], dict[str, str]]


def written_effective(
    rows: Iterable[Mapping[str, str]],
) -> dict[MonthKey, dict[str, Decimal]]:
    """Each (source, month, currency)'s ``EffectiveCost`` per team, as the rows carry it."""
    written: dict[MonthKey, dict[str, Decimal]] = defaultdict(lambda: defaultdict(Decimal))
    with localcontext(EXACT_CONTEXT):
        for row in rows:
            cost, tags = row.get("EffectiveCost", ""), row.get("Tags", "")
            if not cost or not tags:
                continue
            key = (
                row["x_Source"],
                Month.parse(row["BillingPeriodStart"][:7]),
                row["BillingCurrency"],
            )
            written[key][json.loads(tags)["team"]] += Decimal(cost)
    return written


def rounding_rows(
    rows: Iterable[Mapping[str, str]],
    targets: Mapping[MonthKey, Mapping[str, Decimal]],
    charge_row: ChargeRow,
) -> list[dict[str, str]]:
    """The rounding rows that make each team's rows add up to ``targets`` (the report's
    amounts per (source, month, currency) and team); ``charge_row(source, month, currency,
    description, amount)`` builds one."""
    written = written_effective(rows)
    out: list[dict[str, str]] = []
    for key, teams in sorted(targets.items()):
        source, month, currency = key
        have = written.get(key, {})
        unit = minor_unit(currency)
        with localcontext(EXACT_CONTEXT):
            off = sum(teams.values(), Decimal(0)) - sum(have.values(), Decimal(0))
            if abs(off) >= unit:
                continue  # another basis than the billed month: nothing to round
            for team in sorted({*teams, *have}):
                difference = teams.get(team, Decimal(0)) - have.get(team, Decimal(0))
                if difference:
                    description = f"rounding of team {team}'s share to the cent"
                    row = charge_row(source, month, currency, description, difference)
                    row["Tags"] = json.dumps({"team": team}, separators=(",", ":"))
                    out.append(row)
    return out
