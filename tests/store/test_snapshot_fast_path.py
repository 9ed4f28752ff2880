"""A re-pull recognized by its snapshot digest gives the state the full comparison gives.

Every pull here runs twice on one database, under two sources: one where apply_staged gets
the staged rows' hash (and may skip the comparison), one where it never does. Their states,
results and run records must agree after every pull.
"""

from __future__ import annotations

import itertools
from dataclasses import dataclass, field
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncEngine

from reconciler.domain import LineStatus, Month, Provider, UsageLine
from reconciler.providers.base import Coverage, PullStats
from reconciler.store.ingest import IngestResult, apply_staged, changes_t, lines_t, versions_t
from reconciler.store.runs import finish_run, start_run
from reconciler.store.staging import Stager
from reconciler.store.tables import PullRun

runs_t = PullRun.__table__  # type: ignore[attr-defined]
NOW = datetime(2024, 6, 10, tzinfo=UTC)
MAY, JUNE = Month(2024, 5), Month(2024, 6)
STATUSES = (LineStatus.COLLECTING, LineStatus.FINALIZED)
_sources = itertools.count()


@dataclass(frozen=True)
class Snapshot:
    lines: tuple[UsageLine, ...]
    months: tuple[Month, ...] = (MAY, JUNE)
    derived: bool = False

    @property
    def coverage(self) -> Coverage:
        return Coverage(months=self.months, accounts=None, derived_statuses=self.derived)

    def pulled(self) -> list[UsageLine]:
        return [line for line in self.lines if line.month in self.months]


def usage(source: str, usage_type: str, quantity: str, month: Month, status: LineStatus) -> Any:
    return UsageLine(
        source=source,
        provider=Provider.FASTLY,
        account="",
        product="cdn_usage",
        product_name="cdn_usage",
        usage_type=usage_type,
        region="Europe",
        service="",
        month=month,
        period_start=month.first_day,
        period_end=month.last_day,
        quantity=Decimal(quantity),
        raw_quantity=None,
        unit="GB",
        billable=None,
        status=status,
    )


@dataclass
class Side:
    """One source's pulls, with or without the snapshot digest."""

    source: str
    digest: bool
    run_ids: list[int] = field(default_factory=list)
    compared: int = 0  # pulls that ran the full comparison
    packed: list[int] = field(default_factory=list)  # each pull's pages kept packed


async def pull(
    engine: AsyncEngine, side: Side, snapshot: Snapshot, page: int, *, finish: bool = True
) -> IngestResult:
    """One pull of ``snapshot``; ``finish`` false: its writes commit, its run stays running."""
    lines = [_as_source(line, side.source) for line in snapshot.pulled()]
    run_id = await start_run(engine, source=side.source, provider="fastly", now=NOW)
    side.run_ids.append(run_id)
    stager = Stager(engine, run_id, side.source)
    for start in range(0, len(lines), page):
        await stager.add(lines[start : start + page])

    side.packed.append(stager.packed_pages)
    # The digest's side also keeps pages packed while they match the last run's, and
    # stages them only when it compares, as a pull does.
    async with stager.transaction(packed=side.digest) as conn:
        result = await apply_staged(
            conn,
            run_id=run_id,
            source=side.source,
            coverage=snapshot.coverage,
            now=NOW,
            severities={},
            snapshot=stager.snapshot.digest() if side.digest else None,
            unpack=stager.unpack if side.digest else None,
        )
        side.compared += result.compared
        if not finish:
            return result
        await finish_run(
            conn,
            run_id,
            stats=PullStats(),
            coverage=snapshot.coverage,
            versions_added=result.versions_added,
            changes=len(result.changes),
            findings=0,
            started=NOW,
            now=NOW,
            snapshot_digest=result.snapshot_digest,
            page_digests=stager.page_digests_text if side.digest else None,
        )
    return result


def _packs(engine: AsyncEngine) -> bool:
    """Whether the stager keeps matching pages packed (SQLite's temp-table staging)."""
    return engine.dialect.name == "sqlite"


def _as_source(line: UsageLine, source: str) -> UsageLine:
    from dataclasses import replace

    return replace(line, source=source)


def outcome(result: IngestResult) -> Any:
    return (
        result.new_lines,
        result.versions_added,
        sorted(
            (c.kind.value, c.key.usage_type, str(c.key.month), c.before, c.after, c.returned)
            for c in result.changes
        ),
    )


