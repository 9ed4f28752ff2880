"""Restatements cannot hide, end to end: the sandbox over loopback HTTP, the real engine, the
state on SQLite and on PostgreSQL."""

from __future__ import annotations

from datetime import date
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncEngine

from reconciler.domain import ItemCategory, PlanItem, utcnow
from reconciler.sandbox.server import SandboxServer
from reconciler.settings import Settings, Tolerance, settings_from_mapping
from reconciler.store.ingest import lines_t
from reconciler.store.items import findings_table, item_from_row
from reconciler.store.review import build_plan
from tests.e2e_support import pull_both, sandbox, sandbox_sources


def settings_for(sandbox: SandboxServer, tmp_path: Path, **extra: Any) -> Settings:
    return settings_from_mapping({"sources": sandbox_sources(sandbox, tmp_path), **extra})


async def pull(engine: AsyncEngine, settings: Settings, sandbox: SandboxServer, day: date) -> None:
    await pull_both(engine, settings, sandbox, day)


async def all_items(engine: AsyncEngine) -> list[tuple[str, PlanItem]]:
    """Every review item with its state (open, acknowledged, resolved)."""
    async with engine.connect() as conn:
        rows = (await conn.execute(select(findings_table))).all()
    return [(row.state, item_from_row(row)) for row in rows]


async def test_a_billed_line_absent_for_one_pull_and_back_changed_stays_visible(
    engine: AsyncEngine, sandbox: SandboxServer, tmp_path: Path
) -> None:
    settings = settings_for(sandbox, tmp_path)
    na = {"provider": "fastly", "month": "2024-06", "usage_type": "North America Bandwidth"}
    eu = {"provider": "fastly", "month": "2024-06", "usage_type": "Europe Bandwidth"}
    sandbox.state.add_events(
        [
            {"kind": "disappear", "day": "2024-07-11", "until": "2024-07-12", **na},
            {"kind": "restate", "day": "2024-07-12", "factor": "0.8", **na},
            {"kind": "disappear", "day": "2024-07-11", "until": "2024-07-12", **eu},
        ]
    )
    await pull(engine, settings, sandbox, date(2024, 7, 10))
    await pull(engine, settings, sandbox, date(2024, 7, 11))
    async with engine.connect() as conn:
        absent = await build_plan(conn, utcnow())
    vanished = {(i.kind, i.severity.value, i.usage_type) for i in absent.drift}
    assert vanished == {
        ("finalized_disappeared", "critical", "North America Bandwidth"),
        ("finalized_disappeared", "critical", "Europe Bandwidth"),
    }

    await pull(engine, settings, sandbox, date(2024, 7, 12))
    everything = await all_items(engine)
    items = [(state, i) for state, i in everything if i.category is ItemCategory.DRIFT]
    na_items = {
        (state, i.kind, i.service != "") for state, i in items if i.usage_type == na["usage_type"]
    }
    eu_items = {
        (state, i.kind, i.service != "") for state, i in items if i.usage_type == eu["usage_type"]
    }
    # Back 20% lower: a restatement, and the absence stays open beside it.
    assert na_items == {
        (state, kind, per_service)
        for state, kind in (("open", "finalized_disappeared"), ("open", "restated"))
        for per_service in (False, True)
    }
    # Back identical: reappeared, and only then is the absence resolved.
    assert eu_items == {
        (state, kind, per_service)
        for state, kind in (("resolved", "finalized_disappeared"), ("open", "reappeared"))
        for per_service in (False, True)
    }
    restated = [i for s, i in items if i.kind == "restated" and not i.service]
    assert len(restated) == 1
    assert restated[0].severity.value == "critical"
    assert restated[0].percent == pytest.approx(-20, abs=0.01)
    # The posted invoice kept its units: the restated usage no longer matches it.
    mismatch = [i for s, i in everything if i.kind == "invoice_mismatch"]
    assert [i.usage_type for i in mismatch] == [na["usage_type"]]


