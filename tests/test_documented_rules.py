"""Rules the README promises, each run end to end against the provider sandbox (SQLite and
PostgreSQL): a finding whose condition no longer holds is resolved; a ``disappeared`` item is
resolved when its line comes back; a pull that returns the same line twice is refused and
changes nothing; an Akamai source's ``products`` bound its coverage."""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import replace
from datetime import date, timedelta
from typing import Any

import pytest
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncEngine

from reconciler.domain import ChangeKind, Month
from reconciler.providers.base import Coverage
from reconciler.providers.http import HttpClient
from reconciler.refresh import RunOutcome, refresh_source
from reconciler.sandbox.scenario import named_scenario
from reconciler.sandbox.server import SandboxServer
from reconciler.settings import settings_from_mapping
from reconciler.store.db import upgrade
from reconciler.store.items import findings_table
from tests.store.test_ingest import line, pull

TODAY = date(2024, 7, 10)
BANDWIDTH = "North America Bandwidth"


@pytest.fixture
async def sandbox() -> AsyncIterator[SandboxServer]:
    async with SandboxServer(named_scenario("default"), host="127.0.0.1", port=0) as server:
        yield server


def fastly(sandbox: SandboxServer, **config: Any) -> Any:
    return settings_from_mapping(
        {
            "sources": [
                {
                    "name": "fastly",
                    "provider": "fastly",
                    "base_url": sandbox.base_url,
                    "max_retries": 0,
                    "lookback_months": 2,
                }
            ],
            **config,
        }
    )


async def refresh(engine: AsyncEngine, settings: Any, sandbox: SandboxServer) -> RunOutcome:
    async with HttpClient() as http:
        outcome = await refresh_source(
            engine,
            settings,
            "fastly",
            http,
            today=sandbox.state.today,
            environ={"FASTLY_API_TOKEN": sandbox.fastly_token},
        )
    assert outcome.ok, outcome.error
    return outcome


async def items(engine: AsyncEngine) -> dict[str, str]:
    """kind → state of every review item (each kind occurs once in these tests)."""
    async with engine.connect() as conn:
        rows = (await conn.execute(select(findings_table))).all()
    return {f"{row.kind}:{row.usage_type}": row.state for row in rows}


async def test_a_finding_whose_condition_no_longer_holds_is_resolved(
    engine: AsyncEngine, sandbox: SandboxServer
) -> None:
    await upgrade(engine)
    tight = {"name": "bw", "source": "fastly", "usage_type": BANDWIDTH, "monthly_max": "1"}
    await refresh(engine, fastly(sandbox, expectations=[tight]), sandbox)
    raised = await items(engine)
    assert raised and set(raised.values()) == {"open"}
    assert all(k.startswith(("over_expectation", "projected_overage")) for k in raised)
    # The limit is raised above any month: the next pull finds the condition gone.
    loose = {**tight, "monthly_max": "1000000000000"}
    await refresh(engine, fastly(sandbox, expectations=[loose]), sandbox)
    assert await items(engine) == dict.fromkeys(raised, "resolved")


async def test_a_disappeared_line_that_comes_back_resolves_its_item(
    engine: AsyncEngine, sandbox: SandboxServer
) -> None:
    await upgrade(engine)
    settings = fastly(sandbox)
    await refresh(engine, settings, sandbox)  # the import
    gone_on, back_on = TODAY + timedelta(days=1), TODAY + timedelta(days=2)
    sandbox.state.add_events(
        [
            {
                "kind": "disappear",
                "provider": "fastly",
                "day": gone_on.isoformat(),
                "until": back_on.isoformat(),
                "usage_type": BANDWIDTH,
                "month": str(Month.of(TODAY)),
            }
        ]
    )
    sandbox.state.set_today(gone_on)
    await refresh(engine, settings, sandbox)
    disappeared = {k: s for k, s in (await items(engine)).items() if k.startswith("disappeared")}
    assert disappeared and set(disappeared.values()) == {"open"}
    sandbox.state.set_today(back_on)
    await refresh(engine, settings, sandbox)
    after = {k: s for k, s in (await items(engine)).items() if k.startswith("disappeared")}
    assert after == dict.fromkeys(disappeared, "resolved")


async def test_a_pull_with_the_same_line_twice_is_refused_and_changes_nothing(
    engine: AsyncEngine,
) -> None:
    from reconciler.errors import BadProviderDataError

    await pull(engine, [line("bandwidth", "1")])
    with pytest.raises(BadProviderDataError, match="the same usage line twice in one pull"):
        await pull(engine, [line("bandwidth", "2"), line("requests", "3"), line("bandwidth", "4")])
    again = await pull(engine, [line("bandwidth", "1")])
    assert again.changes == [] and again.versions_added == 0  # nothing of the refused pull


async def test_a_first_pull_with_the_same_line_twice_is_refused_and_stores_nothing(
    engine: AsyncEngine,
) -> None:
    from reconciler.errors import BadProviderDataError

    with pytest.raises(BadProviderDataError, match="the same usage line twice in one pull"):
        await pull(engine, [line("bandwidth", "2"), line("requests", "3"), line("bandwidth", "4")])
    first = await pull(engine, [line("bandwidth", "1")])
    assert first.new_lines == 1 and first.versions_added == 1  # nothing of the refused pull


async def test_akamai_products_bound_what_a_pull_covers(engine: AsyncEngine) -> None:
    cdn = replace(line("bandwidth", "1"), product="cdn")
    storage = replace(line("bytes", "2"), product="netstorage")
    await pull(engine, [cdn, storage])
    only_cdn = Coverage(
        months=(Month(2024, 5), Month(2024, 6)), accounts=None, products=frozenset({"cdn"})
    )
    assert (await pull(engine, [cdn], only_cdn)).changes == []
    gone = await pull(engine, [], only_cdn)
    assert [(c.key.product, c.kind) for c in gone.changes] == [("cdn", ChangeKind.DISAPPEARED)]
