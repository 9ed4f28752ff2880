"""The rate card the README shows parses and prices June as the README says (prorated)."""

from __future__ import annotations

import tomllib
from datetime import date
from decimal import Decimal
from pathlib import Path

from reconciler.domain import LineStatus, Month
from reconciler.money import Money
from reconciler.reconcile.costing import CostLine, price_lines
from reconciler.settings import settings_from_mapping

README = Path(__file__).resolve().parents[2] / "README.md"


def readme_rate_card() -> str:
    text = README.read_text(encoding="utf-8")
    section = text[text.index("### Money: rate cards") :]
    block = section[section.index("```toml") + len("```toml") :]
    return block[: block.index("```")]


def test_the_readme_rate_card_prorates_the_renewal() -> None:
    settings = settings_from_mapping(tomllib.loads(readme_rate_card(), parse_float=Decimal))
    june = Month(2024, 6)
    line = CostLine(
        "fastly",
        "",
        "cdn_usage",
        "Full-Site Delivery",
        "North America Bandwidth",
        "North America",
        "",
        june,
        date(2024, 6, 1),
        date(2024, 6, 30),
        Decimal("30000"),
        "GB",
        LineStatus.FINALIZED,
    )
    sheet = price_lines(settings.rates, settings.commitments, [line], settings.credits)
    # 15,000 GB through the 2024 tiers (10,000 x 0.12 + 5,000 x 0.08 = 1,600) and
    # 15,000 GB at the renewal's 0.07 (1,050).
    assert Money(sheet.month_totals()[("fastly", june, "USD")], "USD").display() == "2,650.00 USD"
    assert [b.monthly_budget for b in settings.expectations] == [Money(Decimal(5000), "USD")]
