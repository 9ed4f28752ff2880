"""Shared fixtures: a fresh state database on SQLite and on a real PostgreSQL server.

PostgreSQL tests use ``$RECONCILER_TEST_POSTGRES_URL`` (default: the local server's ``test``
database). Without a reachable server they skip with the reason, unless ``$CI`` or
``$RECONCILER_REQUIRE_POSTGRES`` is set: then they fail.
"""

from __future__ import annotations

import os
import uuid
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest
from sqlalchemy.engine import make_url
from sqlalchemy.ext.asyncio import AsyncEngine

from reconciler.store.db import create_engine, upgrade

DEFAULT_PG_URL = "postgresql+asyncpg://postgres@127.0.0.1:5432/test"


def _postgres_required() -> bool:
    return bool(os.environ.get("CI") or os.environ.get("RECONCILER_REQUIRE_POSTGRES"))


def _plain_dsn(url: str) -> str:
    return make_url(url).set(drivername="postgresql").render_as_string(hide_password=False)


@pytest.fixture(scope="session")
def postgres_admin_url() -> str:
    url = os.environ.get("RECONCILER_TEST_POSTGRES_URL", DEFAULT_PG_URL)
    import asyncio

    import asyncpg

    async def probe() -> None:
        conn = await asyncpg.connect(_plain_dsn(url), timeout=5)
        await conn.close()

    try:
        asyncio.run(probe())
    except Exception as exc:
        reason = f"PostgreSQL at {make_url(url).render_as_string()} unreachable: {exc}"
        if _postgres_required():
            pytest.fail(reason + " (required in CI)")
        pytest.skip(reason)
    return url


async def _create_database(admin_url: str) -> str:
    import asyncpg

    name = f"reconciler_test_{uuid.uuid4().hex[:12]}"
    conn = await asyncpg.connect(_plain_dsn(admin_url))
    try:
        await conn.execute(f'CREATE DATABASE "{name}"')
    finally:
        await conn.close()
    return make_url(admin_url).set(database=name).render_as_string(hide_password=False)


async def _drop_database(admin_url: str, url: str) -> None:
    import asyncpg

    name = make_url(url).database
    conn = await asyncpg.connect(_plain_dsn(admin_url))
    try:
        await conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
    finally:
        await conn.close()


@pytest.fixture
async def postgres_url(postgres_admin_url: str) -> AsyncIterator[str]:
    """A new, empty PostgreSQL database, dropped after the test."""
    url = await _create_database(postgres_admin_url)
    try:
        yield url
    finally:
        await _drop_database(postgres_admin_url, url)


@pytest.fixture
def sqlite_url(tmp_path: Path) -> str:
    return f"sqlite+aiosqlite:///{tmp_path / 'state' / 'state.db'}"


@pytest.fixture(params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def backend(request: pytest.FixtureRequest) -> str:
    return str(request.param)


@pytest.fixture
def state_url(backend: str, request: pytest.FixtureRequest) -> str:
    """An empty state database URL, once on SQLite and once on PostgreSQL."""
    if backend == "sqlite":
        return str(request.getfixturevalue("sqlite_url"))
    return str(request.getfixturevalue("postgres_url"))


@pytest.fixture
async def engine(state_url: str) -> AsyncIterator[AsyncEngine]:
    """A state database at the newest schema, on both backends."""
    engine = create_engine(state_url, create=True)
    await upgrade(engine)
    try:
        yield engine
    finally:
        await engine.dispose()


@pytest.fixture
def clean_env(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Iterator[Path]:
    """No reconciler variables from the outside world; run in an empty directory."""
    for name in list(os.environ):
        if name.startswith("RECONCILER_") or name in (
            "FASTLY_API_TOKEN",
            "SLACK_WEBHOOK_URL",
            "CREDENTIALS_DIRECTORY",
            "STATE_DIRECTORY",
        ):
            monkeypatch.delenv(name)
    monkeypatch.chdir(tmp_path)
    yield tmp_path
