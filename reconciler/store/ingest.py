"""Applying a staged pull to the tracked state in one transaction, set-based.

One pass of SQL over the staged snapshot joined to ``usage_lines`` counts the new, differing
and matched lines and lists the differing ones; Python classifies only those with the pure
rules of :mod:`reconciler.reconcile.diff`, and the writes go back in bulk. Unchanged lines cost
that one indexed join and nothing else (no rewrite, no version row); a source's first pull
inserts its snapshot without any join.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from datetime import date, datetime
from decimal import Decimal
from typing import Any

from sqlalchemy import (
    Row,
    Table,
    Text,
    and_,
    bindparam,
    case,
    cast,
    delete,
    exists,
    false,
    func,
    insert,
    literal,
    or_,
    select,
    text,
    true,
    update,
)
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from reconciler.domain import (
    REPORTING_GROUP_PREFIX,
    ChangeKind,
    LineKey,
    LineStatus,
    Month,
    Observation,
    Severity,
    quantity_delta,
    quantity_percent,
    reporting_group_service,
)
from reconciler.errors import BadProviderDataError
from reconciler.providers.base import Coverage, CoverageScope
from reconciler.reconcile.diff import QUIET_KINDS, Tracked, classify, severity_of
from reconciler.settings import DEFAULT_FINALIZE_TOLERANCE, Tolerance
from reconciler.store.redating import rekey_redated
from reconciler.store.slices import WRITE_SLICE_ROWS, execute_in_slices, result_rows, yielding
from reconciler.store.snapshot import run_digest, unchanged_since_last_run
from reconciler.store.staging import (
    DUPLICATE_LINE,
    STAGING_COLUMNS,
    index_for_comparison,
    staging_t,
    staging_table,
)
from reconciler.store.statuses import finalized_months, kept_status
from reconciler.store.tables import ChangeRow, LineVersion, UsageLineRow

lines_t = UsageLineRow.__table__  # type: ignore[attr-defined]
versions_t = LineVersion.__table__  # type: ignore[attr-defined]
changes_t = ChangeRow.__table__  # type: ignore[attr-defined]

KEY_COLUMNS = ("source", "account", "product", "usage_type", "region", "service", "month")
# Every staged column but the run id is copied into the tracked line.
COPIED_COLUMNS = STAGING_COLUMNS[1:]
_CHUNK = 500
# Differing lines are read by their staged ids when they are fewer than this share of the
# snapshot; beyond it one more join over the whole snapshot is cheaper.
_BY_ID_SHARE = 4


@dataclass(frozen=True, slots=True)
class LineChange:
    """One classified change of one tracked line in this run."""

    line_id: int
    kind: ChangeKind
    severity: Severity
    key: LineKey
    provider: str
    product_name: str
    before: Observation | None
    after: Observation | None
    returned: bool = False  # the line was absent before this pull
    redated: tuple[date, date] | None = None  # the period's dates before the provider's re-dating

    @property
    def reviewable(self) -> bool:
        return self.kind not in QUIET_KINDS

    @property
    def delta(self) -> Decimal | None:
        return quantity_delta(self.before, self.after)

    @property
    def percent(self) -> Decimal | None:
        return quantity_percent(self.before, self.after)


@dataclass
class IngestResult:
    new_lines: int = 0
    versions_added: int = 0
    changes: list[LineChange] = field(default_factory=list)
    updated_ids: list[int] = field(default_factory=list)  # present lines rewritten (not new)
    # What the run compared, as the state stands after it (see reconciler.store.snapshot).
    snapshot_digest: str | None = None
    compared: bool = True  # false: the snapshot was the last run's, not compared line by line
    first_pull: bool = False  # the source tracked no line before: every line is new

    def counts(self) -> dict[str, int]:
        counts: dict[str, int] = {}
        for change in self.changes:
            counts[change.kind.value] = counts.get(change.kind.value, 0) + 1
        return counts


def _key_of(row: Any) -> LineKey:
    return LineKey(
        row.source,
        row.account,
        row.product,
        row.usage_type,
        row.region,
        row.service,
        Month.parse(row.month),
        _as_date(row.period_start),
    )


def _as_date(value: date | str) -> date:
    return value if isinstance(value, date) else date.fromisoformat(value)


def _coverage_filter(table: Any, source: str, coverage: Coverage) -> Any:
    condition = and_(table.c.source == source, table.c.month.in_([str(m) for m in coverage.months]))
    if coverage.accounts is not None:
        condition = and_(condition, table.c.account.in_(sorted(coverage.accounts)))
    if coverage.products is not None:
        condition = and_(condition, table.c.product.in_(sorted(coverage.products)))
    if coverage.scopes is not None:
        matching = [_scope_condition(table, scope) for scope in coverage.scopes]
        condition = and_(condition, or_(false(), *matching))
    return condition


def _scope_condition(table: Any, scope: CoverageScope) -> Any:
    fields = scope.as_dict()
    group = fields.pop("reporting_group", None)
    condition = and_(true(), *[table.c[name] == value for name, value in fields.items()])
    if group == "":
        prefix = table.c.service.startswith(REPORTING_GROUP_PREFIX, autoescape=True)
        condition = and_(condition, ~prefix)
    elif group is not None:
        condition = and_(condition, table.c.service == reporting_group_service(group))
    return condition


async def apply_staged(
    conn: AsyncConnection,
    *,
    run_id: int,
    source: str,
    coverage: Coverage,
    now: datetime,
    severities: Mapping[ChangeKind, Severity],
    finalize_tolerance: Tolerance = DEFAULT_FINALIZE_TOLERANCE,
    snapshot: bytes | None = None,
    unpack: Callable[[AsyncConnection], Awaitable[None]] | None = None,
) -> IngestResult:
    """Compare the run's staged snapshot with the tracked state and write what changed.

    ``snapshot`` is the running hash of the staged rows (see :mod:`reconciler.store.snapshot`):
    a re-pull identical to the last one, onto a state nothing wrote since, changes nothing
    and is not compared line by line (``compared`` false in the result). ``unpack`` stages
    the pages the stager kept packed (:meth:`reconciler.store.staging.Stager.unpack`): called
    before anything reads the staged lines, which the skipped comparison never does. Must
    run inside the caller's transaction, which also records findings and alerts.
    """
    result = IngestResult()
    staged = staging_table(conn.dialect.name)
    first_pull = result.first_pull = not await _tracks_source(conn, source)
    finalized = await finalized_months(conn, source=source, coverage=coverage)
    source_lines = 0 if first_pull else await month_line_count(conn, source)
    if snapshot is not None and not first_pull:
        digest = run_digest(snapshot, coverage, finalized, source_lines)
        if await unchanged_since_last_run(conn, source, digest):
            result.snapshot_digest = digest
            result.compared = False
            await _drop_staged(conn, staged, run_id)
            return result
    if unpack is not None:
        await unpack(conn)
    if not first_pull:  # a first pull's insert meets the unique key index instead
        await index_for_comparison(conn, staged)
        await _refuse_duplicates(conn, staged, run_id, source)
    status = kept_status(staged, finalized)
    tracked_months = await _tracked_months(conn, source, coverage)
    shape = (
        SnapshotShape(new=1, differing=0, vanished=0, differing_ids=())
        if first_pull
        else await _snapshot_shape(conn, staged, status, run_id, source, coverage)
    )
    redated: dict[int, tuple[date, date]] = {}
    if shape.vanished:
        redated = await rekey_redated(
            conn,
            staged,
            run_id=run_id,
            not_returned=and_(
                _coverage_filter(lines_t, source, coverage),
                lines_t.c.present.is_(True),
                _not_staged(conn.dialect.name, staged, run_id),
            ),
        )

    # 1. Tracked lines whose values differ from the staged ones (or that come back).
    differing = select(
        lines_t.c.id,
        lines_t.c.quantity.label("old_quantity"),
        lines_t.c.unit.label("old_unit"),
        lines_t.c.status.label("old_status"),
        lines_t.c.present.label("old_present"),
        *[status.label(name) if name == "status" else staged.c[name] for name in COPIED_COLUMNS],
    ).select_from(staged.join(lines_t, lines_t.c.key_hash == staged.c.key_hash))
    differing = differing.where(staged.c.run_id == run_id)
    # Written a slice at a time: a pull's changed lines never sit in memory as rows at once.
    writes = _SliceWrites(conn, run_id, now)
    async for row in _differing_rows(conn, differing, staged, status, shape, bool(redated)):
        before = Tracked(
            Observation(row.old_quantity, row.old_unit, LineStatus(row.old_status)),
            bool(row.old_present),
        )
        after = Observation(row.quantity, row.unit, LineStatus(row.status))
        kind = classify(before, after, finalize_tolerance=finalize_tolerance)
        values = {name: row._mapping[name] for name in COPIED_COLUMNS if name != "key_hash"}
        result.updated_ids.append(row.id)
        if kind is not None:
            change = _change(row.id, kind, severities, row, before.observation, after)
            returned = not before.present
            change = replace(change, returned=returned, redated=redated.get(row.id))
            result.changes.append(change)
            writes.changes.append(_change_row(run_id, change, now))
        await writes.line(row.id, values, present=True)

    # 2. Tracked, present lines of the covered months that this complete pull did not return.
    vanished = select(lines_t).where(
        _coverage_filter(lines_t, source, coverage),
        lines_t.c.present.is_(True),
        _not_staged(conn.dialect.name, staged, run_id),
    )
    if shape.vanished:
        # Read whole before any is written: the written ones stop matching the query.
        not_returned = await conn.execute(vanished)
    else:
        not_returned = None
    async for row in result_rows(not_returned):
        last_seen = Observation(row.quantity, row.unit, LineStatus(row.status))
        gone = classify(Tracked(last_seen, True), None) or ChangeKind.DISAPPEARED
        change = _change(row.id, gone, severities, row, last_seen, None)
        result.changes.append(change)
        writes.changes.append(_change_row(run_id, change, now))
        values = {name: row._mapping[name] for name in COPIED_COLUMNS if name != "key_hash"}
        await writes.line(row.id, values, present=False)
    await writes.flush()

    # 3. Lines never seen before: inserted set-based, with their first version.
    if shape.vanished or shape.new:
        try:
            result.new_lines = await _insert_new_lines(
                conn, staged, status, run_id, known_possible=not first_pull
            )
        except IntegrityError as exc:
            if not first_pull or "key_hash" not in str(exc.orig):
                raise
            raise BadProviderDataError(source, "pull", DUPLICATE_LINE) from None
    if result.new_lines:
        await conn.execute(
            insert(versions_t).from_select(
                [
                    "line_id",
                    "run_id",
                    "quantity",
                    "raw_quantity",
                    "unit",
                    "status",
                    "billable",
                    "period_end",
                    "present",
                    "recorded_at",
                ],
                select(
                    lines_t.c.id,
                    literal(run_id),
                    lines_t.c.quantity,
                    lines_t.c.raw_quantity,
                    lines_t.c.unit,
                    lines_t.c.status,
                    lines_t.c.billable,
                    lines_t.c.period_end,
                    lines_t.c.present,
                    literal(now, versions_t.c.recorded_at.type),
                ).where(lines_t.c.first_run_id == run_id),
            )
        )
        if tracked_months:
            new_in_tracked = select(lines_t).where(
                lines_t.c.first_run_id == run_id,
                lines_t.c.month.in_(sorted(tracked_months)),
            )
            async for row in result_rows(await conn.execute(new_in_tracked)):
                after = Observation(row.quantity, row.unit, LineStatus(row.status))
                change = _change(row.id, ChangeKind.NEW, severities, row, None, after)
                result.changes.append(change)
                writes.changes.append(_change_row(run_id, change, now))
                await writes.flush_full()

    result.versions_added = writes.versions_added + result.new_lines
    await writes.flush()  # the new lines' changes
    if snapshot is not None:
        lines_after = source_lines + result.new_lines
        kept = await _finalized_after(conn, staged, run_id, source, coverage, finalized)
        result.snapshot_digest = run_digest(snapshot, coverage, kept, lines_after)
    await _drop_staged(conn, staged, run_id)
    return result


async def _finalized_after(
    conn: AsyncConnection,
    staged: Table,
    run_id: int,
    source: str,
    coverage: Coverage,
    before: tuple[str, ...],
) -> tuple[str, ...]:
    """The finalized months a re-pull of this snapshot will see, if they keep every staged
    status as this run wrote it (no collecting line staged in a month finalized only now);
    else the months this run saw, which never match a re-pull's (it compares in full)."""
    after = await finalized_months(conn, source=source, coverage=coverage)
    if not set(before) <= set(after):
        return before
    newly = sorted(set(after) - set(before))
    if not newly:
        return after
    collecting = select(staged.c.id).where(
        staged.c.run_id == run_id,
        staged.c.status == LineStatus.COLLECTING.value,
        staged.c.month.in_(newly),
    )
    if (await conn.execute(collecting.limit(1))).first() is not None:
        return before
    return after


