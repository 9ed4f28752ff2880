"""How a collecting month is forecast to its end. Pure: data and ``now`` in, a forecast out.

The forecast divides by the time the data covers, not the wall clock: usage reaches the
providers' APIs a day or two late, so the month-to-date total of a pull made at ``now`` covers
the days through ``now - data_lag`` (or through the provider's own statement of coverage, when
it makes one). The snapshots every pull stores give the month's daily increments; from them:

* ``run_rate``: the month to date / covered days × days in the month (the linear baseline);
* ``trailing``: the month to date + the mean daily increment of the last ``window_days``
  covered days × the days left (a change of pace shows within a week). A day above
  ``burst_factor`` × the window's median is a one-off burst: it stays in the month to date but
  is left out of the rate (and of the band's σ).

The band is value ± t·σ·√(R + R²/n): σ the standard deviation of the daily increments, R the
days left and n the days the rate is estimated from (the spread of R future days plus the
uncertainty of the rate itself); t is ``band_z`` widened by Student's t for the few days σ is
estimated from (× 1.43 with 4 days, × 1.11 with 10, × 1 beyond 31). With fewer than
``MIN_BAND_DAYS`` single-day increments the history is too short: the forecast falls back to
the run rate, without a band. Before ``min_days`` covered days a forecast is "too early" and
raises nothing.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import date, datetime, timedelta
from decimal import Decimal, localcontext
from enum import StrEnum
from itertools import pairwise
from typing import Any

from reconciler import display
from reconciler.domain import EXACT_CONTEXT, Month, canonical_decimal
from reconciler.money import Money

MIN_BAND_DAYS = 3
_QUANTUM = Decimal("0.001")


class ForecastMethod(StrEnum):
    RUN_RATE = "run_rate"
    TRAILING = "trailing"

    @property
    def label(self) -> str:
        return "linear run rate" if self is ForecastMethod.RUN_RATE else "trailing window"


class ForecastReason(StrEnum):
    """Why a forecast is what it is (``ok``: a forecast with a band)."""

    OK = "ok"
    HISTORY_SHORT = "history_short"  # run rate, no band: too few daily increments
    TOO_EARLY = "too_early"  # fewer than min_days covered: shown, never raised
    NO_DATA = "no_data"  # nothing of the month covered yet
    MONTH_OVER = "month_over"  # every day covered: the value is the month's total


@dataclass(frozen=True, slots=True)
class ForecastParams:
    """How to forecast (from ``[forecast]`` settings)."""

    method: ForecastMethod = ForecastMethod.TRAILING
    window_days: int = 14
    min_days: int = 5
    band_z: Decimal = Decimal("1.645")
    burst_factor: Decimal = Decimal(3)


@dataclass(frozen=True, slots=True)
class Snapshot:
    """A month-to-date total as one pull saw it, and the last day that total covers."""

    covered_through: date
    total: Decimal


@dataclass(frozen=True, slots=True)
class Forecast:
    """A month-end forecast: the value, its band (None: no band), and how it was made."""

    value: Decimal
    low: Decimal | None
    high: Decimal | None
    method: ForecastMethod
    covered_through: date | None
    covered_days: int
    reason: ForecastReason

    @property
    def raisable(self) -> bool:
        """Whether the evidence is enough to raise a projected overage."""
        return self.reason not in (ForecastReason.TOO_EARLY, ForecastReason.NO_DATA)

    def describe(self, unit: str) -> str:
        """``trailing window, 14 days of data through 2024-06-14, band 21.2–26 GB``."""
        through = self.covered_through.isoformat() if self.covered_through else "-"
        days = display.plural(self.covered_days, "day")
        text = f"{self.method.label}, {days} of data through {through}"
        if self.low is not None and self.high is not None:
            text += f", band {display.number(self.low)}–{display.amount(self.high, unit)}"
        elif self.reason is ForecastReason.HISTORY_SHORT:
            text += ", no band: history too short"
        return text


def covered_through(now: datetime, data_lag: timedelta, provider_through: date | None) -> date:
    """The last day the data covers: the provider's word when it gives one, else now - lag."""
    lagged = (now - data_lag).date()
    return lagged if provider_through is None else min(lagged, provider_through)


