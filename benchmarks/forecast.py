"""Backtest the month-end forecast on months of sandbox usage, pulled daily for real.

Each replayed month runs the real pulls (:func:`reconciler.refresh.refresh_source`, the Fastly
client against the sandbox over loopback, a fresh SQLite state) every morning at 06:00, with
the provider's data one day behind (the sandbox's day is yesterday) and ``data_lag = "1d"``.
Every account-level line gets daily noise (× 0.8, 1 or 1.25, seeded) and one usage shape:

* ``steady``: noise only;
* ``weekly``: weekends at 40% of weekdays;
* ``step``: usage × 1.6 from the 15th;
* ``burst``: one day × 8 (the 2nd to the 12th, seeded);
* ``late``: its own replay, where the provider is one or two days behind (seeded), while the
  forecast still assumes one.

Shapes are sandbox ``spike`` events (factors of 2 and 5 only, so every quantity stays exact).
On the 5th, 10th, 15th, 20th and 25th every method forecasts every line from the stored
versions; the month's final quantity is read after it is complete. Printed per method and
day: the mean absolute percentage error of the forecast and how often the band held the
final value; then the same per shape for the default method.

    .venv/bin/python benchmarks/forecast.py [--months 6] [--seed 11] [--quick]

``--quick`` replays one month at days 5 and 10 (the test suite's run).
"""

from __future__ import annotations

import argparse
import asyncio
import random
import sys
import tempfile
import time as timer
from collections import defaultdict
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, replace
from datetime import UTC, date, datetime, time, timedelta
from decimal import Decimal
from pathlib import Path
from typing import Any

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncEngine

from reconciler.domain import Month
from reconciler.providers.http import HttpClient
from reconciler.reconcile.forecast import Forecast, ForecastMethod, ForecastParams
from reconciler.reconcile.history import ForecastInputs, HistoryKey
from reconciler.refresh import refresh_source
from reconciler.sandbox.scenario import named_scenario
from reconciler.sandbox.server import SandboxServer
from reconciler.settings import Settings, settings_from_mapping
from reconciler.store.db import create_engine, upgrade
from reconciler.store.ingest import lines_t
from reconciler.store.month_history import key_histories

USAGE_TYPES = 10
SHAPES = ("steady", "weekly", "step", "burst")
DAYS = (5, 10, 15, 20, 25)
LAG = timedelta(days=1)
NOISE = (Decimal("0.8"), Decimal(1), Decimal("1.25"))


@dataclass(frozen=True)
class Method:
    """One way to forecast, as the table names it."""

    name: str
    params: ForecastParams
    lag_aware: bool = True  # False: the wall clock's days, as the plan once projected


METHODS = [
    Method("run_rate (baseline)", ForecastParams(method=ForecastMethod.RUN_RATE, min_days=1)),
    Method("trailing (default)", ForecastParams(method=ForecastMethod.TRAILING, min_days=1)),
    Method(
        "run_rate, lag ignored",
        ForecastParams(method=ForecastMethod.RUN_RATE, min_days=1),
        lag_aware=False,
    ),
]


@dataclass
class Sample:
    shape: str
    method: str
    day: int
    forecast: Forecast
    final: Decimal = Decimal(0)

    @property
    def ape(self) -> Decimal:
        return abs(self.forecast.value - self.final) / self.final * 100

    @property
    def held(self) -> bool:
        f = self.forecast
        return f.low is not None and f.high is not None and f.low <= self.final <= f.high


@dataclass
class Replay:
    """One month of one kind of replay: which shape each line has, and the provider's lag."""

    month: Month
    shapes: dict[str, str]  # usage type -> shape
    provider_lag: Callable[[date], int]
    samples: list[tuple[HistoryKey, Sample]] = field(default_factory=list)


def multipliers(month: Month, shape: str, rng: random.Random) -> list[Decimal]:
    """The daily factor of one line through the month: noise × shape."""
    burst_day = rng.randint(2, 12)
    factors = []
    for day in range(1, month.days + 1):
        weekday = date(month.year, month.month, day).weekday()
        factor = rng.choice(NOISE)
        if shape == "weekly" and weekday >= 5:
            factor *= Decimal("0.4")
        if shape == "step" and day >= 15:
            factor *= Decimal("1.6")
        if shape == "burst" and day == burst_day:
            factor *= 8
        factors.append(factor)
    return factors


