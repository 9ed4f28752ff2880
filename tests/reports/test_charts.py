"""Chart building blocks and edge cases, without a database."""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta
from decimal import Decimal

import pytest

from reconciler.domain import LineStatus, Month
from reconciler.reconcile.forecast import ForecastParams
from reconciler.reconcile.history import ForecastInputs
from reconciler.reports.bands import expectation_band, project
from reconciler.reports.charts import monthly_chart, projection_chart, restatement_chart
from reconciler.reports.model import MonthPoint, RestatedLine, Series, VersionPoint
from reconciler.reports.svg import Scale, compact, nice_step, px
from reconciler.settings import ExpectationSettings
from tests.reports.helpers import parse_svg, svg_text

D = Decimal


@pytest.mark.parametrize(
    ("raw", "step"),
    [("0.7", "1"), ("1", "1"), ("1.2", "2"), ("2.2", "2.5"), ("3", "5"), ("7", "10"),
     ("12000", "20000"), ("0.031", "0.05"), ("0", "1")],
)  # fmt: skip
def test_nice_step(raw: str, step: str) -> None:
    assert nice_step(D(raw)) == D(step)


@pytest.mark.parametrize(
    ("value", "label"),
    [("0", "0"), ("0.354", "0.35"), ("12.34", "12.3"), ("850", "850"), ("48200", "48.2k"),
     ("1250000", "1.25M"), ("941379310.34", "941M"), ("2500000000", "2.5B"), ("-1500", "-1.5k")],
)  # fmt: skip
def test_compact(value: str, label: str) -> None:
    assert compact(D(value)) == label


def test_scale() -> None:
    scale = Scale.nice([D(41000), D("62277.41")], 200, 20)
    assert scale.ticks == (D(0), D(20000), D(40000), D(60000), D(80000))
    assert scale(D(0)) == D(200) and scale(D(80000)) == D(20)
    assert px(scale(D(40000))) == "110"
    flat = Scale.nice([D(5), D(5)], 100, 0, zero=False)
    assert flat.low < D(5) < flat.high
    assert px(D("12.345")) == "12.3" and px(D(7)) == "7"


def test_projection_shows_the_forecast_of_a_collecting_month_with_covered_data() -> None:
    june = Month(2024, 6)
    noon = datetime(2024, 6, 15, 12, tzinfo=UTC)
    lag = timedelta(days=1)
    empty = ForecastInputs(datetime(2024, 6, 1, 6, tzinfo=UTC), lag, ForecastParams())
    nothing_yet = empty.forecast(june, D(10), [])
    assert project(june, D(10), LineStatus.COLLECTING, nothing_yet, None) is None  # no day
    forecast = ForecastInputs(noon, lag, ForecastParams()).forecast(june, D(140), [])
    assert project(june, D(10), LineStatus.FINALIZED, forecast, None) is None
    p = project(june, D(140), LineStatus.COLLECTING, forecast, D(250))
    # Data through the 14th: 140 / 14 days x 30.
    assert p is not None and p.projected == D("300.000") and p.over
    assert (p.covered_days, p.days) == (14, 30)
    early = ForecastInputs(datetime(2024, 6, 3, tzinfo=UTC), lag, ForecastParams())
    p = project(june, D(140), LineStatus.COLLECTING, early.forecast(june, D(140), []), D(250))
    assert p is not None and p.too_early and not p.over  # 2 days covered: raises nothing
    done = ForecastInputs(datetime(2024, 7, 2, 6, tzinfo=UTC), lag, ForecastParams())
    # Every day covered, not yet finalized: the forecast is the total itself.
    p = project(june, D(301), LineStatus.COLLECTING, done.forecast(june, D(301), []), D(250))
    assert p is not None and p.projected == D(301) and p.over and not p.too_early


def test_band_rules() -> None:
    def exp(**kwargs: object) -> ExpectationSettings:
        return ExpectationSettings.model_validate(kwargs)

    series = {
        "source": "f",
        "product": "cdn_usage",
        "product_name": "Full-Site Delivery",
        "usage_type": "Europe Bandwidth",
        "unit": "GB",
        "regions": ["Europe"],
    }
    band, other = expectation_band(
        [
            exp(product="Full-Site*", monthly_max="100"),
            exp(usage_type="Europe*", monthly_max="80", monthly_min="10"),
            exp(region="Eu*", monthly_quantity="50", tolerance="5"),
            exp(region="Asia", monthly_max="1"),  # another region: not this total
            exp(service="SU1*", monthly_max="1"),  # one service: not this total
            exp(per_service=True, monthly_max="1"),  # per service: not this total
            exp(unit="TB", monthly_max="1"),
        ],
        **series,  # type: ignore[arg-type]
    )
    assert band is not None
    assert (band.low, band.high) == (D(45), D(55))
    assert len(band.labels) == 3
    assert other == ("all usage (in TB)",)
    assert expectation_band([exp(unit="GB")], **series) == (None, ())  # type: ignore[arg-type]


def _series(months: list[Month], **kwargs: object) -> Series:
    points = tuple(MonthPoint(m, D(i * 10), LineStatus.FINALIZED, 1) for i, m in enumerate(months))
    return Series("s", "fastly", "p", "", "u", "GB", points, **kwargs)  # type: ignore[arg-type]


def test_monthly_chart_edge_cases() -> None:
    months = Month(2023, 1).range_to(Month(2024, 6))
    root = parse_svg(monthly_chart(_series(months), "c1", months))
    labels = [t.text for t in root.iter("{http://www.w3.org/2000/svg}text")]
    assert "Jan 23" in labels and "Feb 23" not in labels  # 18 months: every other label
    assert "expected range" not in svg_text(root)
    single = [Month(2024, 4)]
    root = parse_svg(monthly_chart(_series(single), "c2", single))
    assert "2024-04: 0 GB (finalized, 1 line)" in svg_text(root)
    empty = parse_svg(monthly_chart(_series([]), "c3", single))
    assert not [r for r in empty.iter() if (r.get("class") or "").startswith("bar")]


def test_restatement_and_projection_charts() -> None:
    line = RestatedLine(
        1, "s", "akamai", "K", "p", "P", "u", "", "", "", Month(2024, 3),
        date(2024, 3, 1), date(2024, 3, 31),
        (VersionPoint(7, datetime(2024, 4, 3, tzinfo=UTC), D(5), "GB", LineStatus.FINALIZED),),
    )  # fmt: skip
    root = parse_svg(restatement_chart(line, "r"))
    assert "run 7, 2024-04-03 00:00 UTC: 5 GB (finalized)" in svg_text(root)
    with pytest.raises(ValueError, match="has no projection"):
        projection_chart(_series([Month(2024, 6)]), "p")
