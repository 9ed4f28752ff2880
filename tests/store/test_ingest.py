"""The set-based ingest on a real database (SQLite and PostgreSQL)."""

from __future__ import annotations

import itertools
import random
from dataclasses import replace
from datetime import UTC, date, datetime
from decimal import Decimal

import pytest
from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncEngine

from reconciler.domain import ChangeKind, LineStatus, Month, Provider, UsageLine, canonical_decimal
from reconciler.errors import BadProviderDataError
from reconciler.providers.base import Coverage, PullStats
from reconciler.providers.rows import TEXT_LIMITS, LineRows, line_row
from reconciler.store.ingest import IngestResult, apply_staged, lines_t, versions_t
from reconciler.store.runs import finish_run, start_run
from reconciler.store.staging import Stager

NOW = datetime(2024, 6, 10, tzinfo=UTC)
MAY, JUNE = Month(2024, 5), Month(2024, 6)
COVER = Coverage(months=(MAY, JUNE), accounts=None)


def line(
    usage_type: str,
    quantity: str,
    *,
    month: Month = MAY,
    unit: str = "GB",
    status: LineStatus = LineStatus.COLLECTING,
    service: str = "",
) -> UsageLine:
    return UsageLine(
        source="fastly",
        provider=Provider.FASTLY,
        account="",
        product="cdn_usage",
        product_name="cdn_usage",
        usage_type=usage_type,
        region="North America",
        service=service,
        month=month,
        period_start=month.first_day,
        period_end=month.last_day,
        quantity=Decimal(quantity),
        raw_quantity=Decimal(quantity) * 1000,
        unit=unit,
        billable=None,
        status=status,
    )


async def pull(
    engine: AsyncEngine, lines: list[UsageLine], coverage: Coverage = COVER
) -> IngestResult:
    run_id = await start_run(engine, source="fastly", provider="fastly", now=NOW)
    stager = Stager(engine, run_id, "fastly")
    for start in range(0, len(lines), 3):
        await stager.add(lines[start : start + 3])
    async with stager.transaction() as conn:
        result = await apply_staged(
            conn, run_id=run_id, source="fastly", coverage=coverage, now=NOW, severities={}
        )
        await finish_run(
            conn,
            run_id,
            stats=PullStats(),
            coverage=coverage,
            versions_added=result.versions_added,
            changes=len(result.changes),
            findings=0,
            started=NOW,
            now=NOW,
        )
    return result


async def count(engine: AsyncEngine, table: object) -> int:
    async with engine.connect() as conn:
        return int((await conn.execute(select(func.count()).select_from(table))).scalar_one())  # type: ignore[arg-type]


BASE = [
    line("bandwidth", "100"),
    line("requests", "5000", unit="unit"),
    line("shield", "10"),
    line("old", "7", status=LineStatus.FINALIZED, month=Month(2024, 5)),
    line("gone", "3"),
]


async def test_first_pull_imports_without_drift_and_repull_adds_nothing(
    engine: AsyncEngine,
) -> None:
    first = await pull(engine, BASE)
    assert first.new_lines == 5
    assert first.changes == []
    assert await count(engine, versions_t) == 5
    again = await pull(engine, list(reversed(BASE)))
    assert again.changes == []
    assert again.versions_added == 0
    assert await count(engine, versions_t) == 5


async def test_every_kind_of_drift(engine: AsyncEngine) -> None:
    await pull(engine, BASE)
    second = [
        line("bandwidth", "150"),  # grew
        line("requests", "4000", unit="unit"),  # decreased
        line("shield", "10", unit="TB"),  # unit changed
        line("old", "8", status=LineStatus.FINALIZED),  # restated
        line("brand-new", "1"),  # new in a tracked month
        line("june", "1", month=JUNE),  # first line of June: an import, not drift
    ]
    result = await pull(engine, second)
    kinds = {c.key.usage_type: c.kind for c in result.changes}
    assert kinds == {
        "bandwidth": ChangeKind.GREW,
        "requests": ChangeKind.DECREASED,
        "shield": ChangeKind.UNIT_CHANGED,
        "old": ChangeKind.RESTATED,
        "brand-new": ChangeKind.NEW,
        "gone": ChangeKind.DISAPPEARED,
    }
    restated = next(c for c in result.changes if c.kind == ChangeKind.RESTATED)
    assert (
        restated.before and restated.before.quantity,
        restated.after and restated.after.quantity,
    ) == (
        Decimal("7"),
        Decimal("8"),
    )
    assert result.versions_added == 5 + 2  # five changed lines, two new ones
    third = await pull(
        engine,
        [*second[:4], line("gone", "3"), line("brand-new", "1"), line("june", "1", month=JUNE)],
    )
    kinds = {c.key.usage_type: c.kind for c in third.changes}
    assert kinds == {"gone": ChangeKind.REAPPEARED}


