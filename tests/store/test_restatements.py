"""Restatements cannot hide, on a real database (SQLite and PostgreSQL): returns compared with
the last present values, billed lines that vanish, finalization against the last collecting
value, and versions for changes no rule names."""

from __future__ import annotations

from dataclasses import replace
from datetime import date
from decimal import Decimal
from types import SimpleNamespace
from typing import Any

import pytest
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncEngine

from reconciler.domain import ChangeKind, LineStatus, Observation, Severity, UsageLine
from reconciler.settings import Tolerance
from reconciler.store.ingest import apply_staged, lines_t, versions_t
from reconciler.store.redating import pair_redated
from reconciler.store.runs import start_run
from reconciler.store.staging import Stager
from tests.store.test_ingest import COVER, NOW, count, line, pull

F = LineStatus.FINALIZED


async def test_a_billed_line_that_vanishes_is_critical_and_distinct(engine: AsyncEngine) -> None:
    await pull(engine, [line("billed", "7", status=F), line("open", "3")])
    gone = await pull(engine, [])
    kinds = {c.key.usage_type: (c.kind, c.severity) for c in gone.changes}
    assert kinds == {
        "billed": (ChangeKind.FINALIZED_DISAPPEARED, Severity.CRITICAL),
        "open": (ChangeKind.DISAPPEARED, Severity.WARNING),
    }


async def test_a_changed_return_is_compared_with_the_last_present_values(
    engine: AsyncEngine,
) -> None:
    await pull(engine, [line(name, "7", status=F) for name in ("a", "b", "c")])
    await pull(engine, [])
    back = await pull(
        engine,
        [
            line("a", "7.000", status=F),
            line("b", "9", status=F),
            line("c", "7", unit="TB", status=F),
        ],
    )
    kinds = {c.key.usage_type: (c.kind, c.returned) for c in back.changes}
    assert kinds == {
        "a": (ChangeKind.REAPPEARED, True),
        "b": (ChangeKind.RESTATED, True),
        "c": (ChangeKind.UNIT_CHANGED, True),
    }
    restated = next(c for c in back.changes if c.kind == ChangeKind.RESTATED)
    assert restated.before == Observation(Decimal(7), "GB", F)
    assert restated.severity == Severity.CRITICAL


async def test_a_billed_line_back_as_collecting_is_reopened(engine: AsyncEngine) -> None:
    await pull(engine, [line("a", "7", status=F)])
    await pull(engine, [])
    back = await pull(engine, [line("a", "7")])
    assert [(c.kind, c.severity) for c in back.changes] == [
        (ChangeKind.REOPENED, Severity.CRITICAL)
    ]


async def test_finalization_beyond_the_tolerance(engine: AsyncEngine) -> None:
    await pull(engine, [line("small", "100"), line("large", "100")])
    final = await pull(engine, [line("small", "101", status=F), line("large", "10", status=F)])
    kinds = {c.key.usage_type: (c.kind, c.severity, c.delta, c.percent) for c in final.changes}
    assert kinds == {
        "small": (ChangeKind.FINALIZED, Severity.INFO, Decimal(1), Decimal("1.00")),
        "large": (ChangeKind.FINALIZED_CHANGED, Severity.WARNING, Decimal(-90), Decimal("-90.00")),
    }


async def test_the_finalize_tolerance_is_the_callers(engine: AsyncEngine) -> None:
    await pull(engine, [line("a", "100")])
    run_id = await start_run(engine, source="fastly", provider="fastly", now=NOW)
    stager = Stager(engine, run_id, "fastly")
    await stager.add([line("a", "105", status=F)])
    async with stager.transaction() as conn:
        result = await apply_staged(
            conn,
            run_id=run_id,
            source="fastly",
            coverage=COVER,
            now=NOW,
            severities={},
            finalize_tolerance=Tolerance(percent=Decimal(5)),
        )
    assert [c.kind for c in result.changes] == [ChangeKind.FINALIZED]


