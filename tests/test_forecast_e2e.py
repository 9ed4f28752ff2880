"""Forecasts end to end: daily pulls of the sandbox through a month, on SQLite and PostgreSQL."""

from __future__ import annotations

from collections.abc import AsyncIterator
from datetime import UTC, date, datetime, time, timedelta
from decimal import Decimal
from typing import Any

import pytest
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncEngine

from reconciler.domain import Month
from reconciler.providers.http import HttpClient
from reconciler.reconcile.forecast import Forecast, forecast_from_json
from reconciler.refresh import RunOutcome, refresh_source
from reconciler.reports.data import ReportRequest, gather_report
from reconciler.sandbox.scenario import named_scenario
from reconciler.sandbox.server import SandboxServer
from reconciler.settings import Settings, settings_from_mapping
from reconciler.store.items import findings_table
from reconciler.store.review import apply_acknowledgements, build_plan

AUGUST = Month(2024, 8)
USAGE = "North America Bandwidth"


@pytest.fixture
async def sandbox() -> AsyncIterator[SandboxServer]:
    scenario = named_scenario("tiny", today=AUGUST.first_day)
    async with SandboxServer(scenario, host="127.0.0.1", port=0) as server:
        yield server


def settings_for(
    sandbox: SandboxServer,
    maximum: Decimal | None,
    data_lag: str = "0s",
    lookback_months: int = 1,
    **extra: Any,
) -> Settings:
    config: dict[str, Any] = {
        "sources": [
            {
                "name": "cdn",
                "provider": "fastly",
                "base_url": sandbox.base_url,
                "max_retries": 0,
                "lookback_months": lookback_months,
                "services": False,
                "invoices": False,
                "data_lag": data_lag,  # "0s": the sandbox serves a day's usage on that day
            }
        ],
        "expectations": [],
    }
    if maximum is not None:
        config["expectations"] = [
            {"name": "NA cap", "source": "cdn", "usage_type": USAGE, "monthly_max": str(maximum)}
        ]
    return settings_from_mapping({**config, **extra})


def morning(day: date) -> datetime:
    return datetime.combine(day, time(6, 0), tzinfo=UTC)


async def pull(
    engine: AsyncEngine,
    settings: Settings,
    sandbox: SandboxServer,
    day: date,
    provider_day: date | None = None,
) -> RunOutcome:
    sandbox.state.set_today(provider_day or day)
    async with HttpClient() as http:
        outcome = await refresh_source(
            engine,
            settings,
            "cdn",
            http,
            today=day,
            clock=lambda: morning(day),
            environ={"FASTLY_API_TOKEN": sandbox.fastly_token},
        )
    assert outcome.ok, outcome.error
    return outcome


async def daily_rate(engine: AsyncEngine, sandbox: SandboxServer) -> Decimal:
    """The line's usage on August 1st (the sandbox's steady daily rate), from a first pull."""
    outcome = await pull(engine, settings_for(sandbox, None), sandbox, AUGUST.first_day)
    assert not outcome.items.raised
    async with engine.connect() as conn:
        plan = await build_plan(conn, morning(AUGUST.first_day))
    assert plan.empty
    from reconciler.store.ingest import lines_t

    async with engine.connect() as conn:
        quantity = (
            await conn.execute(
                select(lines_t.c.quantity).where(
                    lines_t.c.usage_type == USAGE, lines_t.c.month == str(AUGUST)
                )
            )
        ).scalar_one()
    assert isinstance(quantity, Decimal) and quantity > 0
    return quantity


def spike(day: int, factor: str) -> dict[str, str]:
    return {
        "kind": "spike",
        "provider": "fastly",
        "usage_type": USAGE,
        "day": str(AUGUST.first_day + timedelta(days=day - 1)),
        "factor": factor,
    }


async def findings(engine: AsyncEngine) -> dict[str, Any]:
    async with engine.connect() as conn:
        rows = (await conn.execute(select(findings_table))).all()
    return {row.kind: row for row in rows}


def stored(row: Any) -> Forecast:
    forecast = forecast_from_json(row.forecast)
    assert forecast is not None
    return forecast