async def test_finalization_and_reopening(engine: AsyncEngine) -> None:
    await pull(engine, [line("bandwidth", "100")])
    final = await pull(engine, [line("bandwidth", "100.5", status=LineStatus.FINALIZED)])
    assert [c.kind for c in final.changes] == [ChangeKind.FINALIZED]
    assert final.changes[0].after and final.changes[0].after.quantity == Decimal("100.5")
    reopened = await pull(engine, [line("bandwidth", "100.5")])
    assert [c.kind for c in reopened.changes] == [ChangeKind.REOPENED]


async def test_lines_outside_the_coverage_never_disappear(engine: AsyncEngine) -> None:
    await pull(engine, [line("bandwidth", "1"), line("june", "1", month=JUNE)])
    only_june = Coverage(months=(JUNE,), accounts=None)
    result = await pull(engine, [line("june", "1", month=JUNE)], only_june)
    assert result.changes == []


async def test_lines_of_accounts_the_pull_did_not_cover_never_disappear(
    engine: AsyncEngine,
) -> None:
    contract_a = replace(line("bandwidth", "1"), account="ctr-A")
    contract_b = replace(line("bandwidth", "2"), account="ctr-B")
    await pull(engine, [contract_a, contract_b])
    only_a = Coverage(months=(MAY, JUNE), accounts=frozenset({"ctr-A"}))
    assert (await pull(engine, [contract_a], only_a)).changes == []
    # Within its accounts the coverage still counts: A's line missing is a disappearance.
    gone = await pull(engine, [], only_a)
    assert [(c.key.account, c.kind) for c in gone.changes] == [("ctr-A", ChangeKind.DISAPPEARED)]


async def test_exact_quantities_survive_the_sql_compare(engine: AsyncEngine) -> None:
    exact = "12345678901.0123456789"
    await pull(engine, [line("bandwidth", exact)])
    same = await pull(engine, [line("bandwidth", exact + "000")])
    assert same.changes == []
    tiny = await pull(engine, [line("bandwidth", "12345678901.0123456790")])
    assert [c.kind for c in tiny.changes] == [ChangeKind.GREW]
    assert tiny.changes[0].after
    assert tiny.changes[0].after.quantity == Decimal("12345678901.012345679")


@pytest.mark.parametrize(
    ("first", "again"), [("100.5", "100.50"), ("100.50", "100.5"), ("7", "7.000"), ("1E+2", "100")]
)
async def test_the_same_number_written_differently_adds_no_version(
    engine: AsyncEngine, first: str, again: str
) -> None:
    await pull(engine, [line("bandwidth", first)])
    versions = await count(engine, versions_t)
    result = await pull(engine, [line("bandwidth", again)])
    assert (result.versions_added, result.changes) == (0, [])
    assert await count(engine, versions_t) == versions
    async with engine.connect() as conn:
        stored = (await conn.execute(select(lines_t.c.quantity))).scalar_one()
    assert stored == Decimal(first) and str(stored) == canonical_decimal(Decimal(first))