async def _drop_staged(conn: AsyncConnection, staged: Table, run_id: int) -> None:
    if staged is staging_t:  # a temp table goes with its connection
        await conn.execute(delete(staging_t).where(staging_t.c.run_id == run_id))


class _SliceWrites:
    """The rewritten lines, their version rows and the change rows of one reconcile, sent to
    the database a slice at a time instead of kept until the end."""

    def __init__(self, conn: AsyncConnection, run_id: int, now: datetime) -> None:
        self.conn = conn
        self.run_id = run_id
        self.now = now
        self.updates: list[dict[str, Any]] = []
        self.versions: list[dict[str, Any]] = []
        self.changes: list[dict[str, Any]] = []
        self.versions_added = 0

    async def line(self, line_id: int, values: Mapping[str, Any], *, present: bool) -> None:
        """Rewrite tracked line ``line_id`` with ``values`` and record them as a version."""
        self.updates.append(
            {"b_id": line_id, **values, "present": present, "last_run_id": self.run_id}
        )
        self.versions.append(_version(line_id, self.run_id, self.now, values, present=present))
        self.versions_added += 1
        await self.flush_full()

    async def flush_full(self) -> None:
        if max(len(self.updates), len(self.changes)) >= WRITE_SLICE_ROWS:
            await self.flush()

    async def flush(self) -> None:
        if self.updates:
            await execute_in_slices(self.conn, _REWRITE_LINE, self.updates)
            await execute_in_slices(self.conn, insert(versions_t), self.versions)
            self.updates, self.versions = [], []
        if self.changes:
            await execute_in_slices(self.conn, insert(changes_t), self.changes)
            self.changes = []
        await asyncio.sleep(0)


