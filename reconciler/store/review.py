"""Plans from the store and their application (acknowledgement), refused when stale."""

from __future__ import annotations

import json
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import insert, select
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from reconciler.alerts.reviewed import withdraw_reviewed
from reconciler.display import plural
from reconciler.domain import FindingState
from reconciler.errors import StalePlanError
from reconciler.reconcile.plan import Plan, sort_for_plan
from reconciler.settings import Settings
from reconciler.store.findings import acknowledge, bump_serial, current_serial, open_values
from reconciler.store.items import findings_table, load_items
from reconciler.store.tables import AppliedPlan

applied_t = AppliedPlan.__table__  # type: ignore[attr-defined]


async def build_plan(
    conn: AsyncConnection, now: datetime, sources: list[str] | None = None
) -> Plan:
    serial = await current_serial(conn)
    items = await load_items(conn, (FindingState.OPEN,), sources)
    hashes = await open_values(conn)
    return Plan(serial, now, tuple(sort_for_plan(items)), hashes)


async def apply_acknowledgements(
    engine: AsyncEngine,
    settings: Settings,
    *,
    serial: int,
    expected: dict[str, str],
    who: str,
    note: str | None,
    now: datetime,
) -> int:
    """Acknowledge exactly ``expected`` (fingerprint → values hash) if nothing changed since
    the plan was made at ``serial``; returns how many items were acknowledged. Queued alert
    messages leave out what was acknowledged (``settings`` renders them again)."""
    async with engine.begin() as conn:
        # Locked: a pull committing meanwhile waits, or has committed and changed the serial.
        current = await current_serial(conn, lock=True)
        if current != serial:
            raise StalePlanError(
                f"the state changed since this plan was made (serial {serial}, now {current}): "
                "run 'reconciler plan' again and review the new plan"
            )
        still_open = await open_values(conn)
        changed = [fp for fp, h in expected.items() if still_open.get(fp) != h]
        if changed:
            raise StalePlanError(
                f"{plural(len(changed), 'planned item')} "
                f"{'is' if len(changed) == 1 else 'are'} no longer open with the values shown: "
                "run 'reconciler plan' again"
            )
        result = await conn.execute(
            insert(applied_t).values(
                serial=serial,
                applied_at=now,
                applied_by=who,
                note=note,
                items=len(expected),
                fingerprints=json.dumps(sorted(expected)),
            )
        )
        plan_id = int(result.inserted_primary_key[0]) if result.inserted_primary_key else 0
        count = await acknowledge(
            conn, expected, applied_plan_id=plan_id, who=who, note=note, now=now
        )
        if count:
            await bump_serial(conn)
            await withdraw_reviewed(conn, settings, now)
        return count


@dataclass(frozen=True, slots=True)
class ReviewRecord:
    """Where an item stands in review: its state and who acknowledged it, when, with what note."""

    state: str
    acknowledged_at: datetime | None
    acknowledged_by: str | None
    note: str | None

    def describe(self) -> str:
        if self.acknowledged_at is None:
            return ""
        text = f"acknowledged {self.acknowledged_at:%Y-%m-%d %H:%M}Z by {self.acknowledged_by}"
        return text + (f": {self.note}" if self.note else "")


async def review_records(
    conn: AsyncConnection, states: Iterable[FindingState]
) -> dict[str, ReviewRecord]:
    """Fingerprint → review record of every item in ``states``."""
    f = findings_table.c
    rows = await conn.execute(
        select(f.fingerprint, f.state, f.acknowledged_at, f.acknowledged_by, f.ack_note).where(
            f.state.in_([str(s) for s in states])
        )
    )
    return {
        r.fingerprint: ReviewRecord(r.state, r.acknowledged_at, r.acknowledged_by, r.ack_note)
        for r in rows
    }