async def test_version_history_is_the_run_of_distinct_consecutive_quantities(
    engine: AsyncEngine,
) -> None:
    rng = random.Random(7)
    # Few distinct values, so that repeats (no new version) and returns to an earlier value
    # (a new version) both occur.
    quantities = [Decimal(rng.randint(0, 3)) / 4 for _ in range(12)]
    recorded = []
    for quantity in quantities:
        result = await pull(engine, [line("bandwidth", str(quantity))])
        recorded += [
            (c.before and c.before.quantity, c.after and c.after.quantity) for c in result.changes
        ]
    async with engine.connect() as conn:
        versions = [
            row.quantity
            for row in (
                await conn.execute(select(versions_t.c.quantity).order_by(versions_t.c.id))
            ).all()
        ]
        current = (await conn.execute(select(lines_t.c.quantity))).scalar_one()
    distinct = [q for i, q in enumerate(quantities) if i == 0 or q != quantities[i - 1]]
    assert len(distinct) < len(quantities)  # the seed really has repeats
    assert versions == distinct
    assert current == quantities[-1]
    # Each change after the import goes from one version to the next.
    assert recorded == list(itertools.pairwise(distinct))


async def test_arrival_order_does_not_change_the_classification(engine: AsyncEngine) -> None:
    await pull(engine, BASE)
    second = [replace(line_, quantity=line_.quantity + 1) for line_ in BASE[:3]] + [BASE[3]]
    rng = random.Random(3)
    shuffled = second[:]
    rng.shuffle(shuffled)
    result = await pull(engine, shuffled)
    assert sorted((c.key.usage_type, c.kind) for c in result.changes) == [
        ("bandwidth", ChangeKind.GREW),
        ("gone", ChangeKind.DISAPPEARED),
        ("requests", ChangeKind.GREW),
        ("shield", ChangeKind.GREW),
    ]
    assert date(2024, 5, 1) == result.changes[0].key.period_start


def test_line_digest_shortcut_matches_the_key() -> None:
    sample = line("bandwidth", "1", service="svc")
    assert sample.digest == sample.key.digest


@pytest.mark.parametrize("as_rows", [False, True], ids=["lines", "rows"])
async def test_staging_refuses_text_longer_than_the_state_keeps(
    engine: AsyncEngine, as_rows: bool
) -> None:
    limit = TEXT_LIMITS["region"]
    fits = replace(line("Europe Bandwidth", "1"), region="R" * limit)
    too_long = replace(line("Asia Bandwidth", "1"), region="R" * (limit + 1))
    run_id = await start_run(engine, source="fastly", provider="fastly", now=NOW)
    stager = Stager(engine, run_id, "fastly")
    try:
        await stager.add(LineRows([line_row(fits)]) if as_rows else [fits])
        page = LineRows([line_row(too_long)]) if as_rows else [too_long]
        message = f"region has {limit + 1} characters, longer than the {limit} "
        with pytest.raises(BadProviderDataError, match=message):
            await stager.add(page)
        assert stager.lines == 1  # the page refused was not staged
    finally:
        await stager.close()


async def test_every_field_of_a_staged_line_is_stored_exactly(engine: AsyncEngine) -> None:
    """Whichever way staging writes a page (SQLite's insert, PostgreSQL's COPY), the tracked
    line holds the very values the provider gave."""
    updated = datetime(2024, 6, 9, 23, 59, 58, 123456, tzinfo=UTC)
    exact = replace(
        line("Europe Bandwidth", "123456789012345678901234567890.000000000000000000000000000001"),
        raw_quantity=None,
        billable=False,
        updated_at=updated,
        period_end=date(2024, 5, 20),
        service="svc-1",
        service_name="www.example.com",
    )
    plain = replace(line("Asia Bandwidth", "0.5"), billable=True)
    may_period = (MAY.first_day, MAY.last_day)
    await pull(engine, [exact, plain])
    async with engine.connect() as conn:
        rows = (await conn.execute(select(lines_t).order_by(lines_t.c.usage_type))).all()
    got = [
        (
            r.usage_type,
            Decimal(r.quantity),
            None if r.raw_quantity is None else Decimal(r.raw_quantity),
            r.billable,
            r.provider_updated_at,
            r.period_start,
            r.period_end,
            r.service,
            r.service_name,
        )
        for r in rows
    ]
    huge = Decimal("123456789012345678901234567890.000000000000000000000000000001")
    assert got == [
        ("Asia Bandwidth", Decimal("0.5"), Decimal("500.0"), True, None, *may_period, "", ""),
        (
            "Europe Bandwidth",
            huge,
            None,
            False,
            updated,
            MAY.first_day,
            date(2024, 5, 20),
            "svc-1",
            "www.example.com",
        ),
    ]
