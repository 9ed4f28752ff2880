"""The forecast rules as tables: (daily increments, lag, now) -> (forecast, band, finding)."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import UTC, date, datetime, timedelta
from decimal import Decimal
from fractions import Fraction

import pytest

from reconciler.domain import LineStatus, Month
from reconciler.money import Money
from reconciler.reconcile.expectations import MonthLine, evaluate
from reconciler.reconcile.forecast import (
    Escalation,
    Forecast,
    ForecastMethod,
    ForecastParams,
    ForecastReason,
    Snapshot,
    daily_increments,
    forecast_from_json,
    forecast_json,
    forecast_month,
    small_sample_factor,
)
from reconciler.reconcile.history import ForecastInputs, HistoryKey, KeyHistory, total_snapshots
from reconciler.settings import ExpectationSettings

D = Decimal
DAY = timedelta(days=1)
JUNE = Month(2024, 6)
KEY = HistoryKey("cdn", "", "cdn_usage", "North America Bandwidth", "NA", "", JUNE, "GB")


def history(month: Month, increments: Sequence[str | int], lag: timedelta) -> KeyHistory:
    """Daily pulls at 06:00, each seeing the days through (pull - lag): one delta per day."""
    deltas = []
    for index, amount in enumerate(increments):
        covered = month.first_day + timedelta(days=index)
        pulled = datetime.combine(covered, datetime.min.time(), tzinfo=UTC) + lag
        deltas.append((pulled + timedelta(hours=6), D(str(amount))))
    return KeyHistory(tuple(deltas))


def run(
    increments: Sequence[str | int],
    *,
    month: Month = JUNE,
    lag: timedelta = DAY,
    params: ForecastParams | None = None,
) -> Forecast:
    """Forecast on the morning after the last increment's day became visible."""
    key = _key(month)
    covered = month.first_day + timedelta(days=len(increments) - 1)
    now = datetime.combine(covered, datetime.min.time(), tzinfo=UTC) + lag + timedelta(hours=7)
    inputs = ForecastInputs(
        now, lag, params or ForecastParams(), {key: history(month, increments, lag)}
    )
    to_date = sum((D(str(x)) for x in increments), D(0))
    return inputs.forecast(month, to_date, [key])


def _key(month: Month) -> HistoryKey:
    return HistoryKey("cdn", "", "cdn_usage", "North America Bandwidth", "NA", "", month, "GB")


STEADY_14 = [10] * 14
SHORT = "history_short"


@pytest.mark.parametrize(
    ("month", "value"),
    [
        (Month(2023, 2), "280"),  # 28 days
        (Month(2024, 2), "290"),  # 29 days (leap year)
        (Month(2024, 6), "300"),  # 30 days
        (Month(2024, 7), "310"),  # 31 days
    ],
)
@pytest.mark.parametrize("method", list(ForecastMethod))
def test_month_lengths(month: Month, value: str, method: ForecastMethod) -> None:
    f = run(STEADY_14, month=month, params=ForecastParams(method=method))
    assert f.value == D(value)
    assert (f.covered_days, f.covered_through) == (14, month.first_day + timedelta(days=13))
    assert (f.low, f.high) == (D(value), D(value))  # no variability: a band of zero width
    assert (f.method, f.reason) == (method, ForecastReason.OK)


