"""The quick backtest (``benchmarks/forecast.py --quick``): correctness only, never time."""

from __future__ import annotations

import importlib.util
import sys
from collections import Counter
from datetime import date
from pathlib import Path
from types import ModuleType

import pytest

from reconciler.domain import Month

SCRIPT = Path(__file__).resolve().parent.parent / "benchmarks" / "forecast.py"


@pytest.fixture(scope="module")
def backtest_module() -> ModuleType:
    spec = importlib.util.spec_from_file_location("forecast_backtest", SCRIPT)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module
    spec.loader.exec_module(module)
    return module


async def test_every_forecast_of_the_replayed_month_is_made_and_scored(
    backtest_module: ModuleType,
) -> None:
    january = Month(2024, 1)
    samples = await backtest_module.backtest([january], (5, 10), seed=3)
    lines = backtest_module.USAGE_TYPES
    counts = Counter((s.method, s.day) for s in samples)
    assert counts == {(m.name, d): 2 * lines for m in backtest_module.METHODS for d in (5, 10)}
    for sample in samples:
        forecast = sample.forecast
        through = forecast.covered_through
        assert through is not None and sample.final > 0
        day = date(2024, 1, sample.day)
        if sample.method.endswith("lag ignored"):
            assert through == day  # the wall clock's day, as the plan once divided by
        elif sample.shape == "late":
            assert (day - through).days in (1, 2)  # the provider's own last update caps it
        else:
            assert (day - through).days == 1
        assert forecast.covered_days == through.day
        assert sample.ape >= 0
        if forecast.low is None or forecast.high is None:  # a late provider: too few days
            assert forecast.reason.value == "history_short" and not sample.held
            continue
        assert forecast.low <= forecast.value <= forecast.high
        assert sample.held == (forecast.low <= sample.final <= forecast.high)
    # The same stored history, two methods: on day 5 the window holds every day, so the
    # trailing rate equals the run rate unless a burst was left out.
    by_key = {(s.method, s.day, s.shape, s.final): s.forecast.value for s in samples}
    for (method, day, shape, final), value in by_key.items():
        if method.startswith("trailing") and day == 5 and shape != "burst":
            assert value == by_key[("run_rate (baseline)", day, shape, final)]


def test_the_quick_run_prints_the_table(
    backtest_module: ModuleType, capsys: pytest.CaptureFixture[str]
) -> None:
    assert backtest_module.main(["--quick"]) == 0
    out = capsys.readouterr().out
    assert "| method | day 5: MAPE · band held | day 10: MAPE · band held |" in out
    for row in ("run_rate (baseline)", "trailing (default)", "run_rate, lag ignored"):
        assert f"\n| {row} | " in out
    for shape in ("steady", "weekly", "step", "burst", "late"):
        assert f"\n| {shape}: trailing | " in out