def spike_events(month: Month, usage_type: str, factors: Sequence[Decimal]) -> list[Any]:
    """Sandbox spikes multiply from their day on: each day's factor over the day before's."""
    events, previous = [], Decimal(1)
    for day, factor in enumerate(factors, start=1):
        if factor != previous:
            events.append(
                {
                    "kind": "spike",
                    "provider": "fastly",
                    "usage_type": usage_type,
                    "month": str(month),
                    "day": str(date(month.year, month.month, day)),
                    "factor": str(factor / previous),
                }
            )
        previous = factor
    return events


def settings_for(sandbox: SandboxServer) -> Settings:
    source = {
        "name": "cdn",
        "provider": "fastly",
        "base_url": sandbox.base_url,
        "lookback_months": 2,  # the month keeps being pulled after it ends
        "services": False,
        "invoices": False,
        "max_retries": 0,
        "data_lag": "1d",
    }
    return settings_from_mapping({"sources": [source]})


async def quantities(engine: AsyncEngine, month: Month) -> dict[HistoryKey, Decimal]:
    c = lines_t.c
    query = select(c.account, c.product, c.usage_type, c.region, c.unit, c.quantity).where(
        c.month == str(month), c.present.is_(True)
    )
    async with engine.connect() as conn:
        rows = (await conn.execute(query)).all()
    return {
        HistoryKey("cdn", r.account, r.product, r.usage_type, r.region, "", month, r.unit): (
            r.quantity
        )
        for r in rows
    }


async def forecast_day(engine: AsyncEngine, replay: Replay, day: int, now: datetime) -> None:
    month = replay.month
    totals = await quantities(engine, month)
    async with engine.connect() as conn:
        histories = await key_histories(conn, ["cdn"], month, services=False)
    unstated = {key: replace(h, provider_updated_at=None) for key, h in histories.items()}
    for method in METHODS:
        if method.lag_aware:
            inputs = ForecastInputs(now, LAG, method.params, histories)
        else:  # neither the lag nor the provider's last update: today counts as covered
            inputs = ForecastInputs(now, timedelta(0), method.params, unstated)
        for key, total in totals.items():
            shape = replay.shapes.get(key.usage_type, "steady")
            sample = Sample(shape, method.name, day, inputs.forecast(month, total, [key]))
            replay.samples.append((key, sample))


async def run_replay(replay: Replay, days: Sequence[int], sandbox: SandboxServer) -> None:
    month = replay.month
    with tempfile.TemporaryDirectory() as directory:
        engine = create_engine(f"sqlite+aiosqlite:///{Path(directory) / 'state.db'}", create=True)
        await upgrade(engine)
        settings = settings_for(sandbox)
        try:
            async with HttpClient() as http:
                last = month.last_day + timedelta(days=3)
                day = month.first_day
                while day <= last:
                    provider_day = day - timedelta(days=replay.provider_lag(day))
                    sandbox.state.set_today(provider_day)
                    now = datetime.combine(day, time(6, 0), tzinfo=UTC)
                    outcome = await refresh_source(
                        engine,
                        settings,
                        "cdn",
                        http,
                        today=now.date(),
                        clock=lambda now=now: now,  # type: ignore[misc]
                        environ={"FASTLY_API_TOKEN": sandbox.fastly_token},
                    )
                    if not outcome.ok:
                        raise RuntimeError(f"pull on {day} failed: {outcome.error}")
                    if day.month == month.month and day.day in days:
                        await forecast_day(engine, replay, day.day, now)
                    day += timedelta(days=1)
            finals = await quantities(engine, month)
        finally:
            await engine.dispose()
    for key, sample in replay.samples:
        sample.final = finals[key]


