"""Restatements cannot hide, on a real database (SQLite and PostgreSQL): returns compared with
the last present values, billed lines that vanish, finalization against the last collecting
value, and versions for changes no rule names."""

from __future__ import annotations

from dataclasses import replace
from decimal import Decimal

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncEngine

from reconciler.domain import ChangeKind, LineStatus, Observation, Severity
from reconciler.settings import Tolerance
from reconciler.store.ingest import apply_staged, lines_t, versions_t
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
    await Stager(engine, run_id, "fastly").add([line("a", "105", status=F)])
    async with engine.begin() as conn:
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
