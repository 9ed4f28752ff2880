"""``pull`` warns when a source returns no line at all for a month it has data for (through
the real entry point, the sandbox over loopback, SQLite and PostgreSQL)."""

from __future__ import annotations

import json
from datetime import date
from pathlib import Path

import sqlalchemy as sa

from reconciler.store.db import create_engine
from reconciler.store.ingest import lines_t
from tests.security.support import cli, initialized_state


async def _lines_of(url: str, source: str, month: str) -> int:
    engine = create_engine(url)
    try:
        async with engine.connect() as conn:
            query = sa.select(sa.func.count()).where(
                lines_t.c.source == source, lines_t.c.month == month
            )
            return int((await conn.execute(query)).scalar_one())
    finally:
        await engine.dispose()


async def test_pull_warns_about_a_month_the_provider_returned_no_line_for(
    tmp_path: Path, backend: str, state_url: str
) -> None:
    async with initialized_state(tmp_path, backend, state_url) as (sandbox, env):
        sandbox.state.set_today(date(2024, 7, 10))
        first = await cli("pull", "--as-of", "2024-07-10", cwd=tmp_path, env=env)
        assert first.code == 0 and "warning" not in first.stderr, first.output
        tracked = await _lines_of(state_url, "fastly", "2024-06")
        assert tracked > 1
        sandbox.state.add_events(
            [{"kind": "disappear", "day": "2024-07-11", "provider": "fastly", "month": "2024-06"}]
        )
        sandbox.state.set_today(date(2024, 7, 11))
        ran = await cli("pull", "--as-of", "2024-07-11", cwd=tmp_path, env=env)
        sandbox.state.set_today(date(2024, 7, 12))
        as_json = await cli("pull", "--json", "--as-of", "2024-07-12", cwd=tmp_path, env=env)
    assert ran.code == 0, ran.output
    assert ran.stderr.splitlines() == [
        f"warning: fastly returned no lines at all for 2024-06 ({tracked} lines tracked "
        "there); they are recorded as disappeared: check that the provider account, contract "
        "or token scope did not change"
    ]
    # The next pull finds the month still empty, but nothing left it this time.
    rows = {row["source"]: row for row in json.loads(as_json.stdout)}
    assert (rows["fastly"]["emptied_months"], rows["akamai"]["emptied_months"]) == ([], [])
    assert as_json.stderr == ""