async def backtest(
    months: Sequence[Month], days: Sequence[int] = DAYS, seed: int = 11
) -> list[Sample]:
    """Replay every month twice (the shapes; late data) and return every forecast made."""
    rng = random.Random(seed)
    scenario = named_scenario("tiny").replace(
        fastly_usage_types=USAGE_TYPES, fastly_services=1, first_month=months[0] - 1
    )
    samples: list[Sample] = []
    async with SandboxServer(scenario, host="127.0.0.1", port=0) as sandbox:
        from reconciler.sandbox.catalog import FASTLY_USAGE_TYPES

        usage_types = [u.name for u in FASTLY_USAGE_TYPES[:USAGE_TYPES]]
        for month in months:
            sandbox.state.set_today(month.first_day)
            for late in (False, True):
                sandbox.state.reset()
                shapes = {
                    name: "late" if late else SHAPES[index % len(SHAPES)]
                    for index, name in enumerate(usage_types)
                }
                events = []
                for name, shape in shapes.items():
                    events += spike_events(month, name, multipliers(month, shape, rng))
                sandbox.state.add_events(events)
                lags = {day: rng.choice((1, 2)) if late else 1 for day in range(1, 40)}
                replay = Replay(
                    month, shapes, lambda d, lags=lags, m=month: lags[(d - m.first_day).days + 1]
                )
                await run_replay(replay, days, sandbox)
                samples += [sample for _key, sample in replay.samples]
    return samples


@dataclass(frozen=True)
class Cell:
    mape: Decimal
    hit_percent: Decimal
    count: int


def table(samples: Sequence[Sample], by: Callable[[Sample], str]) -> dict[tuple[str, int], Cell]:
    groups: dict[tuple[str, int], list[Sample]] = defaultdict(list)
    for sample in samples:
        groups[(by(sample), sample.day)].append(sample)
    cells = {}
    for key, group in groups.items():
        mape = sum((s.ape for s in group), Decimal(0)) / len(group)
        hits = Decimal(sum(s.held for s in group) * 100) / len(group)
        cells[key] = Cell(mape.quantize(Decimal("0.01")), hits.quantize(Decimal("1")), len(group))
    return cells


def render(cells: dict[tuple[str, int], Cell], rows: Sequence[str], title: str) -> str:
    days = sorted({day for _row, day in cells})
    header = f"| {title} | " + " | ".join(f"day {d}: MAPE · band held" for d in days) + " |"
    lines = [header, "|" + "---|" * (len(days) + 1)]
    for row in rows:
        parts = []
        for day in days:
            cell = cells.get((row, day))
            parts.append("—" if cell is None else f"{cell.mape}% · {cell.hit_percent}%")
        lines.append(f"| {row} | " + " | ".join(parts) + " |")
    return "\n".join(lines)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--months", type=int, default=6, help="months replayed (from 2024-01)")
    parser.add_argument("--seed", type=int, default=11)
    parser.add_argument("--quick", action="store_true", help="one month, days 5 and 10")
    parser.add_argument("--window", type=int, default=14, help="the trailing window's days")
    args = parser.parse_args(argv)
    trailing = METHODS[1]
    METHODS[1] = replace(trailing, params=replace(trailing.params, window_days=args.window))
    first = Month(2024, 1)
    months = [first] if args.quick else first.range_to(first + (args.months - 1))
    days = (5, 10) if args.quick else DAYS
    started = timer.monotonic()
    samples = asyncio.run(backtest(months, days, args.seed))
    elapsed = timer.monotonic() - started
    print(
        f"backtest: {len(months)} month(s) x 2 replays, {USAGE_TYPES} lines, "
        f"{len(samples)} forecasts in {elapsed:.1f} s (seed {args.seed})\n"
    )
    print(render(table(samples, lambda s: s.method), [m.name for m in METHODS], "method"))
    print()
    default = [s for s in samples if s.method == METHODS[1].name]
    baseline = [s for s in samples if s.method == METHODS[0].name]
    shape_cells = table(default, lambda s: f"{s.shape}: trailing")
    shape_cells |= table(baseline, lambda s: f"{s.shape}: run_rate")
    rows = [f"{shape}: {m}" for shape in (*SHAPES, "late") for m in ("run_rate", "trailing")]
    print(render(shape_cells, rows, "shape"))
    return 0


if __name__ == "__main__":
    sys.exit(main())
