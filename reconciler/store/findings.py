"""Review items in the store: raising, updating, resolving and acknowledging them.

Each item has a stable fingerprint and a state (open, acknowledged, resolved). The same
fingerprint with the same values is never raised twice; new values reopen an acknowledged
drift item, and an expectation finding whose condition no longer holds is resolved. An
acknowledged projected overage is reopened when its forecast escalates past the one that was
acknowledged (:class:`~reconciler.reconcile.forecast.Escalation`).
"""

from __future__ import annotations

import json
from collections.abc import Collection, Iterable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from datetime import datetime
from decimal import Decimal, localcontext
from typing import Any

from sqlalchemy import Integer, Text, bindparam, cast, insert, select, update
from sqlalchemy.ext.asyncio import AsyncConnection

from reconciler.domain import (
    EXACT_CONTEXT,
    ChangeKind,
    FindingState,
    ItemCategory,
    LineStatus,
    Month,
    Observation,
    PlanItem,
    canonical_decimal,
    line_digest,
)
from reconciler.money import Money
from reconciler.reconcile.diff import ABSENCE_KINDS
from reconciler.reconcile.expectations import Evaluated
from reconciler.reconcile.forecast import forecast_from_json, forecast_json
from reconciler.store.ingest import LineChange, change_fingerprint
from reconciler.store.items import findings_table as findings_t
from reconciler.store.items import item_from_row
from reconciler.store.slices import WRITE_SLICE_ROWS, execute_in_slices
from reconciler.store.tables import StateMeta

meta_t = StateMeta.__table__  # type: ignore[attr-defined]
_CHUNK = 500
_OPEN_OR_ACKED = (FindingState.OPEN.value, FindingState.ACKNOWLEDGED.value)


@dataclass
class ItemUpdates:
    """What one run did to the review items: for alerts, counters and the serial."""

    raised: list[PlanItem] = field(default_factory=list)  # new, or new values
    resolved: list[PlanItem] = field(default_factory=list)
    values_hashes: dict[str, str] = field(default_factory=dict)

    @property
    def changed(self) -> bool:
        return bool(self.raised or self.resolved)


def drift_item(change: LineChange) -> PlanItem:
    key = change.key
    return PlanItem(
        category=ItemCategory.DRIFT,
        kind=change.kind.value,
        severity=change.severity,
        fingerprint=change_fingerprint(change.kind, key),
        source=key.source,
        provider=change.provider,
        account=key.account,
        product=key.product,
        usage_type=key.usage_type,
        region=key.region,
        service=key.service,
        month=key.month,
        before=change.before,
        after=change.after,
        product_name=change.product_name,
        message=drift_message(change),
    )


def drift_message(change: LineChange) -> str:
    """Why a drift item matters, where its kind alone does not say it."""
    if change.kind == ChangeKind.FINALIZED_CHANGED:
        percent, delta = change.percent, change.delta or Decimal(0)
        share = f" ({percent:+}%)" if percent is not None else ""
        sign = "+" if delta > 0 else ""
        return (
            f"the finalized value is {sign}{canonical_decimal(delta)} from the last collecting "
            f"one{share}, beyond the finalize tolerance"
        )
    if change.kind == ChangeKind.FINALIZED_DISAPPEARED:
        return "a billed (finalized) line is missing from a complete pull"
    if change.returned and change.kind != ChangeKind.REAPPEARED:
        return "came back after being absent, with other values than when last seen"
    if change.redated is not None:
        start, end = change.redated
        key = change.key
        return (
            f"the provider re-dated this period (was {start}..{end}, now from {key.period_start})"
        )
    return ""


def drift_values_hash(item: PlanItem) -> str:
    parts: list[str] = [item.kind, item.severity.value]
    for side in (item.before, item.after):
        parts += [str(side.quantity), side.unit, side.status.value] if side else ["-"]
    return line_digest(tuple(parts))


def _row_values(item: PlanItem, values_hash: str, line_id: int | None) -> dict[str, Any]:
    before, after = item.before, item.after
    return {
        "line_id": line_id,
        "category": item.category.value,
        "kind": item.kind,
        "severity": item.severity.value,
        "source": item.source,
        "provider": item.provider,
        "account": item.account,
        "product": item.product,
        "product_name": item.product_name,
        "usage_type": item.usage_type,
        "region": item.region,
        "service": item.service,
        "month": str(item.month),
        "before_quantity": before.quantity if before else None,
        "before_unit": before.unit if before else None,
        "before_status": before.status.value if before else None,
        "after_quantity": after.quantity if after else None,
        "after_unit": after.unit if after else None,
        "after_status": after.status.value if after else None,
        "message": item.message,
        "values_hash": values_hash,
        "forecast": json.dumps(forecast_json(item.forecast)) if item.forecast else None,
        "impact_amount": item.impact,
        "impact_currency": item.impact_currency or None,
    }


