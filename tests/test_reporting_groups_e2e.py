"""Akamai reporting groups end to end: pulled from the sandbox, stored, owned by teams for
their part of the contract's products, on SQLite and PostgreSQL; ``state list --team`` and
``config check`` name them."""

from __future__ import annotations

import json
from collections import defaultdict
from collections.abc import AsyncIterator
from decimal import Decimal
from fractions import Fraction
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncEngine

from reconciler.domain import Month, reporting_group_service
from reconciler.providers.http import HttpClient
from reconciler.reconcile.allocation import allocate, exact_shares
from reconciler.sandbox.akamai_reporting_groups import SHARES, reporting_groups
from reconciler.sandbox.scenario import named_scenario
from reconciler.sandbox.server import SandboxServer
from reconciler.settings import Settings, settings_from_mapping
from reconciler.store.costs import load_context
from reconciler.store.ingest import lines_t
from tests.test_showback_e2e import NOW, TODAY, showback_config

JUNE = Month(2024, 6)


@pytest.fixture
async def sandbox() -> AsyncIterator[SandboxServer]:
    async with SandboxServer(named_scenario("default"), host="127.0.0.1", port=0) as server:
        yield server


def groups_config(sandbox: SandboxServer, tmp_path: Path, groups: list[str]) -> dict[str, Any]:
    config = showback_config(sandbox, tmp_path)
    config["sources"] = [{**config["sources"][1], "reporting_groups": groups}]
    config["commitments"] = []
    video, radio = sandbox_groups(sandbox)
    config["teams"] = [
        {"name": "video", "match": [{"reporting_group": video}]},
        {"name": "radio", "match": [{"reporting_group": radio}]},
        {"name": "web", "match": [{"source": "akamai", "product": "Web Application Accelerator"}]},
        {"name": "ghost", "match": [{"reporting_group": "1"}]},
    ]
    return config


def sandbox_groups(sandbox: SandboxServer) -> list[str]:
    """The sandbox contract's two reporting groups: 40% and 25% of each product."""
    found = reporting_groups(sandbox.state.scenario.seed, sandbox.contracts)
    return [g for g, (contract, _) in found.items() if contract == sandbox.contracts[0]]


async def pull(engine: AsyncEngine, settings: Settings, sandbox: SandboxServer) -> None:
    from reconciler.refresh import refresh_source

    sandbox.state.set_today(TODAY)
    async with HttpClient() as http:
        outcome = await refresh_source(
            engine, settings, "akamai", http, today=TODAY, clock=lambda: NOW
        )
    assert outcome.ok, outcome.error


async def june_shares(engine: AsyncEngine, settings: Settings) -> dict[str, Fraction]:
    async with engine.connect() as conn:
        context = await load_context(conn, settings, "akamai", "akamai", [JUNE])
    shares = exact_shares(context.sheet, context.lines, settings.teams, settings.showback)
    allocation = allocate(context.sheet, context.lines, settings.teams, settings.showback)
    # The owners and unallocated add up to the month's expected cost, to the cent.
    key = ("akamai", JUNE, "USD")
    assert sum(c.amount for c in allocation.costs if c.month == JUNE) == allocation.totals[key]
    return dict(shares.months[key])


async def expected_june(engine: AsyncEngine, settings: Settings) -> dict[str, Fraction]:
    """What the groups should own: their share of each priced volume line's cost."""
    async with engine.connect() as conn:
        context = await load_context(conn, settings, "akamai", "akamai", [JUNE])
    priced = [c for c in context.sheet.lines if c.line.month == JUNE]
    assert priced and all(not c.line.service for c in priced)  # groups are never priced
    volume = sum((Fraction(c.amount) for c in priced if c.line.additive), Fraction(0))
    return {"video": volume * Fraction(SHARES[0]), "radio": volume * Fraction(SHARES[1])}