@pytest.mark.parametrize(
    ("increments", "method", "value", "low", "high", "reason"),
    [
        # Steady: both methods agree, the band has no width.
        (STEADY_14, ForecastMethod.RUN_RATE, "300", "300", "300", ForecastReason.OK),
        (STEADY_14, ForecastMethod.TRAILING, "300", "300", "300", ForecastReason.OK),
        # A step from 10 to 20 a day on day 11: the trailing window follows it
        # (180 + (3x10 + 4x20)/7 x 16 = 431.429), the run rate lags (180 / 14 x 30).
        # sigma^2 = (10 x (10 - 180/14)^2 + 4 x (20 - 180/14)^2) / 13 = 21.978; t for 13
        # degrees of freedom (the table's 12: 1.782); half widths 1.782 x sqrt(21.978 x
        # (16 + 16^2/7)) = 60.573 and x sqrt(21.978 x (16 + 16^2/14)) = 48.917.
        ([10] * 10 + [20] * 4, ForecastMethod.TRAILING, "431.429", "370.856", "492.001",
         ForecastReason.OK),
        ([10] * 10 + [20] * 4, ForecastMethod.RUN_RATE, "385.714", "336.797", "434.631",
         ForecastReason.OK),
        # Alternating 8/12: mean of the last 7 (4x12 + 3x8)/7, 140 + 72/7 x 16 = 304.571;
        # sigma^2 = 14 x 4 / 13, half width 1.782 x sqrt(56/13 x (16 + 16^2/7)) = 26.817.
        ([8, 12] * 7, ForecastMethod.TRAILING, "304.571", "277.755", "331.388",
         ForecastReason.OK),
        # A 100 burst on day 1: the trailing rate leaves it out (kept in the month to date);
        # the run rate carries it to month end, 230 / 14 x 30, and its sigma widens the band.
        ([100] + [10] * 13, ForecastMethod.TRAILING, "390", "390", "390", ForecastReason.OK),
        ([100] + [10] * 13, ForecastMethod.RUN_RATE, "492.857", "241.875", "743.839",
         ForecastReason.OK),
        # Under min_days (5) covered days: shown, never raised.
        ([10] * 4, ForecastMethod.TRAILING, "300", "300", "300", ForecastReason.TOO_EARLY),
        ([100] * 1, ForecastMethod.TRAILING, "3000", None, None, ForecastReason.TOO_EARLY),
    ],
)  # fmt: skip
def test_forecast_table(
    increments: list[int],
    method: ForecastMethod,
    value: str,
    low: str | None,
    high: str | None,
    reason: ForecastReason,
) -> None:
    f = run(increments, params=ForecastParams(method=method, window_days=7))
    assert (f.value, f.reason) == (D(value), reason)
    assert (f.low, f.high) == (None if low is None else D(low), None if high is None else D(high))


def test_a_part_of_the_lines_is_forecast_from_that_part_of_their_history() -> None:
    # A team's part of a contract line (what no reporting group covers): its month to date
    # and every recorded change of the line count at that part, so the forecast is the
    # part of the line's, not a drop from the whole line's history to the part.
    month, lag = JUNE, DAY
    increments = [10, 12, 9, 11, 10, 30, 10, 12, 9, 11]
    now = datetime(2024, 6, 11, 7, tzinfo=UTC)
    inputs = ForecastInputs(now, lag, ForecastParams(), {KEY: history(month, increments, lag)})
    total = D(sum(increments))
    whole = inputs.forecast(month, total, [KEY])
    part = inputs.forecast(month, total * D("0.35"), [KEY], {KEY: Fraction(7, 20)})
    assert whole.method is ForecastMethod.TRAILING and part.method is whole.method
    for ours, theirs in ((part.value, whole.value), (part.low, whole.low)):
        assert ours is not None and theirs is not None
        assert abs(ours - theirs * D("0.35")) <= D("0.001")
    # Read whole, the history would end in a drop to the part: a band far too wide.
    unscaled = inputs.forecast(month, total * D("0.35"), [KEY])
    assert unscaled.low is not None and part.low is not None and unscaled.low < part.low


def test_history_too_short_falls_back_to_the_run_rate_without_a_band() -> None:
    # One pull on the 10th (data through the 9th) and one on the 11th: one single-day step.
    deltas = (
        (datetime(2024, 6, 10, 6, tzinfo=UTC), D(90)),
        (datetime(2024, 6, 11, 6, tzinfo=UTC), D(20)),
    )
    inputs = ForecastInputs(
        datetime(2024, 6, 11, 7, tzinfo=UTC), DAY, ForecastParams(), {KEY: KeyHistory(deltas)}
    )
    f = inputs.forecast(JUNE, D(110), [KEY])
    assert (f.method, f.reason) == (ForecastMethod.RUN_RATE, ForecastReason.HISTORY_SHORT)
    assert (f.value, f.low, f.high, f.covered_days) == (D(330), None, None, 10)
    assert "no band: history too short" in f.describe("GB")


