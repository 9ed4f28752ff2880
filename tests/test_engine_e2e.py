"""The engine end to end against the provider sandbox over loopback HTTP."""

from __future__ import annotations

import asyncio
import os
import signal
import sys
from collections.abc import AsyncIterator
from datetime import date
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncEngine

from reconciler.errors import StalePlanError
from reconciler.providers.http import HttpClient
from reconciler.reconcile.plan import summary_line
from reconciler.refresh import refresh_source
from reconciler.sandbox.scenario import named_scenario
from reconciler.sandbox.server import SandboxServer
from reconciler.settings import Settings, settings_from_mapping
from reconciler.store.db import create_engine, upgrade
from reconciler.store.findings import current_serial
from reconciler.store.ingest import lines_t, versions_t
from reconciler.store.items import findings_table
from reconciler.store.review import apply_acknowledgements, build_plan
from reconciler.store.runs import runs_t

TODAY = date(2024, 7, 10)


@pytest.fixture
async def sandbox() -> AsyncIterator[SandboxServer]:
    async with SandboxServer(named_scenario("default"), host="127.0.0.1", port=0) as server:
        yield server


def config(sandbox: SandboxServer, tmp_path: Path, database_url: str = "") -> dict[str, Any]:
    edgerc = tmp_path / "sandbox.edgerc"
    edgerc.write_text(sandbox.edgerc_text())
    edgerc.chmod(0o600)
    return {
        "state": {"database_url": database_url},
        "sources": [
            {
                "name": "fastly",
                "provider": "fastly",
                "base_url": sandbox.base_url,
                "max_retries": 0,
                "lookback_months": 3,
            },
            {
                "name": "akamai",
                "provider": "akamai",
                "base_url": sandbox.base_url,
                "edgerc": str(edgerc),
                "contracts": sandbox.contracts,
                "max_retries": 0,
                "lookback_months": 3,
            },
        ],
        "expectations": [
            {
                "name": "NA bandwidth",
                "source": "fastly",
                "usage_type": "North America Bandwidth",
                "monthly_max": "100000000",
            },
        ],
    }


async def refresh_all(
    engine: AsyncEngine, settings: Settings, sandbox: SandboxServer, today: date
) -> None:
    env = {"FASTLY_API_TOKEN": sandbox.fastly_token}
    async with HttpClient() as http:
        for source in ("fastly", "akamai"):
            outcome = await refresh_source(engine, settings, source, http, today=today, environ=env)
            assert outcome.ok, outcome.error


async def snapshot(engine: AsyncEngine) -> tuple[Any, ...]:
    async with engine.connect() as conn:
        lines = (await conn.execute(select(lines_t).order_by(lines_t.c.id))).all()
        versions = (await conn.execute(select(func.count()).select_from(versions_t))).scalar_one()
        items = (await conn.execute(select(findings_table).order_by(findings_table.c.id))).all()
        serial = await current_serial(conn)
    return tuple(map(tuple, lines)), versions, tuple(map(tuple, items)), serial