_REWRITE_LINE = (
    update(lines_t)
    .where(lines_t.c.id == bindparam("b_id"))
    .values(
        {
            **{name: bindparam(name) for name in COPIED_COLUMNS if name != "key_hash"},
            "present": bindparam("present"),
            "last_run_id": bindparam("last_run_id"),
            "versions": lines_t.c.versions + 1,
        }
    )
)


def _differs(staged: Table, status: Any) -> Any:
    """A staged line whose values differ from its tracked line's (or that comes back);
    ``status`` is the staged status as the store keeps it (see :func:`staged_status`)."""
    return (
        (lines_t.c.present.is_(False))
        | (lines_t.c.quantity != staged.c.quantity)
        | (lines_t.c.unit != staged.c.unit)
        | (lines_t.c.status != status)
        # Recorded as a version even when no rule calls it a change: never left stale.
        | lines_t.c.raw_quantity.is_distinct_from(staged.c.raw_quantity)
        | lines_t.c.billable.is_distinct_from(staged.c.billable)
        # A period the provider re-dated (see store.redating): its new dates are a version.
        | (lines_t.c.period_start != staged.c.period_start)
        | (lines_t.c.period_end != staged.c.period_end)
    )


@dataclass(frozen=True, slots=True)
class SnapshotShape:
    """What one pass over the staged snapshot found, before anything is written."""

    new: int  # staged lines with no tracked line
    differing: int  # staged lines whose tracked line differs (or is absent)
    vanished: int  # tracked present lines of the coverage that were not staged
    differing_ids: Sequence[int]  # the staged ids of the differing lines
    lines: int = 0  # staged lines