@pytest.mark.parametrize(
    ("now", "lag", "through", "days", "reason"),
    [
        (datetime(2024, 6, 15, 0, 30, tzinfo=UTC), timedelta(0), date(2024, 6, 15), 15, SHORT),
        (datetime(2024, 6, 15, 0, 30, tzinfo=UTC), DAY, date(2024, 6, 14), 14, SHORT),
        (datetime(2024, 6, 15, 0, 30, tzinfo=UTC), 2 * DAY, date(2024, 6, 13), 13, SHORT),
        (datetime(2024, 6, 15, 0, 30, tzinfo=UTC), timedelta(hours=36), date(2024, 6, 13), 13,
         SHORT),
        (datetime(2024, 6, 1, 6, tzinfo=UTC), DAY, None, 0, "no_data"),
        (datetime(2024, 6, 3, 6, tzinfo=UTC), DAY, date(2024, 6, 2), 2, "too_early"),
        (datetime(2024, 7, 1, 6, tzinfo=UTC), DAY, date(2024, 6, 30), 30, "month_over"),
    ],
)  # fmt: skip
def test_lag_decides_the_days_covered(
    now: datetime, lag: timedelta, through: date | None, days: int, reason: str
) -> None:
    # The case: 48 GB to date at 00:30 on 15 June; divided by the days covered.
    f = ForecastInputs(now, lag, ForecastParams()).forecast(JUNE, D(48), [])
    assert (f.covered_through, f.covered_days, f.reason.value) == (through, days, reason)
    if reason in (SHORT, "too_early"):
        assert f.value == (D(48) * 30 / days).quantize(D("0.001"))


def test_provider_coverage_caps_the_lag() -> None:
    stamped = KeyHistory(
        ((datetime(2024, 6, 12, 4, tzinfo=UTC), D(120)),),
        provider_updated_at=datetime(2024, 6, 12, 4, 11, tzinfo=UTC),
    )
    now = datetime(2024, 6, 20, 6, tzinfo=UTC)  # the provider has not updated since the 12th
    f = ForecastInputs(now, DAY, ForecastParams(), {KEY: stamped}).forecast(JUNE, D(120), [KEY])
    assert (f.covered_through, f.covered_days, f.value) == (date(2024, 6, 12), 12, D(300))


def test_daily_increments_spread_a_gap_and_let_later_pulls_win() -> None:
    snapshots = [
        Snapshot(date(2024, 6, 2), D(20)),
        Snapshot(date(2024, 6, 2), D(22)),  # late data for the same day: the later one wins
        Snapshot(date(2024, 6, 5), D(52)),  # three days without a pull
        Snapshot(date(2024, 5, 31), D(999)),  # another month: ignored
    ]
    increments, single = daily_increments(JUNE, snapshots, date(2024, 6, 5))
    assert increments == [D(11), D(11), D(10), D(10), D(10)]
    assert single == 0  # the first step (0 -> day 2) and the gap are two days or more


def test_total_snapshots_sum_the_lines_as_of_each_pull() -> None:
    a = [(datetime(2024, 6, 2, 6, tzinfo=UTC), D(10)), (datetime(2024, 6, 4, 6, tzinfo=UTC), D(5))]
    b = [(datetime(2024, 6, 3, 6, tzinfo=UTC), D(7)), (datetime(2024, 6, 4, 6, tzinfo=UTC), D(1))]
    assert total_snapshots([a, b], DAY) == [
        Snapshot(date(2024, 6, 1), D(10)),
        Snapshot(date(2024, 6, 2), D(17)),
        Snapshot(date(2024, 6, 3), D(23)),
    ]


def test_forecast_before_and_after_the_month() -> None:
    f = forecast_month(JUNE, D(0), [], date(2024, 5, 31))
    assert (f.reason, f.covered_days, f.covered_through) == (ForecastReason.NO_DATA, 0, None)
    f = forecast_month(JUNE, D(301), [], date(2024, 7, 2))
    assert (f.value, f.low, f.high, f.reason) == (D(301), D(301), D(301), ForecastReason.MONTH_OVER)


@pytest.mark.parametrize(
    ("degrees", "factor"), [(1, "3.838"), (3, "1.430"), (9, "1.114"), (13, "1.083"), (31, "1")]
)
def test_small_samples_widen_the_band(degrees: int, factor: str) -> None:
    assert small_sample_factor(degrees).quantize(D("0.001")) == D(factor)


def test_json_round_trip() -> None:
    f = run([8, 12] * 7)
    assert forecast_from_json(__import__("json").dumps(forecast_json(f))) == f
    assert forecast_from_json("not json") is None and forecast_from_json(None) is None


# --- findings --------------------------------------------------------------------------------


def line(quantity: Decimal, month: Month = JUNE) -> MonthLine:
    return MonthLine(
        "cdn", "fastly", "", "cdn_usage", "cdn_usage", "North America Bandwidth", "NA", "",
        month, quantity, "GB", LineStatus.COLLECTING,
    )  # fmt: skip