async def _existing(conn: AsyncConnection, fingerprints: Sequence[str]) -> dict[str, Any]:
    rows: dict[str, Any] = {}
    for start in range(0, len(fingerprints), _CHUNK):
        chunk = list(fingerprints[start : start + _CHUNK])
        query = select(findings_t).where(findings_t.c.fingerprint.in_(chunk))
        for row in (await conn.execute(query)).all():
            rows[row.fingerprint] = row
    return rows


async def record_items(
    conn: AsyncConnection,
    evaluated: Sequence[Evaluated],
    *,
    run_id: int,
    now: datetime,
    keep_open_before: bool,
    line_ids: Mapping[str, int] | None = None,
) -> ItemUpdates:
    """Insert or update review items; returns those raised or given new values.

    ``line_ids`` names the tracked line of each drift item (fingerprint → line id): the plan
    reads the line's period and current values through it.
    """
    updates = ItemUpdates()
    if not evaluated:
        return updates
    existing = await _existing(conn, [e.item.fingerprint for e in evaluated])
    inserts: list[dict[str, Any]] = []
    changes: list[dict[str, Any]] = []
    for entry in evaluated:
        item, values_hash = entry.item, entry.values_hash
        updates.values_hashes[item.fingerprint] = values_hash
        row = existing.get(item.fingerprint)
        values = _row_values(item, values_hash, (line_ids or {}).get(item.fingerprint))
        if row is None:
            inserts.append(
                {
                    **values,
                    "fingerprint": item.fingerprint,
                    "state": FindingState.OPEN.value,
                    "first_run_id": run_id,
                    "last_run_id": run_id,
                    "raised_at": now,
                    "updated_at": now,
                }
            )
            updates.raised.append(item)
            if len(inserts) >= WRITE_SLICE_ROWS:  # a big pull's new items: never all as rows
                await execute_in_slices(conn, insert(findings_t), inserts)
                inserts = []
            continue
        escalated = row.values_hash == values_hash and _escalates(entry, row)
        if escalated and item.forecast is not None:
            # Same values, but news: announced once under a hash of its own.
            updates.values_hashes[item.fingerprint] = line_digest(
                (values_hash, "escalated", str(item.forecast.value))
            )
        elif escalated and item.after is not None:
            updates.values_hashes[item.fingerprint] = line_digest(
                (values_hash, "closed", str(item.after.quantity), item.after.status.value)
            )
        same_values = row.values_hash == values_hash and not escalated
        if same_values and row.state != FindingState.RESOLVED.value:
            if _observed_moved(row, values):
                changes.append(_refresh(row, values, now, run_id))
            continue
        reopen = not same_values or row.state == FindingState.RESOLVED.value
        new_values = dict(values)
        if keep_open_before and row.state == FindingState.OPEN.value:
            # Still unreviewed: keep what the reviewer last accepted as "before".
            for name in ("before_quantity", "before_unit", "before_status"):
                new_values[name] = getattr(row, name)
        changes.append(
            {
                "b_id": row.id,
                **new_values,
                "state": FindingState.OPEN.value if reopen else row.state,
                "last_run_id": run_id,
                "updated_at": now,
                "resolved_at": None,
            }
        )
        merged = item_from_row(_merged(row, new_values))
        updates.raised.append(
            replace(merged, period_start=item.period_start, period_end=item.period_end)
        )
    if inserts:
        # In slices: the parameters SQLAlchemy builds for 10,000 rows at once are megabytes.
        await execute_in_slices(conn, insert(findings_t), inserts)
    await _apply_row_updates(conn, changes)
    return updates


def _observed_moved(row: Any, values: dict[str, Any]) -> bool:
    return bool(
        row.after_quantity != values["after_quantity"]
        or row.message != values["message"]
        or row.forecast != values["forecast"]
        or row.impact_amount != values["impact_amount"]
    )