async def test_a_month_crossing_its_maximum_on_day_20_is_forecast_with_a_band_before(
    engine: AsyncEngine, sandbox: SandboxServer
) -> None:
    rate = await daily_rate(engine, sandbox)
    # Double usage every fourth day (2, 6, 10, ...): variability for the band; 1.25 x rate a
    # day on average, so the month to date crosses 24.5 x rate on day 20 (25 x rate).
    events = [spike(d, "2") for d in range(2, 32, 4)] + [spike(d, "0.5") for d in range(3, 32, 4)]
    sandbox.state.add_events(events)
    settings = settings_for(sandbox, rate * Decimal("24.5"))
    first_raised = None
    for day in range(1, 21):
        await pull(engine, settings, sandbox, AUGUST.first_day + timedelta(days=day - 1))
        found = await findings(engine)
        if day < 5:  # too early to forecast: nothing raised
            assert not found, day
            continue
        if day < 20:
            assert set(found) == {"projected_overage"}, day
            row = found["projected_overage"]
            forecast = stored(row)
            assert forecast.covered_days == day and forecast.low is not None
            assert forecast.high is not None and forecast.low < forecast.value < forecast.high
            assert f"data through 2024-08-{day:02d}" in row.message
            first_raised = first_raised or day
        else:
            assert found["over_expectation"].state == "open"
            assert "projected_overage" not in found or found["projected_overage"].state == (
                "resolved"
            )
    assert first_raised == 5


async def test_a_day_one_burst_raises_nothing(engine: AsyncEngine, sandbox: SandboxServer) -> None:
    rate = await daily_rate(engine, sandbox)
    # Ten times the usage on August 1st only: the month ends at 40 x rate, under 45 x rate;
    # the run rate would project 14 / 5 x 31 = 86.8 x rate on day 5.
    sandbox.state.add_events([spike(1, "10"), spike(2, "0.1")])
    settings = settings_for(sandbox, rate * 45)
    for day in range(1, 32):
        outcome = await pull(engine, settings, sandbox, AUGUST.first_day + timedelta(days=day - 1))
        assert not outcome.items.raised, day
    assert await findings(engine) == {}


async def test_an_acknowledged_forecast_that_grows_beyond_the_step_is_raised_again(
    engine: AsyncEngine, sandbox: SandboxServer
) -> None:
    rate = await daily_rate(engine, sandbox)
    sandbox.state.add_events([spike(9, "1.6")])  # usage steps up by 60% from August 9th
    settings = settings_for(sandbox, rate * 29)
    for day in range(1, 6):
        await pull(engine, settings, sandbox, AUGUST.first_day + timedelta(days=day - 1))
    async with engine.connect() as conn:
        plan = await build_plan(conn, morning(date(2024, 8, 5)))
    (item,) = plan.findings
    assert item.kind == "projected_overage" and item.forecast is not None
    assert item.forecast.value == rate * 31  # steady so far: 31 days at the daily rate
    acknowledged = await apply_acknowledgements(
        engine,
        settings,
        serial=plan.serial,
        expected=plan.expected_acknowledgements(),
        who="ops",
        note="expected",
        now=morning(date(2024, 8, 5)),
    )
    assert acknowledged == 1
    raised_on = None
    for day in range(6, 20):
        outcome = await pull(engine, settings, sandbox, AUGUST.first_day + timedelta(days=day - 1))
        row = (await findings(engine))["projected_overage"]
        growth = stored(row).value / (rate * 31) - 1
        if growth <= Decimal("0.2"):
            assert row.state == "acknowledged" and not outcome.items.raised, day
            continue
        assert row.state == "open", day
        assert [i.fingerprint for i in outcome.items.raised] == [row.fingerprint]
        assert "escalated" not in row.message
        raised_on = day
        break
    assert raised_on is not None


