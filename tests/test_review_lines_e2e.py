"""Plan items follow their line, end to end (the sandbox over loopback, the real engine, the
state on SQLite and PostgreSQL): a split month's periods are told apart by their dates, an item
shows where its line is now, and a restatement the provider reverted is resolved."""

from __future__ import annotations

import dataclasses
from collections.abc import AsyncIterator
from datetime import date
from pathlib import Path

import pytest
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncEngine

from reconciler.display import number as format_quantity
from reconciler.domain import FindingState, PlanItem, utcnow
from reconciler.reconcile.plan import describe, item_json
from reconciler.sandbox.scenario import named_scenario
from reconciler.sandbox.server import SandboxServer
from reconciler.store.ingest import lines_t
from reconciler.store.review import build_plan
from tests.test_restatements_e2e import all_items, pull, settings_for


@pytest.fixture
async def sandbox() -> AsyncIterator[SandboxServer]:
    scenario = dataclasses.replace(named_scenario("default"), akamai_split_periods=True)
    async with SandboxServer(scenario, host="127.0.0.1", port=0) as server:
        yield server


async def _plan_items(engine: AsyncEngine) -> list[PlanItem]:
    async with engine.connect() as conn:
        return list((await build_plan(conn, utcnow())).items)


async def test_split_periods_of_a_month_are_labelled_with_their_dates(
    engine: AsyncEngine, sandbox: SandboxServer, tmp_path: Path
) -> None:
    settings = settings_for(sandbox, tmp_path)
    sandbox.state.add_events(
        [{"kind": "restate", "day": "2024-07-11", "factor": "1.08", "provider": "akamai"}]
    )
    await pull(engine, settings, sandbox, date(2024, 7, 10))
    await pull(engine, settings, sandbox, date(2024, 7, 11))
    restated = [i for i in await _plan_items(engine) if i.kind == "restated"]
    assert restated
    whens = {i.when for i in restated if i.month.month == 5}
    assert whens == {"2024-05 (05-01..05-15)", "2024-05 (05-16..05-31)"}
    item = next(i for i in restated if i.when == "2024-05 (05-16..05-31)")
    head = describe(item)[0]
    assert head.endswith(f"{item.line_label}  2024-05 (05-16..05-31)  ({item.account})")
    data = item_json(item)
    assert (data["period_start"], data["period_end"]) == ("2024-05-16", "2024-05-31")


async def test_a_whole_month_line_carries_no_period_label(
    engine: AsyncEngine, sandbox: SandboxServer, tmp_path: Path
) -> None:
    settings = settings_for(sandbox, tmp_path)
    na = {"provider": "fastly", "month": "2024-06", "usage_type": "North America Bandwidth"}
    sandbox.state.add_events([{"kind": "restate", "day": "2024-07-11", "factor": "1.1", **na}])
    await pull(engine, settings, sandbox, date(2024, 7, 10))
    await pull(engine, settings, sandbox, date(2024, 7, 11))
    restated = [i for i in await _plan_items(engine) if i.kind == "restated" and not i.service]
    assert [i.when for i in restated if i.source == "fastly"] == ["2024-06"]


async def test_a_decreased_item_shows_where_its_line_is_now(
    engine: AsyncEngine, sandbox: SandboxServer, tmp_path: Path
) -> None:
    settings = settings_for(sandbox, tmp_path)
    eu = {"provider": "fastly", "month": "2024-07", "usage_type": "Europe Requests"}
    sandbox.state.add_events([{"kind": "decrease", "day": "2024-07-11", "factor": "0.5", **eu}])
    await pull(engine, settings, sandbox, date(2024, 7, 10))
    await pull(engine, settings, sandbox, date(2024, 7, 11))
    first = [i for i in await _plan_items(engine) if i.kind == "decreased" and not i.service]
    assert len(first) == 1 and first[0].moved_on is None
    assert not any(line.strip().startswith("now:") for line in describe(first[0]))

    await pull(engine, settings, sandbox, date(2024, 7, 12))  # the month goes on collecting
    item = next(i for i in await _plan_items(engine) if i.kind == "decreased" and not i.service)
    async with engine.connect() as conn:
        quantity = (
            await conn.execute(
                select(lines_t.c.quantity).where(
                    lines_t.c.source == "fastly",
                    lines_t.c.month == "2024-07",
                    lines_t.c.usage_type == "Europe Requests",
                    lines_t.c.service == "",
                )
            )
        ).scalar_one()
    assert item.after == first[0].after  # the change reviewed is still the one that happened
    assert item.current is not None and item.after is not None
    assert item.current.quantity == quantity != item.after.quantity
    assert f"      now: {format_quantity(quantity)}   [collecting]" in describe(item)
    assert item_json(item)["current"]["quantity"] == format_quantity(quantity).replace(",", "")


async def test_a_restatement_reverted_to_the_billed_value_is_resolved(
    engine: AsyncEngine, sandbox: SandboxServer, tmp_path: Path
) -> None:
    settings = settings_for(sandbox, tmp_path)
    na = {"provider": "fastly", "month": "2024-06", "usage_type": "North America Bandwidth"}
    sandbox.state.add_events(
        [{"kind": "restate", "day": "2024-07-11", "until": "2024-07-12", "factor": "1.08", **na}]
    )
    await pull(engine, settings, sandbox, date(2024, 7, 10))
    await pull(engine, settings, sandbox, date(2024, 7, 11))
    assert {i.kind for i in await _plan_items(engine) if i.source == "fastly"} >= {"restated"}

    await pull(engine, settings, sandbox, date(2024, 7, 12))  # back to the billed value
    left = [i for i in await _plan_items(engine) if i.kind == "restated"]
    assert not left, [(i.when, i.line_label, i.before, i.after) for i in left]
    states = {
        (state, i.service != "")
        for state, i in await all_items(engine)
        if i.kind == "restated" and i.usage_type == na["usage_type"]
    }
    assert states == {(FindingState.RESOLVED.value, False), (FindingState.RESOLVED.value, True)}