async def state(engine: AsyncEngine, side: Side) -> Any:
    """The source's tracked lines, versions, changes and run records, with run ids as the
    pull's position and without what names the source."""
    runs = {run_id: n for n, run_id in enumerate(side.run_ids)}
    async with engine.connect() as conn:
        lines = (await conn.execute(select(lines_t).where(lines_t.c.source == side.source))).all()
        ids = {row.id: (row.usage_type, row.month) for row in lines}
        tracked = sorted(
            (
                row.usage_type,
                row.month,
                row.quantity,
                row.status,
                row.present,
                row.versions,
                runs[row.first_run_id],
                runs[row.last_run_id],
            )
            for row in lines
        )
        versions = (
            await conn.execute(select(versions_t).where(versions_t.c.line_id.in_(list(ids))))
        ).all()
        history = sorted(
            (ids[v.line_id], runs[v.run_id], v.quantity, v.status, v.present) for v in versions
        )
        changes = (
            await conn.execute(select(changes_t).where(changes_t.c.run_id.in_(list(runs))))
        ).all()
        changed = sorted(
            (runs[c.run_id], ids[c.line_id], c.kind, c.before_quantity, c.after_quantity)
            for c in changes
        )
        recorded = (
            await conn.execute(
                select(runs_t.c.status, runs_t.c.versions_added, runs_t.c.changes_count)
                .where(runs_t.c.source == side.source)
                .order_by(runs_t.c.id)
            )
        ).all()
    counts = [(r.status, r.versions_added, r.changes_count) for r in recorded]
    return tracked, history, changed, counts


STEPS = ("same", "reorder", "quantity", "status", "missing", "added", "derived", "months")


def next_snapshot(previous: Snapshot, step: str, pick: int) -> Snapshot:
    lines = list(previous.lines)
    at = pick % len(lines) if lines else 0
    if step == "reorder":
        lines = lines[at:] + lines[:at] if at else list(reversed(lines))
    elif step == "quantity" and lines:
        old = lines[at]
        lines[at] = _with(old, quantity=old.quantity + Decimal(1 + pick % 9))
    elif step == "status" and lines:
        old = lines[at]
        other = STATUSES[1 - STATUSES.index(old.status)]
        lines[at] = _with(old, status=other)
    elif step == "missing" and lines:
        del lines[at]
    elif step == "added":
        month = (MAY, JUNE)[pick % 2]
        name = f"extra{len(lines)}-{pick}"
        if all((line.usage_type, line.month) != (name, month) for line in lines):
            lines.append(usage("x", name, str(pick % 50), month, STATUSES[pick % 2]))
    elif step == "derived":
        return Snapshot(tuple(lines), previous.months, not previous.derived)
    elif step == "months":
        months = (MAY,) if previous.months == (MAY, JUNE) else (MAY, JUNE)
        return Snapshot(tuple(lines), months, previous.derived)
    return Snapshot(tuple(lines), previous.months, previous.derived)


def _with(line: UsageLine, **values: Any) -> UsageLine:
    from dataclasses import replace

    return replace(line, **values)


base_lines = st.lists(
    st.tuples(
        st.sampled_from("abcdef"),
        st.integers(0, 999),
        st.sampled_from((MAY, JUNE)),
        st.sampled_from(STATUSES),
    ),
    min_size=0,
    max_size=6,
    unique_by=lambda t: (t[0], t[2]),
)


@settings(
    max_examples=30,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture],
)
@given(
    base=base_lines,
    derived=st.booleans(),
    steps=st.lists(
        st.tuples(st.sampled_from(STEPS), st.integers(0, 100), st.booleans()),
        min_size=1,
        max_size=5,
    ),
    page=st.integers(1, 4),
)
async def test_fast_and_full_comparison_give_the_same_state(
    engine: AsyncEngine,
    base: list[tuple[str, int, Month, LineStatus]],
    derived: bool,
    steps: list[tuple[str, int, bool]],
    page: int,
) -> None:
    n = next(_sources)
    fast, full = Side(f"fast{n}", digest=True), Side(f"full{n}", digest=False)
    snapshot = Snapshot(tuple(usage("x", u, str(q), m, s) for u, q, m, s in base), derived=derived)
    plan = [snapshot]
    for step, pick, again in steps:
        plan.append(next_snapshot(plan[-1], step, pick))
        if again:  # the same snapshot once more: where the digest may skip the comparison
            plan.append(plan[-1])
    for snap in plan:
        got = await pull(engine, fast, snap, page)
        expected = await pull(engine, full, snap, page)
        assert outcome(got) == outcome(expected)
        assert await state(engine, fast) == await state(engine, full)