def daily_increments(
    month: Month, snapshots: Sequence[Snapshot], through: date
) -> tuple[list[Decimal], int]:
    """One increment per covered day of ``month`` through ``through``, and how many of them
    were observed on their own (not spread evenly over a gap between two pulls).

    Later snapshots win for the same covered day (late data only ever adds to a day).
    """
    last = min(through, month.last_day)
    by_day: dict[date, Decimal] = {month.first_day - timedelta(days=1): Decimal(0)}
    for snapshot in snapshots:
        if month.first_day <= snapshot.covered_through <= last:
            by_day[snapshot.covered_through] = snapshot.total
    points = sorted(by_day.items())
    increments: list[Decimal] = []
    single = 0
    with localcontext(EXACT_CONTEXT):
        for (day0, total0), (day1, total1) in pairwise(points):
            gap = (day1 - day0).days
            increments.extend([(total1 - total0) / gap] * gap)
            single += gap == 1
    return increments, single


def forecast_month(
    month: Month,
    to_date: Decimal,
    snapshots: Sequence[Snapshot],
    through: date,
    params: ForecastParams | None = None,
) -> Forecast:
    """The month-end forecast of ``month`` from its total ``to_date`` covering ``through``.

    ``snapshots`` are the month-to-date totals earlier pulls stored (any order; those outside
    the month or after ``through`` are ignored); the current total is added as the last one.
    """
    params = params or ForecastParams()
    if through < month.first_day:
        return Forecast(to_date, None, None, params.method, None, 0, ForecastReason.NO_DATA)
    if through >= month.last_day:
        last = month.last_day
        return Forecast(
            to_date, to_date, to_date, params.method, last, month.days, ForecastReason.MONTH_OVER
        )
    covered = through.day
    increments, single = daily_increments(month, [*snapshots, Snapshot(through, to_date)], through)
    method = params.method
    reason = ForecastReason.OK
    if single < MIN_BAND_DAYS:
        method, reason = ForecastMethod.RUN_RATE, ForecastReason.HISTORY_SHORT
    if covered < params.min_days:
        reason = ForecastReason.TOO_EARLY
    left = month.days - covered
    if method is ForecastMethod.RUN_RATE:
        window, usual = increments, increments
        with localcontext(EXACT_CONTEXT):
            rate = to_date / covered
    else:
        window = without_bursts(increments[-params.window_days :], params.burst_factor)
        usual = without_bursts(increments, params.burst_factor)
        with localcontext(EXACT_CONTEXT):
            rate = sum(window, Decimal(0)) / len(window)
    with localcontext(EXACT_CONTEXT):
        value = max(to_date + rate * left, to_date)
    low = high = None
    if reason is not ForecastReason.HISTORY_SHORT and len(usual) >= 2:
        spread = _band_half_width(usual, left, len(window), params.band_z)
        low, high = max(value - spread, to_date), value + spread
    return Forecast(
        _q(value),
        None if low is None else _q(low),
        None if high is None else _q(high),
        method,
        through,
        covered,
        reason,
    )


def without_bursts(increments: Sequence[Decimal], factor: Decimal) -> list[Decimal]:
    """The increments without one-off bursts: days above ``factor`` × their median."""
    ordered = sorted(increments)
    middle = len(ordered) // 2
    with localcontext(EXACT_CONTEXT):
        median = (
            ordered[middle] if len(ordered) % 2 else (ordered[middle - 1] + ordered[middle]) / 2
        )
        if median <= 0:
            return list(increments)
        return [x for x in increments if x <= median * factor]