async def _snapshot_shape(
    conn: AsyncConnection, staged: Table, status: Any, run_id: int, source: str, coverage: Coverage
) -> SnapshotShape:
    """One join of the staged lines with the tracked ones, counted, the differing lines'
    staged ids listed (nothing else is fetched).

    The tracked present lines of the coverage that the join matched, against all of them,
    tell whether any vanished; where none did, the diff skips its vanished-lines and
    re-dating queries; the differing lines are then read by their ids alone.
    """
    joined = staged.outerjoin(lines_t, lines_t.c.key_hash == staged.c.key_hash)
    tracked = lines_t.c.id.is_not(None)
    covered = and_(tracked, _coverage_filter(lines_t, source, coverage))
    present = and_(covered, lines_t.c.present.is_(True))
    differs = and_(tracked, _differs(staged, status))

    def count(condition: Any) -> Any:
        return func.coalesce(func.sum(case((condition, 1), else_=0)), 0)

    differing_id = case((differs, cast(staged.c.id, Text)))
    if conn.dialect.name == "postgresql":
        id_list = func.string_agg(differing_id, literal(","))
    else:
        id_list = func.group_concat(differing_id, literal(","))
    lines, new, differing, matched, matched_present, ids = (
        await conn.execute(
            select(
                func.count(),
                count(~tracked),
                count(differs),
                count(covered),
                count(present),
                id_list,
            )
            .select_from(joined)
            .where(staged.c.run_id == run_id)
        )
    ).one()
    # Every tracked line of the coverage matched (a count the (source, month) index answers
    # alone): none vanished. Otherwise count the present ones, which reads every line.
    in_coverage = select(func.count()).where(_coverage_filter(lines_t, source, coverage))
    vanished = int((await conn.execute(in_coverage)).scalar_one()) - int(matched)
    if vanished:
        present_lines = in_coverage.where(lines_t.c.present.is_(True))
        vanished = int((await conn.execute(present_lines)).scalar_one()) - int(matched_present)
    return SnapshotShape(
        new=int(new),
        differing=int(differing),
        vanished=vanished,
        differing_ids=[int(i) for i in ids.split(",")] if ids else [],
        lines=int(lines),
    )


