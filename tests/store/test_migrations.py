"""Each migration carries the rows of the revision before it forward (SQLite and PostgreSQL)."""

from __future__ import annotations

from datetime import UTC, datetime
from decimal import Decimal

from sqlalchemy import func, insert, select
from sqlalchemy.ext.asyncio import AsyncEngine

from reconciler.store.db import create_engine, upgrade

STARTED = datetime(2024, 6, 10, 8, 30, tzinfo=UTC)


async def _at(url: str, revision: str) -> AsyncEngine:
    engine = create_engine(url, create=True)
    await upgrade(engine, revision)
    return engine


async def test_0002_cost_keeps_review_items_without_an_impact(state_url: str) -> None:
    from reconciler.store.items import findings_table as findings_t
    from reconciler.store.tables import ExpectedCostRow

    engine = await _at(state_url, "0001_initial")
    try:
        async with engine.begin() as conn:
            # Only the columns revision 0001 has.
            await conn.execute(
                insert(findings_t).values(
                    fingerprint="f1",
                    category="drift",
                    kind="restated",
                    severity="critical",
                    source="akamai",
                    provider="akamai",
                    month="2024-05",
                    after_quantity=Decimal("141.588"),
                    message="",
                    state="open",
                    values_hash="h",
                    raised_at=STARTED,
                    updated_at=STARTED,
                )
            )
        await upgrade(engine, "0002_cost")
        async with engine.connect() as conn:
            rows = (
                await conn.execute(
                    select(
                        findings_t.c.fingerprint,
                        findings_t.c.after_quantity,
                        findings_t.c.impact_amount,
                        findings_t.c.impact_currency,
                    )
                )
            ).all()
            costs_t = ExpectedCostRow.__table__  # type: ignore[attr-defined]
            costs = (await conn.execute(select(func.count()).select_from(costs_t))).scalar_one()
        assert [tuple(r) for r in rows] == [("f1", Decimal("141.588"), None, None)]
        assert costs == 0
    finally:
        await engine.dispose()