async def test_raw_quantity_or_billability_alone_is_a_version(engine: AsyncEngine) -> None:
    first = line("a", "100")
    await pull(engine, [first])
    raw = await pull(engine, [replace(first, raw_quantity=Decimal("100001"))])
    assert raw.changes == []
    assert raw.versions_added == 1
    billable = await pull(engine, [replace(first, raw_quantity=Decimal("100001"), billable=False)])
    assert billable.changes == []
    assert billable.versions_added == 1
    unknown = await pull(engine, [replace(first, raw_quantity=None, billable=None)])
    assert unknown.versions_added == 1
    same = await pull(engine, [replace(first, raw_quantity=None, billable=None)])
    assert same.versions_added == 0
    assert await count(engine, versions_t) == 4
    async with engine.connect() as conn:
        stored = (await conn.execute(select(lines_t.c.raw_quantity, lines_t.c.billable))).one()
        history = (
            await conn.execute(
                select(versions_t.c.raw_quantity, versions_t.c.billable).order_by(versions_t.c.id)
            )
        ).all()
    assert tuple(stored) == (None, None)
    assert [tuple(r) for r in history] == [
        (Decimal(100000), None),
        (Decimal(100001), None),
        (Decimal(100001), False),
        (None, None),
    ]


def _period(usage_type: str, quantity: str, first: date, last: date, **kw: Any) -> UsageLine:
    return replace(line(usage_type, quantity, **kw), period_start=first, period_end=last)


async def test_a_re_dated_period_is_a_change_of_the_same_line(engine: AsyncEngine) -> None:
    may = (date(2024, 5, 1), date(2024, 5, 31))
    odd = (date(2021, 5, 1), date(2021, 5, 31))
    await pull(engine, [_period("a", "100", *may), _period("b", "5", *may)])
    result = await pull(engine, [_period("a", "100.5", *odd, status=F), _period("b", "5", *odd)])
    assert result.new_lines == 0
    kinds = {c.key.usage_type: (c.kind, c.key.period_start, c.redated) for c in result.changes}
    # "b" was re-dated with the same values: a version with the new dates, nothing to review.
    assert kinds == {"a": (ChangeKind.FINALIZED, odd[0], may)}
    assert result.versions_added == 2
    async with engine.connect() as conn:
        rows = (await conn.execute(select(lines_t.c.period_start, lines_t.c.period_end))).all()
    assert {tuple(r) for r in rows} == {odd}
    again = await pull(engine, [_period("a", "100.5", *odd, status=F), _period("b", "5", *odd)])
    assert again.changes == [] and again.versions_added == 0


async def test_a_split_month_is_not_a_re_dating(engine: AsyncEngine) -> None:
    await pull(engine, [_period("a", "100", date(2024, 5, 1), date(2024, 5, 31))])
    # Two periods for one (neither starting on the old one's day): not paired.
    halves = [
        _period("a", "50", date(2024, 5, 2), date(2024, 5, 15)),
        _period("a", "50", date(2024, 5, 16), date(2024, 5, 31)),
    ]
    result = await pull(engine, halves)
    assert sorted(c.kind for c in result.changes) == [
        ChangeKind.DISAPPEARED,
        ChangeKind.NEW,
        ChangeKind.NEW,
    ]


@pytest.mark.parametrize(
    ("gone", "fresh", "pairs"),
    [
        ([("a", 1)], [("a", 2)], [(1, 2)]),
        ([("a", 1)], [("b", 2)], []),
        ([("a", 1)], [("a", 2), ("a", 3)], []),
        ([("a", 1), ("a", 5)], [("a", 9), ("a", 2)], [(1, 2), (5, 9)]),
        ([("a", 1), ("b", 1)], [("b", 4)], [(1, 4)]),
        ([], [("a", 2)], []),
    ],
)
def test_pairing_of_re_dated_periods(
    gone: list[tuple[str, int]], fresh: list[tuple[str, int]], pairs: list[tuple[int, int]]
) -> None:
    def row(usage_type: str, day: int) -> SimpleNamespace:
        return SimpleNamespace(
            account="", product="p", usage_type=usage_type, region="", service="",
            month="2024-05", period_start=date(2024, 5, day),
        )  # fmt: skip

    found = pair_redated([row(*g) for g in gone], [row(*f) for f in fresh])
    assert [(old.period_start.day, new.period_start.day) for old, new in found] == pairs
    assert all(old.usage_type == new.usage_type for old, new in found)