async def _differing_rows(
    conn: AsyncConnection,
    query: Any,
    staged: Table,
    status: Any,
    shape: SnapshotShape,
    redated: bool,
) -> AsyncIterator[Row[Any]]:
    """The rows of ``query`` (staged lines joined to their tracked lines) that differ:
    read by the ids the shape listed; after a re-dating (the shape's ids are stale) or when
    most lines differ, by one more join over the snapshot."""
    if redated or len(shape.differing_ids) * _BY_ID_SHARE > max(shape.lines, 1_000):
        if not (redated or shape.differing):
            return
        # In slices by staged id: each slice is read whole before its lines are written.
        after = 0
        while True:
            page = (
                query.add_columns(staged.c.id.label("staged_id"))
                .where(_differs(staged, status), staged.c.id > after)
                .order_by(staged.c.id)
                .limit(WRITE_SLICE_ROWS)
            )
            rows = (await conn.execute(page)).all()
            async for row in yielding(rows):
                yield row
            if len(rows) < WRITE_SLICE_ROWS:
                return
            after = rows[-1].staged_id
    ids = sorted(shape.differing_ids)
    for start in range(0, len(ids), _CHUNK):
        chunk = query.where(staged.c.id.in_(ids[start : start + _CHUNK]))
        async for row in result_rows(await conn.execute(chunk)):
            yield row


async def refresh_statistics(engine: AsyncEngine) -> None:
    """Give PostgreSQL's planner current statistics of the tables the comparison joins.

    Without them (a first big pull, before autovacuum has analyzed the tables) the planner
    takes the run's staged rows for a handful and plans the vanished-lines anti-join as a
    nested loop: a re-pull of 100k lines took many minutes instead of seconds. ANALYZE
    samples a fixed number of rows, so it costs well under a second at any size; it runs in
    its own short transaction, before the reconcile transaction takes its locks.
    """
    if engine.dialect.name != "postgresql":
        return
    async with engine.begin() as conn:
        await conn.execute(text("ANALYZE staging_lines, usage_lines"))


def _not_staged(dialect: str, staged: Table, run_id: int) -> Any:
    """'This tracked line is not in the run's staged snapshot', planned well on each backend:
    SQLite materializes a NOT IN list once, PostgreSQL turns NOT EXISTS into a hash
    anti-join."""
    if dialect == "sqlite":
        keys = select(staged.c.key_hash).where(staged.c.run_id == run_id)
        return lines_t.c.key_hash.not_in(keys)
    return ~exists().where(staged.c.run_id == run_id, staged.c.key_hash == lines_t.c.key_hash)


