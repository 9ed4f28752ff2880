"""The measure catalog, the classification of unknown stats, and month values by kind."""

from __future__ import annotations

import random
from datetime import date
from decimal import Decimal

import pytest
from hypothesis import given
from hypothesis import strategies as st

from reconciler.errors import ConfigError
from reconciler.reconcile.measures import (
    MeasureKind,
    PeriodValue,
    classify,
    combine,
    month_value,
)
from reconciler.sandbox.catalog import AKAMAI_PRODUCTS, FASTLY_USAGE_TYPES
from reconciler.settings import MeasureSettings, settings_from_mapping

V, P, K, G = MeasureKind.VOLUME, MeasureKind.PERCENTILE, MeasureKind.PEAK, MeasureKind.GAUGE


@pytest.mark.parametrize(
    ("provider", "usage_type", "unit", "kind", "reason"),
    [
        ("fastly", "North America Bandwidth", "GB", V, "built-in catalog"),
        ("fastly", "WebSockets Bandwidth", "gb", V, "built-in catalog"),
        ("fastly", "Compute Requests", "unit", V, "built-in catalog"),
        ("akamai", "Total MB", "GB", V, "built-in catalog"),
        ("akamai", "Total Hits", "Total Hits", V, "built-in catalog"),
        ("akamai", "WAF Rules Hits", "Hits", V, "built-in catalog"),
        ("akamai", "95/5 Mbps", "95/5 Mbps", P, "built-in catalog"),
        ("akamai", "Peak Mbps", "Peak Mbps", K, "built-in catalog"),
        ("akamai", "Storage GB", "GB", G, "built-in catalog"),
        # Not in the catalog: the unit or the name decides where it is unambiguous.
        ("akamai", "Edge Throughput", "Gbps", P, "is a rate"),
        ("akamai", "Origin Peak Bandwidth", "GB", K, "names a peak"),
        ("fastly", "Object Storage", "GB", G, "names storage"),
        ("akamai", "Midgress 95th", "Mbps", P, "names a percentile"),
        ("akamai", "Peak Storage", "GB", V, "ambiguous"),
        ("akamai", "Bandwidth Mbps Peak", "Mbps", K, "names a peak"),
        ("akamai", "Edge Requests", "requests", V, "nothing in its name"),
        ("fastly", "Something New", "GB", V, "nothing in its name"),
    ],
)
def test_classify(
    provider: str, usage_type: str, unit: str, kind: MeasureKind, reason: str
) -> None:
    classified = classify(provider, usage_type, unit)
    assert classified.kind is kind
    assert reason in classified.reason


def test_every_sandbox_stat_is_in_the_catalog() -> None:
    for usage in FASTLY_USAGE_TYPES:
        got = classify("fastly", usage.name, usage.unit, product=usage.product_id)
        assert got.reason.startswith("built-in catalog"), usage.name
        assert got.kind is V
    for product in AKAMAI_PRODUCTS:
        for stat in product.stats:
            got = classify("akamai", stat.stat_type, stat.unit, product=product.product_id)
            assert got.reason.startswith("built-in catalog"), stat.stat_type
            assert (got.kind is not V) == stat.peak, stat.stat_type


def test_overrides_come_first_and_match_by_product_name_or_id() -> None:
    rules = [
        MeasureSettings(provider="akamai", product="NetStorage", usage_type="Total MB", kind=G),
        MeasureSettings(usage_type="*Mbps", unit="Mbps", kind=K),
    ]
    by_name = classify("akamai", "Total MB", "GB", product_name="NetStorage", overrides=rules)
    assert by_name.kind is G
    assert by_name.reason == "[[measures]] entry 1 of the configuration"
    elsewhere = classify("akamai", "Total MB", "GB", product="1-ABC012", overrides=rules)
    assert elsewhere.kind is V and elsewhere.reason.startswith("built-in")
    second = classify("fastly", "Origin Mbps", "Mbps", overrides=rules)
    assert (second.kind, second.reason) == (K, "[[measures]] entry 2 of the configuration")


