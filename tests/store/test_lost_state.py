"""A database that lost its tables is refused, not silently rebuilt; only ``init`` starts over."""

from __future__ import annotations

import sqlite3
from pathlib import Path

import pytest
from sqlalchemy import text

from reconciler.store.db import create_engine, current_revision, head_revision, upgrade
from reconciler.store.marker import LostStateError, marker_path
from tests.test_cli import run


def truncate(path: Path) -> None:
    for leftover in (path.with_name(path.name + "-wal"), path.with_name(path.name + "-shm")):
        leftover.unlink(missing_ok=True)
    path.write_bytes(b"")


def tables_in(path: Path) -> list[str]:
    with sqlite3.connect(path) as conn:
        return [r[0] for r in conn.execute("SELECT name FROM sqlite_master WHERE type = 'table'")]


async def lose_tables(url: str) -> None:
    """Empty the database as a truncated file or a dropped schema would."""
    engine = create_engine(url, create=True)
    try:
        if engine.dialect.name == "sqlite":
            assert engine.url.database is not None
            await engine.dispose()
            truncate(Path(engine.url.database))  # truncated to nothing
        else:
            async with engine.begin() as conn:
                await conn.execute(text("DROP SCHEMA public CASCADE"))
                await conn.execute(text("CREATE SCHEMA public"))
    finally:
        await engine.dispose()


async def test_an_emptied_database_with_a_marker_is_refused(state_url: str, tmp_path: Path) -> None:
    marker = marker_path(tmp_path / "state-dir", state_url)
    engine = create_engine(state_url, create=True)
    try:
        assert await upgrade(engine, marker=marker) == (None, head_revision())
        assert marker.is_file() and marker.stat().st_mode & 0o777 == 0o600
    finally:
        await engine.dispose()

    await lose_tables(state_url)
    engine = create_engine(state_url, create=True)
    try:
        with pytest.raises(LostStateError, match="is empty, but it held reconciler's state"):
            await upgrade(engine, marker=marker)
        assert await current_revision(engine) is None  # nothing was rebuilt
        # 'reconciler init' (fresh) is the one way to start over.
        assert await upgrade(engine, marker=marker, fresh=True) == (None, head_revision())
    finally:
        await engine.dispose()


async def test_a_first_start_without_a_marker_creates_the_state(
    state_url: str, tmp_path: Path
) -> None:
    marker = marker_path(tmp_path, state_url)
    engine = create_engine(state_url, create=True)
    try:
        assert await upgrade(engine, marker=marker) == (None, head_revision())
        assert await upgrade(engine, marker=marker) == (head_revision(), head_revision())
    finally:
        await engine.dispose()


def test_db_upgrade_refuses_a_truncated_state_db_and_init_starts_over(tmp_path: Path) -> None:
    assert run("init", cwd=tmp_path).returncode == 0
    state = tmp_path / ".reconciler" / "state.db"
    state.write_bytes(b"")
    refused = run("db", "upgrade", cwd=tmp_path)
    assert refused.returncode == 1
    assert "is empty, but it held reconciler's state" in refused.stderr
    assert "Traceback" not in refused.stderr
    assert tables_in(state) == []  # nothing was rebuilt
    again = run("init", cwd=tmp_path)
    assert again.returncode == 0, again.stderr
    assert run("db", "upgrade", cwd=tmp_path).stdout.startswith("already at ")