async def test_groups_own_their_part_and_the_rest_stays_with_the_contract(
    engine: AsyncEngine, sandbox: SandboxServer, tmp_path: Path
) -> None:
    settings = settings_from_mapping(groups_config(sandbox, tmp_path, sandbox_groups(sandbox)))
    await pull(engine, settings, sandbox)
    found = await june_shares(engine, settings)
    expected = await expected_june(engine, settings)
    assert found["video"] == expected["video"] and found["radio"] == expected["radio"]
    assert found["web"] > 0 and found["unallocated"] > 0 and "ghost" not in found
    async with engine.connect() as conn:
        context = await load_context(conn, settings, "akamai", "akamai", [JUNE])
    total = sum((Fraction(c.amount) for c in context.sheet.lines), Fraction(0))
    assert sum(found.values(), Fraction(0)) == total  # not a cent counted twice

    # The FOCUS export splits each contract line's row by the same owners.
    from reconciler.reports.focus import focus_rows

    rows = await focus_rows(engine, JUNE, JUNE, (), settings)
    effective: dict[str, Decimal] = defaultdict(Decimal)
    for row in rows:
        if row["EffectiveCost"]:
            effective[json.loads(row["Tags"])["team"]] += Decimal(row["EffectiveCost"])
    assert set(effective) == set(found)
    for team, exact in found.items():
        assert abs(effective[team] - Decimal(exact.numerator) / exact.denominator) < Decimal(
            "0.01"
        ) * len(rows)


async def test_a_group_no_longer_listed_is_neither_claimed_nor_used(
    engine: AsyncEngine, sandbox: SandboxServer, tmp_path: Path
) -> None:
    video, radio = sandbox_groups(sandbox)
    first = settings_from_mapping(groups_config(sandbox, tmp_path, [video, radio]))
    await pull(engine, first, sandbox)
    settings = settings_from_mapping(groups_config(sandbox, tmp_path, [video]))
    await pull(engine, settings, sandbox)
    # The pull did not ask about the radio group: its lines were not claimed to be gone ...
    async with engine.connect() as conn:
        query = select(func.count()).where(
            lines_t.c.service == reporting_group_service(radio), lines_t.c.present.is_(True)
        )
        assert int((await conn.execute(query)).scalar_one()) > 0
    # ... but a group the source no longer lists takes no cost from the contract's lines.
    found = await june_shares(engine, settings)
    assert "radio" not in found
    assert found["video"] == (await expected_june(engine, settings))["video"]


async def test_state_list_and_config_check_name_the_groups_owners(
    engine: AsyncEngine, sandbox: SandboxServer, tmp_path: Path, state_url: str
) -> None:
    from reconciler.cli.setup_cmds import to_toml
    from tests.test_cli import run

    video, radio = sandbox_groups(sandbox)
    config = groups_config(sandbox, tmp_path, [video, radio])
    config["state"] = {"database_url": state_url}
    await pull(engine, settings_from_mapping(config), sandbox)
    (tmp_path / "reconciler.toml").write_text(to_toml(config), encoding="utf-8")

    listed = run("state", "list", "--json", "--month", "2024-06", cwd=tmp_path)
    assert listed.returncode == 0, listed.stderr
    lines = [json.loads(x) for x in listed.stdout.splitlines()]
    owners = {x["service"]: x["owner"] for x in lines if x["service"]}
    assert owners == {
        reporting_group_service(video): "video",
        reporting_group_service(radio): "radio",
    }
    assert all(x["billable"] is None for x in lines if x["service"])
    team = run("state", "list", "--team", "video", "--month", "2024-06", cwd=tmp_path)
    rows = team.stdout.splitlines()
    assert rows and all(r.endswith("  team video") for r in rows)
    assert all(f"service reporting group {video}" in r for r in rows)

    checked = run("config", "check", cwd=tmp_path)
    warnings = [x for x in checked.stderr.splitlines() if x.startswith("warning: ")]
    assert (
        "warning: teams[3].match[0] (ghost: reporting_group=1) is the first match of no line "
        "in the state" in warnings
    )
    assert not any("reporting group" in w for w in warnings)  # every group has an owner