def _escalates(entry: Evaluated, row: Any) -> bool:
    """An acknowledged projected overage whose forecast escalated since it was acknowledged,
    or an acknowledged finding whose month closed beyond its tolerance from what was
    acknowledged (a collecting month that finalized higher)."""
    item = entry.item
    if row.state != FindingState.ACKNOWLEDGED.value:
        return False
    if entry.moved_past_acknowledged(row.acknowledged_quantity, row.acknowledged_status):
        return True
    if entry.escalation is None:
        return False
    accepted = forecast_from_json(row.acknowledged_forecast)
    if accepted is None or item.forecast is None or item.before is None:
        return False
    return entry.escalation.raises_again(
        accepted, item.forecast, item.before.quantity, overage_unit_price(item)
    )


def overage_unit_price(item: PlanItem) -> Money | None:
    """What one unit of a priced overage costs: its impact (the excess over the maximum,
    priced) over the excess. None when no rate prices it."""
    excess = item.delta
    if item.impact is None or not item.impact_currency or excess is None or excess <= 0:
        return None
    with localcontext(EXACT_CONTEXT):
        return Money(item.impact / excess, item.impact_currency)


def _refresh(row: Any, values: dict[str, Any], now: datetime, run_id: int) -> dict[str, Any]:
    """Same finding, same state: only the observed side and message move along."""
    return {
        "b_id": row.id,
        **{name: getattr(row, name) for name in _UPDATABLE if name not in _OBSERVED},
        **{name: values[name] for name in _OBSERVED},
        "state": row.state,
        "last_run_id": run_id,
        "updated_at": now,
        "resolved_at": row.resolved_at,
    }


_OBSERVED = (
    "after_quantity",
    "after_unit",
    "after_status",
    "message",
    "impact_amount",
    "impact_currency",
    "forecast",
)
_UPDATABLE = (
    "line_id",
    "category",
    "kind",
    "severity",
    "source",
    "provider",
    "account",
    "product",
    "product_name",
    "usage_type",
    "region",
    "service",
    "month",
    "before_quantity",
    "before_unit",
    "before_status",
    "after_quantity",
    "after_unit",
    "after_status",
    "message",
    "values_hash",
    "forecast",
    "impact_amount",
    "impact_currency",
)


def _merged(row: Any, values: dict[str, Any]) -> Any:
    merged = dict(row._mapping)
    merged.update(values)
    return _Obj(merged)


class _Obj:
    def __init__(self, values: dict[str, Any]) -> None:
        self.__dict__.update(values)


async def _apply_row_updates(conn: AsyncConnection, changes: list[dict[str, Any]]) -> None:
    if not changes:
        return
    statement = (
        update(findings_t)
        .where(findings_t.c.id == bindparam("b_id"))
        .values(
            {
                **{name: bindparam(name) for name in _UPDATABLE},
                "state": bindparam("state"),
                "last_run_id": bindparam("last_run_id"),
                "updated_at": bindparam("updated_at"),
                "resolved_at": bindparam("resolved_at"),
            }
        )
    )
    await execute_in_slices(conn, statement, changes)


async def resolve_missing(
    conn: AsyncConnection,
    *,
    source: str,
    months: Iterable[Month],
    current: set[str],
    category: ItemCategory,
    kinds: Sequence[str] | None = None,
    now: datetime,
    hold: Collection[tuple[str, Month]] = (),
) -> list[PlanItem]:
    """Resolve open or acknowledged items of these months whose condition no longer holds.

    ``hold`` names (expectation label, month) pairs that were not re-evaluated (the
    expectation matched nothing): their items stay as they are.
    """
    query = select(findings_t).where(
        findings_t.c.source == source,
        findings_t.c.category == category.value,
        findings_t.c.month.in_([str(m) for m in months]),
        findings_t.c.state.in_(_OPEN_OR_ACKED),
    )
    if kinds is not None:
        query = query.where(findings_t.c.kind.in_(list(kinds)))
    gone = [
        row
        for row in (await conn.execute(query)).all()
        if row.fingerprint not in current and (row.product_name, Month.parse(row.month)) not in hold
    ]
    return await _resolve_rows(conn, gone, now)


async def resolve_fingerprints(
    conn: AsyncConnection, fingerprints: Sequence[str], now: datetime
) -> list[PlanItem]:
    """Resolve these items if open or acknowledged (e.g. a disappeared line came back)."""
    rows = [
        row for row in (await _existing(conn, fingerprints)).values() if row.state in _OPEN_OR_ACKED
    ]
    return await _resolve_rows(conn, rows, now)


