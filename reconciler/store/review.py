"""Plans from the store and their application (acknowledgement), refused when stale."""

from __future__ import annotations

import json
from datetime import datetime

from sqlalchemy import insert
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from reconciler.domain import FindingState
from reconciler.errors import StalePlanError
from reconciler.reconcile.plan import Plan, sort_for_plan
from reconciler.store.findings import acknowledge, bump_serial, current_serial, open_values
from reconciler.store.items import load_items
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
    *,
    serial: int,
    expected: dict[str, str],
    who: str,
    note: str | None,
    now: datetime,
) -> int:
    """Acknowledge exactly ``expected`` (fingerprint → values hash) if nothing changed since
    the plan was made at ``serial``; returns how many items were acknowledged."""
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
                f"{len(changed)} planned item(s) are no longer open with the values shown: "
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
        return count