async def test_an_acknowledged_forecast_is_raised_again_when_its_growth_costs_the_money_step(
    engine: AsyncEngine, sandbox: SandboxServer
) -> None:
    rate = await daily_rate(engine, sandbox)
    sandbox.state.add_events([spike(9, "1.6")])
    price = Decimal("0.10")
    step = (rate * 31 * Decimal("0.05") * price).quantize(Decimal("0.01"))  # ~5% growth
    settings = settings_for(
        sandbox,
        rate * 29,
        # The percent step is far off: only the money step can raise it again.
        forecast={"escalation_percent": "500", "escalation_money": f"{step} USD"},
        rates=[{"name": "NA", "source": "cdn", "usage_type": USAGE, "currency": "USD",
                "unit": "GB", "unit_price": str(price)}],
    )  # fmt: skip
    for day in range(1, 6):
        await pull(engine, settings, sandbox, AUGUST.first_day + timedelta(days=day - 1))
    async with engine.connect() as conn:
        plan = await build_plan(conn, morning(date(2024, 8, 5)))
    (item,) = plan.findings
    assert item.forecast is not None and item.impact is not None
    accepted = item.forecast.value
    await apply_acknowledgements(
        engine,
        settings,
        serial=plan.serial,
        expected=plan.expected_acknowledgements(),
        who="ops",
        note="expected",
        now=morning(date(2024, 8, 5)),
    )
    raised_on = None
    for day in range(6, 20):
        outcome = await pull(engine, settings, sandbox, AUGUST.first_day + timedelta(days=day - 1))
        row = (await findings(engine))["projected_overage"]
        growth_cost = (stored(row).value - accepted) * price
        if growth_cost <= step:
            assert row.state == "acknowledged" and not outcome.items.raised, day
            continue
        assert row.state == "open", day
        assert stored(row).value / accepted - 1 < 5  # not the percent step
        raised_on = day
        break
    assert raised_on is not None


@pytest.mark.parametrize("day", [6, 12, 18, 25])
async def test_the_plan_and_the_report_agree(
    engine: AsyncEngine, sandbox: SandboxServer, day: int
) -> None:
    rate = await daily_rate(engine, sandbox)
    # Double usage on the 3rd and the 10th: 27 x rate by the 25th, 33 x rate by month end.
    sandbox.state.add_events([spike(d, "2") for d in (3, 10)] + [spike(d, "0.5") for d in (4, 11)])
    settings = settings_for(sandbox, rate * 28)  # under every forecast, over every total
    for current in range(1, day + 1):
        await pull(engine, settings, sandbox, AUGUST.first_day + timedelta(days=current - 1))
    now = morning(AUGUST.first_day + timedelta(days=day - 1))
    async with engine.connect() as conn:
        plan = await build_plan(conn, now)
    (item,) = plan.findings
    assert item.kind == "projected_overage"
    report = await gather_report(engine, settings, ReportRequest(AUGUST, AUGUST), now)
    (series,) = [s for s in report.series if s.usage_type == USAGE]
    assert series.projection is not None and series.projection.over
    assert item.forecast == series.projection.forecast
    assert item.after is not None and item.after.quantity == series.projection.projected


async def test_early_in_a_month_the_lagging_previous_month_is_forecast_from_its_history(
    engine: AsyncEngine, sandbox: SandboxServer
) -> None:
    rate = await daily_rate(engine, sandbox)
    # Two months pulled: August is still pulled (and forecast) in September.
    settings = settings_for(sandbox, rate * Decimal("30.5"), data_lag="2d", lookback_months=2)
    day = AUGUST.first_day + timedelta(days=1)
    while day <= date(2024, 9, 1):  # the provider two days behind the pulls
        await pull(engine, settings, sandbox, day, provider_day=day - timedelta(days=2))
        day += timedelta(days=1)
    row = (await findings(engine))["projected_overage"]
    assert row.month == "2024-08"
    forecast = stored(row)
    # On September 1st the data covers August 1-30: 30 days, one to go, from the history.
    assert (forecast.covered_through, forecast.covered_days) == (date(2024, 8, 30), 30)
    assert forecast.method.value == "trailing" and forecast.reason.value == "ok"
    assert forecast.value == rate * 31 and forecast.low == forecast.high == rate * 31