def test_kind_properties() -> None:
    assert [k for k in MeasureKind if k.projected] == [V]
    assert [k for k in MeasureKind if k.adds_up] == [V, G]
    assert [k for k in MeasureKind if k.lower_bound_to_date] == [P, K]


def _periods(*values: str) -> list[PeriodValue]:
    return [PeriodValue(date(2026, 8, 1 + 15 * i), Decimal(v)) for i, v in enumerate(values)]


@pytest.mark.parametrize(
    ("kind", "values", "expected"),
    [
        (V, ("11.3", "11.3"), "22.6"),
        (P, ("11.3", "11.3"), "11.3"),
        (P, ("9.5", "11.3"), "11.3"),
        (K, ("2700", "1200"), "2700"),
        (G, ("500", "480"), "480"),
        (G, ("480", "500"), "500"),
        (V, (), "0"),
        (P, ("7",), "7"),
    ],
)
def test_month_value(kind: MeasureKind, values: tuple[str, ...], expected: str) -> None:
    assert month_value(kind, _periods(*values)) == Decimal(expected)


def test_gauge_is_the_latest_period_whatever_the_order() -> None:
    periods = list(reversed(_periods("500", "480")))
    assert month_value(G, periods) == Decimal(480)


def test_combine_adds_only_what_adds_up() -> None:
    assert combine(V, [Decimal("44.1"), Decimal("97.4")]) == Decimal("141.5")
    assert combine(G, [Decimal(1), Decimal(2)]) == Decimal(3)
    for kind in (P, K):
        with pytest.raises(ValueError, match="never add up"):
            combine(kind, [Decimal(1)])


quantities = st.decimals(min_value=0, max_value=10**12, places=3, allow_nan=False)


@given(st.lists(quantities, min_size=1, max_size=6), st.sampled_from([P, K]))
def test_percentile_month_never_exceeds_its_largest_period(
    values: list[Decimal], kind: MeasureKind
) -> None:
    periods = [PeriodValue(date(2026, 8, 1 + i), v) for i, v in enumerate(values)]
    value = month_value(kind, periods)
    assert value <= max(values)
    assert value in values


@given(st.lists(quantities, min_size=1, max_size=6), st.integers(min_value=1, max_value=5))
def test_splitting_a_volume_month_never_changes_its_total(
    values: list[Decimal], pieces: int
) -> None:
    whole = month_value(V, [PeriodValue(date(2026, 8, 1), sum(values, Decimal(0)))])
    split = [
        PeriodValue(date(2026, 8, 1 + i), part)
        for i, v in enumerate(values)
        for part in _split(v, pieces)
    ]
    assert month_value(V, split) == whole


def _split(value: Decimal, pieces: int) -> list[Decimal]:
    share = (value / pieces).quantize(Decimal("0.001"), rounding="ROUND_DOWN")
    return [share] * (pieces - 1) + [value - share * (pieces - 1)]


@given(
    st.lists(quantities, min_size=1, max_size=8), st.sampled_from(list(MeasureKind)), st.randoms()
)
def test_shuffling_periods_changes_nothing(
    values: list[Decimal], kind: MeasureKind, rnd: random.Random
) -> None:
    periods = [PeriodValue(date(2026, 8, 1 + i), v) for i, v in enumerate(values)]
    shuffled = list(periods)
    rnd.shuffle(shuffled)
    assert month_value(kind, shuffled) == month_value(kind, periods)


def test_measures_in_the_config_file() -> None:
    settings = settings_from_mapping(
        {"measures": [{"provider": "akamai", "usage_type": "Origin*", "kind": "peak"}]}
    )
    assert settings.measures[0].kind is K
    with pytest.raises(ConfigError, match="measures"):
        settings_from_mapping({"measures": [{"usage_type": "x", "kind": "sum"}]})
