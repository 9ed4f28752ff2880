"""A ``pull`` killed inside its reconcile transaction, everything written but not committed,
leaves the state exactly as it was; the next pull records the changes. The kill lands there
every time: the test-only fault point ``RECONCILER_TEST_HOLD_BEFORE_COMMIT`` holds the open
transaction until the process is killed (the chaos suite's kill during commit uses it too).
SQLite and PostgreSQL, the CLI as a real process.
"""

from __future__ import annotations

import asyncio
import signal
import sys
from datetime import date
from pathlib import Path

from sqlalchemy import text

from reconciler.store.db import create_engine
from reconciler.store.fault_point import HOLD_BEFORE_COMMIT_ENV
from reconciler.store.tracked_state import RUN_COLUMNS, TRACKED_TABLES, naming_run
from tests.daemon.support import eventually
from tests.loop_support import clean_environment
from tests.security.support import cli, initialized_state


async def _state(url: str) -> tuple[dict[str, list[tuple[object, ...]]], list[tuple[int, str]]]:
    """Every row of the tracked tables, and the runs (id, status)."""
    engine = create_engine(url)
    try:
        async with engine.connect() as conn:
            rows = {
                table: [
                    tuple(r) for r in await conn.execute(text(f"SELECT * FROM {table} ORDER BY 1"))
                ]
                for table in TRACKED_TABLES
            }
            runs = await conn.execute(text("SELECT id, status FROM pull_runs ORDER BY id"))
            return rows, [(int(r.id), str(r.status)) for r in runs]
    finally:
        await engine.dispose()


async def _rows_naming(url: str, run_id: int) -> int:
    engine = create_engine(url)
    try:
        async with engine.connect() as conn:
            total = 0
            for table in RUN_COLUMNS:
                query = text(f"SELECT count(*) FROM {table} WHERE {naming_run(table)}")
                total += int((await conn.execute(query, {"run": run_id})).scalar_one())
            return total
    finally:
        await engine.dispose()


async def test_a_pull_killed_inside_its_commit_leaves_the_state_as_it_was(
    tmp_path: Path, backend: str, state_url: str
) -> None:
    async with initialized_state(tmp_path, backend, state_url) as (sandbox, env):
        first = await cli(
            "pull", "--source", "fastly", "--as-of", "2024-07-10", cwd=tmp_path, env=env
        )
        assert first.code == 0, first.output
        url = state_url if backend != "sqlite" else f"sqlite+aiosqlite:///{tmp_path}/state/state.db"
        # A day later every collecting line has grown: the killed pull has changes to make.
        sandbox.state.set_today(date(2024, 7, 11))
        before, runs_before = await _state(url)

        held = tmp_path / "commit.held"
        pull = await asyncio.create_subprocess_exec(
            sys.executable,
            *("-m", "reconciler", "pull", "--source", "fastly", "--as-of", "2024-07-11"),
            cwd=tmp_path,
            env=clean_environment({**env, HOLD_BEFORE_COMMIT_ENV: str(held)}),
            stdin=asyncio.subprocess.DEVNULL,
            stdout=asyncio.subprocess.DEVNULL,
            stderr=asyncio.subprocess.DEVNULL,
        )
        try:

            async def holding() -> bool:
                assert pull.returncode is None, "the pull ended before its commit"
                return held.exists()

            await eventually(holding, timeout_s=120, every_s=0.02)
        finally:
            pull.send_signal(signal.SIGKILL)
            assert await pull.wait() == -signal.SIGKILL

        after, runs_after = await _state(url)
        assert after == before
        (killed_id, killed_status), *_ = runs_after[len(runs_before) :]
        assert killed_status == "running"  # left for housekeeping: never committed
        assert await _rows_naming(url, killed_id) == 0

        again = await cli(
            "pull", "--source", "fastly", "--as-of", "2024-07-11", cwd=tmp_path, env=env
        )
        assert again.code == 0, again.output
        changed, runs = await _state(url)
    assert runs[-1][1] == "succeeded"
    assert changed["line_versions"] != before["line_versions"]
    assert changed["usage_lines"] != before["usage_lines"]