async def _refuse_duplicates(
    conn: AsyncConnection, staged: Table, run_id: int, source: str
) -> None:
    duplicate = (
        await conn.execute(
            select(staged.c.key_hash)
            .where(staged.c.run_id == run_id)
            .group_by(staged.c.key_hash)
            .having(func.count() > 1)
            .limit(1)
        )
    ).first()
    if duplicate is not None:
        raise BadProviderDataError(source, "pull", DUPLICATE_LINE)


async def _tracked_months(conn: AsyncConnection, source: str, coverage: Coverage) -> set[str]:
    query = (
        select(lines_t.c.month)
        .where(_coverage_filter(lines_t, source, coverage))
        .group_by(lines_t.c.month)
    )
    return {row.month for row in (await conn.execute(query)).all()}


async def _tracks_source(conn: AsyncConnection, source: str) -> bool:
    """Whether any line of ``source`` is tracked (else no staged line can match one)."""
    query = select(lines_t.c.id).where(lines_t.c.source == source).limit(1)
    return (await conn.execute(query)).first() is not None


async def _insert_new_lines(
    conn: AsyncConnection, staged: Table, status: Any, run_id: int, *, known_possible: bool
) -> int:
    """Insert the staged lines no tracked line has (``known_possible`` false: the source
    tracks none, so every staged line is new and none is probed)."""
    columns = [*COPIED_COLUMNS, "present", "versions", "first_run_id", "last_run_id"]
    source_query = select(
        *[status.label(name) if name == "status" else staged.c[name] for name in COPIED_COLUMNS],
        literal(True),
        literal(1),
        literal(run_id),
        literal(run_id),
    ).where(staged.c.run_id == run_id)
    if known_possible:
        source_query = source_query.where(~exists().where(lines_t.c.key_hash == staged.c.key_hash))
    # In key order: the unique key index then grows at its end instead of at random places.
    source_query = source_query.order_by(staged.c.key_hash)
    inserted = await conn.execute(insert(lines_t).from_select(columns, source_query))
    return max(int(inserted.rowcount or 0), 0)


def _version(
    line_id: int, run_id: int, now: datetime, values: Mapping[str, Any], *, present: bool
) -> dict[str, Any]:
    return {
        "line_id": line_id,
        "run_id": run_id,
        "quantity": values["quantity"],
        "raw_quantity": values["raw_quantity"],
        "unit": values["unit"],
        "status": values["status"],
        "billable": values["billable"],
        "period_end": values["period_end"],
        "present": present,
        "recorded_at": now,
    }


def _change(
    line_id: int,
    kind: ChangeKind,
    severities: Mapping[ChangeKind, Severity],
    row: Any,
    before: Observation | None,
    after: Observation | None,
) -> LineChange:
    return LineChange(
        line_id=line_id,
        kind=kind,
        severity=severity_of(kind, severities),
        key=_key_of(row),
        provider=row.provider,
        product_name=row.product_name,
        before=before,
        after=after,
    )


def change_fingerprint(kind: ChangeKind | str, key: LineKey) -> str:
    from reconciler.domain import line_digest

    return line_digest(("drift", str(kind), *key.parts()))


def _change_row(run_id: int, change: LineChange, now: datetime) -> dict[str, Any]:
    before, after = change.before, change.after
    return {
        "run_id": run_id,
        "line_id": change.line_id,
        "kind": change.kind.value,
        "severity": change.severity.value,
        "fingerprint": change_fingerprint(change.kind, change.key),
        "before_quantity": before.quantity if before else None,
        "before_unit": before.unit if before else None,
        "before_status": before.status.value if before else None,
        "after_quantity": after.quantity if after else None,
        "after_unit": after.unit if after else None,
        "after_status": after.status.value if after else None,
        "created_at": now,
    }


async def month_line_count(conn: AsyncConnection, source: str) -> int:
    query = select(func.count()).select_from(lines_t).where(lines_t.c.source == source)
    return int((await conn.execute(query)).scalar_one())


def decimal_sum(values: Sequence[Decimal]) -> Decimal:
    from decimal import localcontext

    from reconciler.domain import EXACT_CONTEXT

    with localcontext(EXACT_CONTEXT):
        return sum(values, Decimal(0))
