"""The SQLite main file holds the state between runs; ``db backup`` copies a live database."""

from __future__ import annotations

import shutil
import sqlite3
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from sqlalchemy.ext.asyncio import AsyncEngine

from reconciler.errors import StateError
from reconciler.providers.http import HttpClient
from reconciler.refresh import refresh_source
from reconciler.sandbox.scenario import named_scenario
from reconciler.sandbox.server import SandboxServer
from reconciler.settings import settings_from_mapping
from reconciler.store.backup import backup
from reconciler.store.db import create_engine, sqlite_path, upgrade
from tests.test_cli import run


@pytest.fixture
async def sandbox() -> AsyncIterator[SandboxServer]:
    async with SandboxServer(named_scenario("default"), host="127.0.0.1", port=0) as server:
        yield server


@pytest.fixture
async def live(sqlite_url: str) -> AsyncIterator[AsyncEngine]:
    """A SQLite state kept open, as a daemon keeps it."""
    engine = create_engine(sqlite_url, create=True)
    await upgrade(engine)
    try:
        yield engine
    finally:
        await engine.dispose()


def counts(path: Path) -> tuple[int, int]:
    with sqlite3.connect(path) as conn:
        runs = conn.execute("SELECT count(*) FROM pull_runs").fetchone()[0]
        lines = conn.execute("SELECT count(*) FROM usage_lines").fetchone()[0]
    return int(runs), int(lines)


async def pull(engine: AsyncEngine, sandbox: SandboxServer) -> None:
    source = {"name": "fastly", "provider": "fastly", "base_url": sandbox.base_url}
    settings = settings_from_mapping({"sources": [source]})
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


async def test_a_plain_copy_of_state_db_between_runs_holds_the_state(
    live: AsyncEngine, sandbox: SandboxServer, sqlite_url: str, tmp_path: Path
) -> None:
    await pull(live, sandbox)
    await pull(live, sandbox)
    path = sqlite_path(sqlite_url)
    assert path is not None
    copy = tmp_path / "copy.db"
    shutil.copyfile(path, copy)  # the main file alone, while the engine is still open
    runs, lines = counts(copy)
    assert runs == 2 and lines > 0


async def test_db_backup_copies_a_live_database_owner_only(
    live: AsyncEngine, sandbox: SandboxServer, sqlite_url: str, tmp_path: Path
) -> None:
    await pull(live, sandbox)
    target = tmp_path / "backup.db"
    size = await backup(live, sqlite_path(sqlite_url), target)
    assert size == target.stat().st_size > 0
    assert target.stat().st_mode & 0o777 == 0o600
    path = sqlite_path(sqlite_url)
    assert path is not None
    assert counts(target) == counts(path)
    with pytest.raises(StateError, match="exists already"):
        await backup(live, path, target)


@pytest.mark.postgres
@pytest.mark.parametrize("backend", ["postgres"], indirect=True)
async def test_db_backup_of_postgresql_points_to_pg_dump(
    engine: AsyncEngine, tmp_path: Path
) -> None:
    with pytest.raises(StateError, match="back up PostgreSQL with pg_dump"):
        await backup(engine, None, tmp_path / "x.db")


def test_db_backup_command(tmp_path: Path) -> None:
    assert run("init", cwd=tmp_path).returncode == 0
    done = run("db", "backup", "saved.db", cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    assert done.stdout.startswith("backed up ") and "saved.db" in done.stdout
    again = run("db", "backup", "saved.db", cwd=tmp_path)
    assert again.returncode == 1
    assert again.stderr.strip().endswith("give a new file name for the backup")