async def test_an_identical_repull_skips_the_comparison_and_a_changed_one_does_not(
    engine: AsyncEngine,
) -> None:
    side = Side("fastly", digest=True)
    snap = Snapshot(
        (
            usage("x", "bandwidth", "100.5", MAY, LineStatus.FINALIZED),
            usage("x", "requests", "7", JUNE, LineStatus.COLLECTING),
        )
    )
    first = await pull(engine, side, snap, 1)
    assert first.new_lines == 2 and first.snapshot_digest is not None
    assert side.compared == 1
    again = await pull(engine, side, snap, 1)
    assert (again.new_lines, again.versions_added, again.changes) == (0, 0, [])
    assert again.snapshot_digest == first.snapshot_digest
    assert side.compared == 1
    # On SQLite the re-pull staged no line: both its pages stayed packed.
    assert side.packed == ([0, 2] if _packs(engine) else [0, 0])
    changed = next_snapshot(snap, "quantity", 0)  # one quantity, one digit more
    result = await pull(engine, side, changed, 1)
    assert [c.kind.value for c in result.changes] == ["restated"]
    assert side.compared == 2
    assert side.packed[-1] == 0  # its first page differs: every page staged as lines
    assert [c.kind.value for c in (await pull(engine, side, snap, 1)).changes] == ["restated"]
    assert side.compared == 3
    reordered = next_snapshot(snap, "reorder", 0)
    await pull(engine, side, reordered, 1)
    assert side.compared == 4
    await pull(engine, side, reordered, 1)
    assert side.compared == 4
    await pull(engine, side, Snapshot(reordered.lines, derived=True), 1)  # other coverage
    assert side.compared == 5
    # The same rows in other pages: not recognized (the hash is of the pages as they came).
    await pull(engine, side, Snapshot(reordered.lines, derived=True), 2)
    assert side.compared == 6


async def test_lines_written_by_a_later_run_of_the_source_are_compared_again(
    engine: AsyncEngine,
) -> None:
    """The digest matches the last succeeded run's, but a later run of the source (never
    recorded as succeeded) wrote a line since: the state is not that run's snapshot."""
    side = Side("fastly", digest=True)
    snap = Snapshot((usage("x", "bandwidth", "100.5", MAY, LineStatus.COLLECTING),))
    await pull(engine, side, snap, 1)
    await pull(engine, side, next_snapshot(snap, "quantity", 0), 1, finish=False)
    assert side.compared == 2
    again = await pull(engine, side, snap, 1)
    assert side.compared == 3
    # Its page matched the last succeeded run's (kept packed on SQLite): unpacked to compare.
    assert side.packed[-1] == (1 if _packs(engine) else 0)
    assert [(c.kind.value, c.after.quantity if c.after else None) for c in again.changes] == [
        ("decreased", Decimal("100.5"))
    ]


async def test_a_repull_whose_later_page_differs_compares_every_line(
    engine: AsyncEngine,
) -> None:
    """Pages kept packed until one differs are staged as lines with the rest: the changed
    line and the unchanged ones before it are all compared."""
    side, full = Side("fastly", digest=True), Side("full", digest=False)
    lines = tuple(usage("x", f"type{n}", str(n), MAY, LineStatus.COLLECTING) for n in range(5))
    snap = Snapshot(lines)
    for pulled in (
        snap,
        snap,
        next_snapshot(snap, "quantity", 4),
        next_snapshot(snap, "missing", 4),
    ):
        got = await pull(engine, side, pulled, 2)
        assert outcome(got) == outcome(await pull(engine, full, pulled, 2))
    # SQLite keeps pages packed while they match: the second pull all three; the third's last
    # page differed, so the two before it were staged as lines with it; the fourth's two pages
    # match the third's, but a line fewer is another snapshot: unpacked to be compared.
    assert side.packed == ([0, 3, 0, 2] if _packs(engine) else [0, 0, 0, 0])
    assert await state(engine, side) == await state(engine, full)