def absence_fingerprints(change: LineChange) -> list[str]:
    """The fingerprints the line's absence may have been raised under (a return resolves
    them only when it is an identical ``reappeared``)."""
    return [change_fingerprint(kind, change.key) for kind in ABSENCE_KINDS]


async def current_serial(conn: AsyncConnection, *, lock: bool = False) -> int:
    """The state serial; with ``lock`` the row stays locked until the transaction ends, so a
    concurrent :func:`bump_serial` waits (PostgreSQL; SQLite writers hold the write lock)."""
    query = select(meta_t.c.value).where(meta_t.c.key == "serial")
    if lock:
        query = query.with_for_update()
    value = (await conn.execute(query)).scalar_one_or_none()
    return int(value) if value is not None else 0


async def bump_serial(conn: AsyncConnection) -> int:
    """Count a change of state, atomically: the increment is computed by the database from
    the row it updates, so two concurrent transactions take the serial up by two."""
    bumped = (
        await conn.execute(
            update(meta_t)
            .where(meta_t.c.key == "serial")
            .values(value=cast(cast(meta_t.c.value, Integer) + 1, Text))
            .returning(meta_t.c.value)
        )
    ).scalar_one_or_none()
    if bumped is not None:
        return int(bumped)
    await conn.execute(insert(meta_t).values(key="serial", value="1"))
    return 1


async def acknowledge(
    conn: AsyncConnection,
    expected: dict[str, str],
    *,
    applied_plan_id: int,
    who: str,
    note: str | None,
    now: datetime,
) -> int:
    """Acknowledge exactly these open items (fingerprint → values hash shown in the plan)."""
    rows = await _existing(conn, list(expected))
    acked = [
        {"b_id": row.id}
        for fingerprint, row in rows.items()
        if row.state == FindingState.OPEN.value and row.values_hash == expected[fingerprint]
    ]
    if acked:
        await conn.execute(
            update(findings_t)
            .where(findings_t.c.id == bindparam("b_id"))
            .values(
                state=FindingState.ACKNOWLEDGED.value,
                acknowledged_at=now,
                acknowledged_by=who,
                ack_note=note,
                applied_plan_id=applied_plan_id,
                acknowledged_forecast=findings_t.c.forecast,
                acknowledged_quantity=findings_t.c.after_quantity,
                acknowledged_status=findings_t.c.after_status,
                updated_at=now,
            ),
            acked,
        )
    return len(acked)


async def open_values(conn: AsyncConnection) -> dict[str, str]:
    """Fingerprint → values hash of every open item (what a plan shows)."""
    query = select(findings_t.c.fingerprint, findings_t.c.values_hash).where(
        findings_t.c.state == FindingState.OPEN.value
    )
    return {row.fingerprint: row.values_hash for row in (await conn.execute(query)).all()}


def _undone(item: PlanItem, current: Observation) -> bool:
    """Whether the line's current values take back the change the item reports: back to the
    billed (finalized) value it changed from, a restatement reverted. A collecting line that
    grows back to a value it had is still growing, not taking anything back."""
    before = item.before
    if item.kind == ChangeKind.REAPPEARED.value:
        return False  # a return with the values it left with: no change to take back
    if before is None or before.status != LineStatus.FINALIZED:
        return False
    return before == current


async def resolve_undone(
    conn: AsyncConnection, current: Mapping[int, Observation], now: datetime
) -> list[PlanItem]:
    """Resolve each open drift item whose line (line id → current values) is back where the
    item's change started: there is nothing left to review."""
    ids = sorted(current)
    undone: list[Any] = []  # only these rows are kept: a big pull's open items are thousands
    for start in range(0, len(ids), _CHUNK):
        query = select(findings_t).where(
            findings_t.c.line_id.in_(ids[start : start + _CHUNK]),
            findings_t.c.category == ItemCategory.DRIFT.value,
            findings_t.c.state == FindingState.OPEN.value,
        )
        for row in (await conn.execute(query)).all():
            if _undone(item_from_row(row), current[row.line_id]):
                undone.append(row)
    return await _resolve_rows(conn, undone, now)


async def _resolve_rows(
    conn: AsyncConnection, rows: Sequence[Any], now: datetime
) -> list[PlanItem]:
    """Mark these findings rows resolved at ``now``; the items they were."""
    if rows:
        await conn.execute(
            update(findings_t)
            .where(findings_t.c.id == bindparam("b_id"))
            .values(state=FindingState.RESOLVED.value, resolved_at=now, updated_at=now),
            [{"b_id": row.id} for row in rows],
        )
    return [item_from_row(row) for row in rows]
