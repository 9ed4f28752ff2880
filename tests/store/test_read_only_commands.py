"""Read-only commands never write: with another process holding the SQLite write lock (a pull
committing), ``plan --no-refresh``, ``state list`` and ``db current`` still answer at once."""

from __future__ import annotations

import contextlib
import sqlite3
from collections.abc import Iterator
from pathlib import Path

import pytest

from reconciler.store.db import head_revision, migrations_directory
from tests.test_cli import run


@pytest.fixture
def state(tmp_path: Path) -> Path:
    assert run("init", cwd=tmp_path).returncode == 0
    (db,) = tmp_path.glob("**/state.db")
    return db


@contextlib.contextmanager
def write_locked(db: Path) -> Iterator[None]:
    """Hold SQLite's write lock the way a committing pull does, until the block ends."""
    conn = sqlite3.connect(db, isolation_level=None)
    try:
        conn.execute("BEGIN IMMEDIATE")
        conn.execute("UPDATE state_meta SET key = key")
        yield
    finally:
        conn.rollback()
        conn.close()


@pytest.mark.parametrize(
    "command",
    [("plan", "--no-refresh"), ("state", "list"), ("db", "current")],
    ids=" ".join,
)
def test_a_read_only_command_works_while_a_writer_holds_the_lock(
    state: Path, tmp_path: Path, command: tuple[str, ...]
) -> None:
    with write_locked(state):
        # Were the command to wait for the lock it would fail after the busy timeout (30 s)
        # with "database is locked"; the lock is held for as long as the command runs.
        result = run(*command, cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    assert "locked" not in result.stderr


def test_the_expected_revision_is_the_alembic_scripts_head() -> None:
    from alembic.config import Config
    from alembic.script import ScriptDirectory

    config = Config()
    config.set_main_option("script_location", str(migrations_directory()))
    assert head_revision() == ScriptDirectory.from_config(config).get_current_head()