# Student's t 95% one-sided quantiles by degrees of freedom, over the normal one (1.645).
_T_95 = {1: "6.314", 2: "2.920", 3: "2.353", 4: "2.132", 5: "2.015", 6: "1.943", 7: "1.895",
         8: "1.860", 9: "1.833", 10: "1.812", 12: "1.782", 15: "1.753", 20: "1.725",
         25: "1.708", 30: "1.697"}  # fmt: skip


def small_sample_factor(degrees: int) -> Decimal:
    """How much wider than the normal quantile Student's t is with ``degrees`` of freedom."""
    known = [d for d in sorted(_T_95) if d <= max(degrees, 1)]
    if degrees > 30:
        return Decimal(1)
    return Decimal(_T_95[known[-1]]) / Decimal("1.645")


def _band_half_width(increments: Sequence[Decimal], left: int, n: int, z: Decimal) -> Decimal:
    """t·σ·√(R + R²/n): R future days' spread plus the uncertainty of an n-day mean rate."""
    with localcontext() as ctx:
        ctx.prec = 34
        mean = sum(increments, Decimal(0)) / len(increments)
        variance = sum(((x - mean) ** 2 for x in increments), Decimal(0)) / (len(increments) - 1)
        factor = Decimal(left) + Decimal(left * left) / Decimal(n)
        t = z * small_sample_factor(len(increments) - 1)
        return t * (variance * factor).sqrt()


@dataclass(frozen=True, slots=True)
class Escalation:
    """When an acknowledged projected overage is raised again (``[forecast]`` settings)."""

    percent: Decimal = Decimal(20)
    amount: Decimal | None = None  # in the measure's unit
    money: Money | None = None  # in money, where a rate prices what the overage measures

    def raises_again(
        self,
        acknowledged: Forecast,
        current: Forecast,
        limit: Decimal,
        unit_price: Money | None = None,
    ) -> bool:
        """The projection grew by more than a step since it was acknowledged, or the band's
        low end crossed the maximum (the overage became near certain). The money step prices
        the growth at ``unit_price`` (the overage's price per unit; None: not priced, and
        the money step does not apply)."""
        with localcontext(EXACT_CONTEXT):
            growth = current.value - acknowledged.value
            grew = growth > acknowledged.value * self.percent / 100 or (
                self.amount is not None and growth > self.amount
            )
            if self.money is not None and unit_price is not None:
                same = unit_price.currency == self.money.currency
                grew = grew or (same and growth * unit_price.amount > self.money.amount)
        was_certain = acknowledged.low is not None and acknowledged.low > limit
        is_certain = current.low is not None and current.low > limit
        return grew or (is_certain and not was_certain)


def _q(value: Decimal) -> Decimal:
    with localcontext(EXACT_CONTEXT):
        return value.quantize(_QUANTUM)


def forecast_json(forecast: Forecast) -> dict[str, Any]:
    """The forecast as JSON fields (quantities as exact strings)."""
    return {
        "value": canonical_decimal(forecast.value),
        "low": None if forecast.low is None else canonical_decimal(forecast.low),
        "high": None if forecast.high is None else canonical_decimal(forecast.high),
        "method": forecast.method.value,
        "covered_through": (
            None if forecast.covered_through is None else forecast.covered_through.isoformat()
        ),
        "covered_days": forecast.covered_days,
        "reason": forecast.reason.value,
    }


def forecast_from_json(text: str | None) -> Forecast | None:
    """A forecast stored by :func:`forecast_json` (None, or unreadable text: none)."""
    if not text:
        return None
    try:
        data = json.loads(text)
        through = data["covered_through"]
        return Forecast(
            value=Decimal(data["value"]),
            low=None if data["low"] is None else Decimal(data["low"]),
            high=None if data["high"] is None else Decimal(data["high"]),
            method=ForecastMethod(data["method"]),
            covered_through=None if through is None else date.fromisoformat(through),
            covered_days=int(data["covered_days"]),
            reason=ForecastReason(data["reason"]),
        )
    except (ValueError, KeyError, TypeError, ArithmeticError):
        return None
