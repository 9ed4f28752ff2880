"""Fastly invoices and finalization end to end: the sandbox's tiered invoices, fee and tax
lines and mid-month subscription invoices, the real engine, SQLite and PostgreSQL."""

from __future__ import annotations

from collections.abc import AsyncIterator
from datetime import date
from decimal import Decimal
from typing import Any

import pytest
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncEngine

from reconciler.domain import utcnow
from reconciler.providers.http import HttpClient
from reconciler.refresh import RunOutcome, invoices_t, refresh_source
from reconciler.sandbox.scenario import named_scenario
from reconciler.sandbox.server import SandboxServer
from reconciler.settings import Settings, settings_from_mapping
from reconciler.store.ingest import lines_t
from reconciler.store.items import findings_table, item_from_row
from reconciler.store.review import build_plan


@pytest.fixture
async def sandbox() -> AsyncIterator[SandboxServer]:
    async with SandboxServer(named_scenario("invoices"), host="127.0.0.1", port=0) as server:
        yield server


def settings_for(sandbox: SandboxServer, **source: Any) -> Settings:
    fastly = {
        "name": "fastly",
        "provider": "fastly",
        "base_url": sandbox.base_url,
        "max_retries": 0,
        "lookback_months": 3,
        **source,
    }
    return settings_from_mapping({"sources": [fastly]})


async def pull(
    engine: AsyncEngine, settings: Settings, sandbox: SandboxServer, day: date
) -> RunOutcome:
    sandbox.state.set_today(day)
    async with HttpClient() as http:
        outcome = await refresh_source(
            engine,
            settings,
            "fastly",
            http,
            today=day,
            environ={"FASTLY_API_TOKEN": sandbox.fastly_token},
        )
    assert outcome.ok, outcome.error
    return outcome


async def month_statuses(engine: AsyncEngine) -> dict[str, set[str]]:
    async with engine.connect() as conn:
        rows = (await conn.execute(select(lines_t.c.month, lines_t.c.status).distinct())).all()
    statuses: dict[str, set[str]] = {}
    for row in rows:
        statuses.setdefault(row.month, set()).add(row.status)
    return statuses


async def test_tiers_fees_and_mid_month_invoices(
    engine: AsyncEngine, sandbox: SandboxServer
) -> None:
    settings = settings_for(sandbox)
    await pull(engine, settings, sandbox, date(2024, 7, 10))
    # July has a subscription invoice starting on the 5th: it stays collecting.
    assert await month_statuses(engine) == {
        "2024-05": {"finalized"},
        "2024-06": {"finalized"},
        "2024-07": {"collecting"},
    }
    async with engine.connect() as conn:
        stored = (
            await conn.execute(select(invoices_t).where(invoices_t.c.month == "2024-06"))
        ).all()
    usage = [r for r in stored if r.product_name and r.usage_type and r.units is not None]
    fees = [r for r in stored if not r.product_name]
    subscription = [r for r in stored if r.usage_type == "subscription"]
    assert len(usage) == 2 * 4 + 1  # two tiers for each of 4 usage types; the subscription
    assert sorted(r.description for r in fees) == ["Platform fee", "Sales tax"]
    assert all(r.currency == "USD" for r in fees)
    assert sorted((r.description, r.units) for r in fees) == [
        ("Platform fee", Decimal(1)),
        ("Sales tax", None),
    ]
    assert [r.amount for r in fees if r.description == "Platform fee"] == [Decimal("250.00")]
    assert [(r.billing_start, r.billing_end) for r in subscription] == [
        (date(2024, 6, 5), date(2024, 7, 4))
    ]
    # Tiers add up to the usage, fees are never compared: nothing to review.
    async with engine.connect() as conn:
        assert [i.kind for i in (await build_plan(conn, utcnow())).items] == []

    # A restatement of June's North America bandwidth: one mismatch against both tiers.
    sandbox.state.add_events(
        [
            {
                "kind": "restate",
                "provider": "fastly",
                "day": "2024-07-11",
                "month": "2024-06",
                "usage_type": "North America Bandwidth",
                "factor": "1.1",
            }
        ]
    )
    await pull(engine, settings, sandbox, date(2024, 7, 11))
    async with engine.connect() as conn:
        rows = (
            await conn.execute(
                select(findings_table).where(findings_table.c.kind == "invoice_mismatch")
            )
        ).all()
        tiers = (
            await conn.execute(
                select(invoices_t.c.units).where(
                    invoices_t.c.month == "2024-06",
                    invoices_t.c.product_name == "North America Bandwidth",
                )
            )
        ).all()
    [mismatch] = [item_from_row(r) for r in rows]
    assert len(tiers) == 2
    assert mismatch.before is not None and mismatch.after is not None
    assert mismatch.before.quantity == sum(r.units for r in tiers)
    assert mismatch.after.quantity > mismatch.before.quantity
    assert "2 invoice line items" in mismatch.message


async def test_switching_between_invoices_and_the_calendar_reopens_nothing(
    engine: AsyncEngine, sandbox: SandboxServer
) -> None:
    by_invoice = settings_for(sandbox)
    by_calendar = settings_for(sandbox, invoices=False, finalize_after_days=20)
    await pull(engine, by_invoice, sandbox, date(2024, 7, 4))  # June's invoice posted 07-03
    assert (await month_statuses(engine))["2024-06"] == {"finalized"}
    outcome = await pull(engine, by_calendar, sandbox, date(2024, 7, 5))
    assert "reopened" not in outcome.ingest.counts()
    assert (await month_statuses(engine))["2024-06"] == {"finalized"}
    outcome = await pull(engine, by_invoice, sandbox, date(2024, 7, 6))
    assert set(outcome.ingest.counts()) == {"grew"}  # July collecting; June untouched
    assert (await month_statuses(engine))["2024-06"] == {"finalized"}


async def test_calendar_then_invoice_keeps_the_month_finalized(
    engine: AsyncEngine, sandbox: SandboxServer
) -> None:
    # June is finalized on 07-02 by the calendar; the invoice rule (no invoice until 07-03)
    # does not reopen it.
    early_calendar = settings_for(sandbox, invoices=False, finalize_after_days=1)
    await pull(engine, early_calendar, sandbox, date(2024, 7, 2))
    assert (await month_statuses(engine))["2024-06"] == {"finalized"}
    outcome = await pull(engine, settings_for(sandbox), sandbox, date(2024, 7, 2))
    assert outcome.ingest.counts() == {}
    assert (await month_statuses(engine))["2024-06"] == {"finalized"}


async def test_a_month_leaving_the_window_while_collecting_is_flagged_once(
    engine: AsyncEngine, sandbox: SandboxServer
) -> None:
    # Invoices unreadable and a 40-day calendar: May is still collecting when it leaves.
    settings = settings_for(sandbox, invoices=False, finalize_after_days=40, lookback_months=2)
    await pull(engine, settings, sandbox, date(2024, 6, 20))  # May and June
    first = await pull(engine, settings, sandbox, date(2024, 7, 1))  # June and July
    flagged = [i for i in first.items.raised if i.kind == "left_window_collecting"]
    assert [(str(i.month), i.severity.value) for i in flagged] == [("2024-05", "info")]
    assert "keep that status" in flagged[0].message
    again = await pull(engine, settings, sandbox, date(2024, 7, 2))
    assert not [i for i in again.items.raised if i.kind == "left_window_collecting"]
    assert (await month_statuses(engine))["2024-05"] == {"collecting"}
    async with engine.connect() as conn:
        plan = await build_plan(conn, utcnow())
    assert [str(i.month) for i in plan.items if i.kind == "left_window_collecting"] == ["2024-05"]