async def test_a_large_change_at_finalization_is_a_warning_with_its_delta(
    engine: AsyncEngine, sandbox: SandboxServer, tmp_path: Path
) -> None:
    settings = settings_for(sandbox, tmp_path)
    sandbox.state.add_events(
        [
            {
                "kind": "restate",
                "provider": "akamai",
                "day": "2024-07-03",
                "month": "2024-06",
                "product": "1-ABC012",
                "usage_type": "Total MB",  # billable (a not-billable stat's drift is info)
                "factor": "0.1",
            }
        ]
    )
    await pull(engine, settings, sandbox, date(2024, 7, 1))  # June complete, still collecting
    await pull(engine, settings, sandbox, date(2024, 7, 3))  # June finalizes
    async with engine.connect() as conn:
        plan = await build_plan(conn, utcnow())
    june = [i for i in plan.items if i.month.month == 6]
    changed = [i for i in june if i.kind == "finalized_changed"]
    assert changed and all(i.source == "akamai" and i.product == "1-ABC012" for i in changed)
    assert all(i.severity.value == "warning" for i in changed)
    assert all(i.percent is not None and i.percent == -90 for i in changed)
    assert all("beyond the finalize tolerance" in i.message for i in changed)
    routine = [i for i in june if i.kind == "finalized"]
    assert routine and all(i.severity.value == "info" for i in routine)
    assert {i.source for i in routine} == {"fastly", "akamai"}


async def test_the_finalize_tolerance_is_configurable_per_source(
    engine: AsyncEngine, sandbox: SandboxServer, tmp_path: Path
) -> None:
    settings = settings_for(sandbox, tmp_path, finalize_tolerance="95%")
    akamai = settings.sources[1].model_copy(update={"finalize_tolerance": Tolerance.parse("1%")})
    settings = settings.model_copy(update={"sources": [settings.sources[0], akamai]})
    sandbox.state.add_events(
        [
            {
                "kind": "restate",
                "provider": provider,
                "day": "2024-07-03",
                "month": "2024-06",
                "factor": "0.1",
            }
            for provider in ("fastly", "akamai")
        ]
    )
    await pull(engine, settings, sandbox, date(2024, 7, 1))
    await pull(engine, settings, sandbox, date(2024, 7, 3))
    async with engine.connect() as conn:
        plan = await build_plan(conn, utcnow())
    june = {(i.source, i.kind) for i in plan.items if i.month.month == 6}
    # Fastly falls under the global 95%; Akamai's own 1% flags the same -90%.
    assert {kind for source, kind in june if source == "fastly"} == {"finalized"}
    assert {kind for source, kind in june if source == "akamai"} == {"finalized_changed"}


async def test_a_period_re_dated_at_finalization_is_the_same_line(
    engine: AsyncEngine, sandbox: SandboxServer, tmp_path: Path
) -> None:
    # The sandbox's oddity: the first contract's first product, once its first month (2024-01)
    # is finalized, reports that period dated 2021-01-01..31.
    settings = settings_for(sandbox, tmp_path)
    await pull(engine, settings, sandbox, date(2024, 2, 1))  # January complete, collecting
    async with engine.connect() as conn:
        before = (
            await conn.execute(
                select(lines_t.c.id, lines_t.c.period_start).where(
                    lines_t.c.source == "akamai",
                    lines_t.c.product == "1-ABC012",
                    lines_t.c.month == "2024-01",
                )
            )
        ).all()
    assert before and {row.period_start for row in before} == {date(2024, 1, 1)}
    await pull(engine, settings, sandbox, date(2024, 2, 5))  # January finalized, re-dated
    async with engine.connect() as conn:
        after = (
            await conn.execute(
                select(lines_t.c.id, lines_t.c.period_start, lines_t.c.status).where(
                    lines_t.c.source == "akamai",
                    lines_t.c.product == "1-ABC012",
                    lines_t.c.month == "2024-01",
                )
            )
        ).all()
        plan = await build_plan(conn, utcnow())
    assert sorted(row.id for row in after) == sorted(row.id for row in before)
    assert {(row.period_start, row.status) for row in after} == {(date(2021, 1, 1), "finalized")}
    january = [i for i in plan.items if i.source == "akamai" and str(i.month) == "2024-01"]
    assert {i.kind for i in january} == {"finalized"}
    odd = [i for i in january if i.product == "1-ABC012"]
    assert odd and all("re-dated" in i.message for i in odd)


__all__ = ["sandbox"]  # the fixture
