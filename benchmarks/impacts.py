"""How long the money impact of drift items takes on a large month and a large rate card.

Builds a month of synthetic Fastly-like lines (the ones of ``benchmarks/pricing.py``) and a
rate card of many tables (one per usage type of many extra regions, plus the tiered and dated
bandwidth rates and a commitment), then prices the impact of ``--changes`` single-line
changes the way a run does (every line's pricing group once, then each change), and prints
the figures for each size.

    .venv/bin/python benchmarks/impacts.py
    .venv/bin/python benchmarks/impacts.py --lines 10000,50000 --rates 1000
"""

from __future__ import annotations

import argparse
import sys
import time
from decimal import Decimal
from pathlib import Path

from reconciler.cost_settings import RateSettings
from reconciler.reconcile.spend import ImpactPricer

sys.path.insert(0, str(Path(__file__).parent))
from pricing import commitments, lines, rates


def rate_card(extra: int) -> list[RateSettings]:
    """The benchmark's rates after ``extra`` exact tables that price other regions."""
    tables = [
        RateSettings.model_validate(
            {
                "source": "fastly",
                "usage_type": f"Region {i} Bandwidth",
                "region": f"Region {i}",
                "per_service": True,
                "currency": "USD",
                "unit_price": "0.02",
            }
        )
        for i in range(extra)
    ]
    return tables + rates()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--lines", default="10000,50000")
    parser.add_argument("--rates", type=int, default=200, help="extra rate tables")
    parser.add_argument("--changes", type=int, default=20)
    args = parser.parse_args()
    card = rate_card(args.rates)
    print(f"{'lines':>8} {'rates':>6} {'changes':>8} {'setup s':>8} {'per change ms':>14}  sum")
    for count in (int(n) for n in args.lines.split(",")):
        data = lines(count)
        changed = data[: args.changes]
        started = time.perf_counter()
        pricer = ImpactPricer(card, commitments(), data)
        setup = time.perf_counter() - started
        total = Decimal(0)
        started = time.perf_counter()
        for line in changed:
            impact = pricer.impact(line, line.quantity / 2)
            total += impact.amount if impact is not None else 0
        per_change = (time.perf_counter() - started) * 1000 / len(changed)
        print(
            f"{count:>8} {len(card):>6} {len(changed):>8} {setup:>8.2f} {per_change:>14.1f}  "
            f"{total.quantize(Decimal('0.000001'))} USD"
        )


if __name__ == "__main__":
    main()
