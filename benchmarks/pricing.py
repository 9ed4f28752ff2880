"""How long pricing takes: a month of many lines through tiered rate cards and a commitment.

Prices synthetic Fastly-like months (account and per-service lines, several usage types and
regions) with graduated tiers, a mid-month rate change and a quantity commitment, then runs
the invoice audit and the money impact of single-line changes (each re-prices the lines
priced together with it, twice), and prints the figures for each size.

    .venv/bin/python benchmarks/pricing.py
    .venv/bin/python benchmarks/pricing.py --lines 10000,100000
"""

from __future__ import annotations

import argparse
import time
from datetime import date
from decimal import Decimal

from reconciler.cost_settings import CommitmentSettings, RateSettings
from reconciler.domain import LineStatus, Month
from reconciler.reconcile.audit import InvoiceAmount, audit_invoices
from reconciler.reconcile.costing import CostLine, price_lines
from reconciler.reconcile.spend import ImpactPricer
from reconciler.settings import Tolerance

MONTH = Month(2024, 6)
REGIONS = ("North America", "Europe", "Asia Pacific", "Australia", "South America")


def lines(count: int) -> list[CostLine]:
    out = []
    for i in range(count):
        region = REGIONS[i % len(REGIONS)]
        kind = "Bandwidth" if i % 2 else "Requests"
        out.append(
            CostLine(
                "fastly",
                "acct",
                "cdn_usage",
                "Full-Site Delivery",
                f"{region} {kind}",
                region,
                f"svc{i // 10}",
                MONTH,
                MONTH.first_day,
                date(2024, 6, 1 + i % 30),
                Decimal(i % 997) + Decimal("0.125"),
                "GB" if kind == "Bandwidth" else "unit",
                LineStatus.FINALIZED,
            )
        )
    return out


def rates() -> list[RateSettings]:
    tiers = [
        {"up_to": "10000", "unit_price": "0.12"},
        {"up_to": "50000", "unit_price": "0.08"},
        {"unit_price": "0.05"},
    ]
    base = {"source": "fastly", "usage_type": "* Bandwidth", "currency": "USD", "per_service": True}
    return [
        RateSettings.model_validate({**base, "tiers": tiers, "effective_to": "2024-06-15"}),
        RateSettings.model_validate({**base, "unit_price": "0.07", "effective_from": "2024-06-16"}),
        RateSettings.model_validate(
            {
                "source": "fastly",
                "usage_type": "* Requests",
                "currency": "USD",
                "per_service": True,
                "unit_price": "0.0075",
            }
        ),
    ]


def commitments() -> list[CommitmentSettings]:
    return [
        CommitmentSettings.model_validate(
            {
                "name": "NA",
                "source": "fastly",
                "usage_type": "North America Bandwidth",
                "per_service": True,
                "currency": "USD",
                "quantity": "100000",
                "unit": "GB",
                "commit_price": "0.06",
                "overage_price": "0.09",
            }
        )
    ]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--lines", default="1000,10000,100000")
    args = parser.parse_args()
    print(f"{'lines':>8} {'price s':>9} {'lines/s':>10} {'audit s':>9} {'impact ms':>10}  total")
    for count in (int(n) for n in args.lines.split(",")):
        data = lines(count)
        started = time.perf_counter()
        sheet = price_lines(rates(), commitments(), data)
        priced = time.perf_counter() - started
        total = sheet.month_totals()[("fastly", MONTH, "USD")]
        invoice = [
            InvoiceAmount("fastly", "fastly", MONTH, "", "total", "", Decimal(0), total, "USD")
        ]
        started = time.perf_counter()
        audit_invoices(
            sheet,
            invoice,
            tolerance=Tolerance(absolute=Decimal(0)),
            rate_tolerance=Tolerance(percent=Decimal(1)),
        )
        audited = time.perf_counter() - started
        pricer = ImpactPricer(rates(), commitments(), data)
        started = time.perf_counter()
        changed = data[: min(20, count)]
        for line in changed:
            pricer.impact(line, line.quantity / 2)
        impact_ms = (time.perf_counter() - started) * 1000 / len(changed)
        print(
            f"{count:>8} {priced:>9.3f} {count / priced:>10,.0f} {audited:>9.3f} "
            f"{impact_ms:>10.1f}  "
            f"{total.quantize(Decimal('0.01'))} USD"
        )


if __name__ == "__main__":
    main()
