"""The sandbox's per-CP-code monthly summary: each product's periods broken down by CP code.

Every product of a contract has three CP codes (deterministic per seed, contract and
product) that carry 50%, 30% and the rest of each stat's value, so a volume's CP codes add
up exactly to the product's figure; a peak or a percentile is scaled the same way (each CP
code's is lower than the product's, never more).
"""

from __future__ import annotations

from decimal import Decimal
from typing import Any

from reconciler.sandbox.catalog import AkamaiProduct
from reconciler.sandbox.scenario import det_int

SHARES = (Decimal("0.5"), Decimal("0.3"))  # the third CP code carries the rest


def cp_codes(seed: int, contract_id: str, product: AkamaiProduct) -> list[int]:
    """The product's three CP codes, distinct and stable."""
    codes: list[int] = []
    for index in range(len(SHARES) + 1):
        code = det_int(seed, "cp-code", contract_id, product.product_id, index,
                       low=1_000_000, high=9_999_999)  # fmt: skip
        while code in codes:
            code += 1
        codes.append(code)
    return codes


def by_cp_code(periods: list[dict[str, Any]], codes: list[int]) -> list[dict[str, Any]]:
    """The product's periods with ``cpCodeStats`` in place of ``stats``."""
    out: list[dict[str, Any]] = []
    for period in periods:
        parts: list[list[dict[str, Any]]] = [[] for _ in codes]
        for stat in period["stats"]:
            value: Decimal = stat["value"]
            shares = [value * share for share in SHARES]
            shares.append(value - sum(shares, Decimal(0)))
            for part, amount in zip(parts, shares, strict=True):
                part.append({**stat, "value": amount})
        fields = {k: v for k, v in period.items() if k != "stats"}
        fields["cpCodeStats"] = [
            {"cpCode": code, "stats": stats} for code, stats in zip(codes, parts, strict=True)
        ]
        out.append(fields)
    return out
