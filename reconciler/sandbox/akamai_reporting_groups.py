"""The sandbox's reporting groups: parts of each contract's products' usage.

Every contract has two reporting groups (ids deterministic per seed and contract) that carry
40% and 25% of every stat of each of the contract's products; the other 35% is in no group,
so a group's usage is always a part of the contract product's, never more. A group's
summary has the contract summary's periods with the stats scaled and without
``isBillable`` (the Billing API leaves it out there). A peak or a percentile is scaled the
same way (lower than the product's, never more).
"""

from __future__ import annotations

from decimal import Decimal
from typing import Any

from reconciler.sandbox.scenario import det_int

SHARES = (Decimal("0.4"), Decimal("0.25"))


def reporting_groups(seed: int, contract_ids: list[str]) -> dict[str, tuple[str, Decimal]]:
    """Each reporting group's id → (its contract, its share of the contract's usage)."""
    groups: dict[str, tuple[str, Decimal]] = {}
    for contract_id in contract_ids:
        for index, share in enumerate(SHARES):
            group = det_int(seed, "reporting-group", contract_id, index, low=10_000, high=999_999)
            while str(group) in groups:
                group += 1
            groups[str(group)] = (contract_id, share)
    return groups


def group_periods(periods: list[dict[str, Any]], share: Decimal) -> list[dict[str, Any]]:
    """The contract product's periods as the group's: each stat's value times ``share``."""
    return [
        {
            **period,
            "stats": [
                {
                    **{k: v for k, v in stat.items() if k != "isBillable"},
                    "value": stat["value"] * share,
                }
                for stat in period["stats"]
            ],
        }
        for period in periods
    ]