async def test_two_pulls_around_events_give_exactly_the_expected_plan(
    engine: AsyncEngine, sandbox: SandboxServer, tmp_path: Path
) -> None:
    settings = settings_from_mapping(config(sandbox, tmp_path))
    await refresh_all(engine, settings, sandbox, TODAY)
    async with engine.connect() as conn:
        first = await build_plan(conn, _now())
    assert first.drift == []  # an import is not drift

    sandbox.state.add_events(
        [
            {
                "kind": "restate",
                "provider": "akamai",
                "day": "2024-07-11",
                "month": "2024-05",
                "product": "1-7KLGH",
                "factor": "1.1",
            },
            {
                "kind": "decrease",
                "provider": "fastly",
                "day": "2024-07-11",
                "month": "2024-07",
                "usage_type": "North America Bandwidth",
                "factor": "0.5",
            },
        ]
    )
    sandbox.state.set_today(date(2024, 7, 11))
    await refresh_all(engine, settings, sandbox, date(2024, 7, 11))
    async with engine.connect() as conn:
        plan = await build_plan(conn, _now())
    kinds = {item.kind for item in plan.drift}
    assert kinds == {"restated", "decreased"}
    restated = [i for i in plan.drift if i.kind == "restated"]
    assert all(i.month.month == 5 for i in restated)
    # A restated billed month is critical; stats the provider marks not billable are info.
    assert {(i.usage_type, i.severity.value) for i in restated} == {
        ("Total MB", "critical"),
        ("95/5 Mbps", "info"),
        ("Total Hits", "info"),
        ("Peak Mbps", "info"),
    }
    assert all(i.before and i.after and i.after.quantity > i.before.quantity for i in restated)
    decreased = [i for i in plan.drift if i.kind == "decreased"]
    assert all(i.usage_type == "North America Bandwidth" for i in decreased)
    assert summary_line(plan).startswith("Plan: ")
    assert f"{len(restated)} restated" in summary_line(plan)

    # A plan made before another change is refused; a fresh one is applied exactly.
    sandbox.state.add_events(
        [
            {
                "kind": "restate",
                "provider": "akamai",
                "day": "2024-07-12",
                "month": "2024-06",
                "factor": "2",
            },
        ]
    )
    sandbox.state.set_today(date(2024, 7, 12))
    await refresh_all(engine, settings, sandbox, date(2024, 7, 12))
    with pytest.raises(StalePlanError, match="run 'reconciler plan' again"):
        await apply_acknowledgements(
            engine,
            settings,
            serial=plan.serial,
            expected=plan.expected_acknowledgements(),
            who="t",
            note=None,
            now=_now(),
        )
    async with engine.connect() as conn:
        fresh = await build_plan(conn, _now())
    count = await apply_acknowledgements(
        engine,
        settings,
        serial=fresh.serial,
        expected=fresh.expected_acknowledgements(),
        who="t",
        note="reviewed",
        now=_now(),
    )
    assert count == len(fresh.items)
    async with engine.connect() as conn:
        after = await build_plan(conn, _now())
    assert after.empty
    await refresh_all(engine, settings, sandbox, date(2024, 7, 12))
    async with engine.connect() as conn:
        assert (await build_plan(conn, _now())).empty  # same values: not raised again


def _now() -> Any:
    from reconciler.domain import utcnow

    return utcnow()


async def test_a_pull_killed_mid_run_changes_nothing(
    sandbox: SandboxServer, tmp_path: Path
) -> None:
    url = f"sqlite+aiosqlite:///{tmp_path / 'state.db'}"
    engine = create_engine(url, create=True)
    await upgrade(engine)
    try:
        data = config(sandbox, tmp_path, url)
        settings = settings_from_mapping(data)
        await refresh_all(engine, settings, sandbox, TODAY)
        before = await snapshot(engine)

        # Make the next pull change things, and slow, then SIGKILL it while it runs.
        sandbox.state.add_events(
            [
                {
                    "kind": "restate",
                    "provider": "akamai",
                    "day": "2024-07-11",
                    "month": "2024-05",
                    "factor": "3",
                },
                {
                    "kind": "decrease",
                    "provider": "fastly",
                    "day": "2024-07-11",
                    "month": "2024-07",
                    "factor": "0.1",
                },
            ]
        )
        sandbox.state.set_today(date(2024, 7, 11))
        sandbox.state.add_faults(
            [{"kind": "latency", "latency_ms": 400, "endpoint": "akamai.monthly_summary"}]
        )
        config_path = tmp_path / "reconciler.toml"
        config_path.write_text(_toml(data))
        process = await asyncio.create_subprocess_exec(
            sys.executable,
            "-m",
            "reconciler",
            "--config",
            str(config_path),
            "pull",
            "--source",
            "akamai",
            "--as-of",
            "2024-07-11",
            env={**os.environ, "FASTLY_API_TOKEN": sandbox.fastly_token},
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.PIPE,
        )
        async with asyncio.timeout(60):
            while True:  # wait until the fastly lines are staged and akamai is mid-fetch
                await asyncio.sleep(0.05)
                async with engine.connect() as conn:
                    staged = (
                        await conn.execute(
                            select(func.count())
                            .select_from(runs_t)
                            .where(runs_t.c.source == "akamai", runs_t.c.status == "running")
                        )
                    ).scalar_one()
                if staged:
                    break
        process.send_signal(signal.SIGKILL)
        await process.wait()
        assert process.returncode == -signal.SIGKILL
        after = await snapshot(engine)
        assert after == before  # lines, versions, findings and serial untouched

        sandbox.state.clear_faults()
        await refresh_all(engine, settings, sandbox, date(2024, 7, 11))
        async with engine.connect() as conn:
            plan = await build_plan(conn, _now())
        assert {i.kind for i in plan.drift} >= {"restated"}
    finally:
        await engine.dispose()


def _toml(data: dict[str, Any]) -> str:
    from reconciler.cli.setup_cmds import to_toml

    return to_toml(data)
