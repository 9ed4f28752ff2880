"""``finalize_tolerance``: global and per source, a percent or an absolute quantity, exact."""

from __future__ import annotations

from decimal import Decimal

import pytest

from reconciler.errors import ConfigError
from reconciler.settings import Tolerance, settings_from_mapping


def test_default_is_one_percent_for_every_source() -> None:
    settings = settings_from_mapping({"sources": [{"name": "f", "provider": "fastly"}]})
    assert settings.finalize_tolerance == Tolerance(percent=Decimal(1))
    assert settings.finalize_tolerance_for("f") == Tolerance(percent=Decimal(1))


def test_a_source_overrides_the_global_tolerance() -> None:
    settings = settings_from_mapping(
        {
            "finalize_tolerance": "2.5%",
            "sources": [
                {"name": "f", "provider": "fastly", "finalize_tolerance": "0.125"},
                {"name": "a", "provider": "akamai"},
            ],
        }
    )
    assert settings.finalize_tolerance_for("f") == Tolerance(absolute=Decimal("0.125"))
    assert settings.finalize_tolerance_for("a") == Tolerance(percent=Decimal("2.5"))


@pytest.mark.parametrize(
    ("data", "problem"),
    [
        (
            {"finalize_tolerance": "-1%"},
            "finalize_tolerance: quantity must be a finite number >= 0",
        ),
        (
            {"sources": [{"name": "f", "provider": "fastly", "finalize_tolerance": "-0.5"}]},
            "sources[0].finalize_tolerance: quantity must be a finite number >= 0",
        ),
        ({"finalize_tolerance": "lots"}, "finalize_tolerance:"),
    ],
)
def test_bad_tolerances_name_their_key(data: dict[str, object], problem: str) -> None:
    with pytest.raises(ConfigError) as caught:
        settings_from_mapping(data)
    assert any(p.startswith(problem) for p in caught.value.problems), caught.value.problems
