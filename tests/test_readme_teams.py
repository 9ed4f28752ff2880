"""The README's showback example is the demo's: its teams parse and are the demo's teams."""

from __future__ import annotations

import tomllib
from decimal import Decimal
from pathlib import Path

from reconciler.demo_contract import demo_teams
from reconciler.settings import settings_from_mapping

README = Path(__file__).resolve().parents[1] / "README.md"
SECTION = "### Teams: who owns each line of the bill"


def readme_section() -> str:
    text = README.read_text(encoding="utf-8")
    section = text[text.index(SECTION) :]
    return section[: section.index("\n## ")]


def readme_block(kind: str) -> str:
    block = readme_section().split(f"```{kind}\n")[1]
    return block[: block.index("```")]


def test_the_readme_teams_are_the_demo_s() -> None:
    settings = settings_from_mapping(tomllib.loads(readme_block("toml"), parse_float=Decimal))
    assert settings.teams == settings_from_mapping({"teams": demo_teams()}).teams
    assert settings.showback.split == "proportional"
    (budget,) = settings.expectations
    assert budget.team == "media" and str(budget.monthly_budget) == "1,500.00 USD"


def readme_june_rows() -> list[str]:
    """The demo's June rows of the Teams table, as the README shows them."""
    rows = [x for x in readme_section().splitlines() if x.startswith("| ") and "2024-06" in x]
    assert len(rows) == 3
    return rows


def readme_demo_note() -> str:
    """The line ``reconciler demo`` prints for the teams, as the README quotes it."""
    (line,) = [x for x in readme_section().splitlines() if x.startswith("2024-06 by team: ")]
    return line