def findings(increments: Sequence[int], maximum: str, *, month: Month = JUNE) -> list[str]:
    covered = month.first_day + timedelta(days=len(increments) - 1)
    now = datetime.combine(covered + DAY, datetime.min.time(), tzinfo=UTC) + timedelta(hours=7)
    inputs = ForecastInputs(
        now, DAY, ForecastParams(), {_key(month): history(month, increments, DAY)}
    )
    total = D(sum(increments))
    expectation = ExpectationSettings.model_validate(
        {"name": "cap", "source": "cdn", "monthly_max": maximum}
    )
    found = evaluate([expectation], [line(total, month)], now.date(), inputs)
    return [f"{e.item.kind}: {e.item.message}" for e in found]


CAP = "cap / North America Bandwidth"


@pytest.mark.parametrize(
    ("increments", "maximum", "expected"),
    [
        # 10/day heading for 300: over a 290 maximum from day 5, not before.
        ([10] * 4, "290", []),
        ([10] * 5, "290", [
            f"projected_overage: {CAP}: 2024-06 to date 50 GB is forecast at 300 GB by "
            "month end, over 290 GB (trailing window, 5 days of data through 2024-06-05, band "
            "300–300 GB)"]),
        ([10] * 5, "300", []),
        # Already over the maximum on day 2: that is an over_expectation, evidence or not.
        ([200, 200], "300",
         [f"over_expectation: {CAP}: 2024-06 total to date 400 GB is over 300 GB"]),
        # A day-1 burst raises nothing once the trailing rate leaves it out.
        ([100] + [10] * 4, "400", []),
        ([100] + [10] * 13, "400", []),
    ],
)  # fmt: skip
def test_projected_overage_rules(increments: list[int], maximum: str, expected: list[str]) -> None:
    assert findings(increments, maximum) == expected


def test_a_28_day_month_is_not_forecast_as_30() -> None:
    feb = Month(2023, 2)
    # 10/day is 280 in February: over 285 only if the month were taken as 30 days.
    assert findings([10] * 10, "285", month=feb) == []
    assert findings([10] * 10, "275", month=feb)[0].startswith("projected_overage")


# --- escalation ------------------------------------------------------------------------------


def fc(value: str, low: str | None = None) -> Forecast:
    return Forecast(
        D(value), None if low is None else D(low), None, ForecastMethod.TRAILING, None, 10,
        ForecastReason.OK,
    )  # fmt: skip


@pytest.mark.parametrize(
    ("acknowledged", "current", "step", "expected"),
    [
        (fc("21700"), fc("26040"), Escalation(), False),  # exactly +20%: not beyond the step
        (fc("21700"), fc("27125"), Escalation(), True),  # +25%
        (fc("21700"), fc("42273"), Escalation(), True),  # the doubling
        (fc("21700"), fc("20100"), Escalation(), False),  # shrinking is not news
        (fc("21700", "19000"), fc("22000", "20500"), Escalation(), True),  # low end crossed
        (fc("21700", "20100"), fc("22000", "20500"), Escalation(), False),  # already certain
        (fc("21700"), fc("23000"), Escalation(D(50), D(1000)), True),  # an amount step
        (fc("21700"), fc("22500"), Escalation(D(50), D(1000)), False),
    ],
)
def test_escalation(
    acknowledged: Forecast, current: Forecast, step: Escalation, expected: bool
) -> None:
    assert step.raises_again(acknowledged, current, D(20000)) is expected


USD_500 = Money(D(500), "USD")
TEN_CENTS = Money(D("0.10"), "USD")


@pytest.mark.parametrize(
    ("current", "step", "unit_price", "expected"),
    [
        # +5,300 GB at 0.10 USD/GB is 530 USD: beyond a 500 USD step (not beyond 50%).
        (fc("27000"), Escalation(D(50), None, USD_500), TEN_CENTS, True),
        # +4,800 GB is 480 USD: within it.
        (fc("26500"), Escalation(D(50), None, USD_500), TEN_CENTS, False),
        # Exactly 500 USD (+5,000 GB): not beyond the step.
        (fc("26700"), Escalation(D(50), None, USD_500), TEN_CENTS, False),
        # Priced in another currency, or not priced at all: the money step does not apply.
        (fc("27000"), Escalation(D(50), None, USD_500), Money(D("0.10"), "EUR"), False),
        (fc("27000"), Escalation(D(50), None, USD_500), None, False),
        # The percent and quantity steps still apply beside it.
        (fc("27125"), Escalation(D(20), None, USD_500), Money(D("0.0001"), "USD"), True),
    ],
)
def test_escalation_in_money(
    current: Forecast, step: Escalation, unit_price: Money | None, expected: bool
) -> None:
    assert step.raises_again(fc("21700"), current, D(20000), unit_price) is expected
