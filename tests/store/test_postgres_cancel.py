"""A killed or hung client's PostgreSQL backend does not keep running its query for hours.

A process opens the state database the way reconciler does, takes a source's advisory lock
inside a transaction (as a reconcile transaction does) and runs a query that would take an
hour; it is killed with SIGKILL, so it cannot say goodbye. The server notices the client is
gone (``client_connection_check_interval``), ends the query and releases the lock, so the
next pull of that source does not block. A client that hangs with its connection open is
cut short by the configured ``statement_timeout``.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import sys
from collections.abc import AsyncIterator
from dataclasses import dataclass

import pytest
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine

from reconciler.settings import settings_from_mapping
from reconciler.store.db import configured_engine, create_engine
from tests.daemon.support import eventually

pytestmark = pytest.mark.postgres
TIMEOUT_S = 120

HOLDER = """
import asyncio, sys
from sqlalchemy import text
from reconciler.settings import settings_from_mapping
from reconciler.store.db import configured_engine, create_engine

async def main() -> None:
    if len(sys.argv) > 2:  # opened as configured, with this statement_timeout_s
        state = {"database_url": sys.argv[1], "statement_timeout_s": float(sys.argv[2])}
        engine = configured_engine(settings_from_mapping({"state": state}))
    else:
        engine = create_engine(sys.argv[1])
    async with engine.begin() as conn:
        await conn.execute(text("SELECT pg_advisory_xact_lock(hashtext('fastly'))"))
        pid = (await conn.execute(text("SELECT pg_backend_pid()"))).scalar_one()
        print(pid, flush=True)
        await conn.execute(text("SELECT pg_sleep(3600)"))

asyncio.run(main())
"""


async def backends(engine: AsyncEngine, pid: int, state: str | None = None) -> int:
    query = "SELECT count(*) FROM pg_stat_activity WHERE pid = :p"
    if state is not None:
        query += " AND state = :s"
    async with engine.connect() as conn:
        return int((await conn.execute(text(query), {"p": pid, "s": state})).scalar_one())


@dataclass(frozen=True)
class Holder:
    """A client process holding the source's advisory lock in a transaction, its hour-long
    query running on ``backend``; ``engine`` watches it from outside."""

    process: asyncio.subprocess.Process
    backend: int
    engine: AsyncEngine


@contextlib.asynccontextmanager
async def holder(postgres_url: str, *args: str) -> AsyncIterator[Holder]:
    process = await asyncio.create_subprocess_exec(
        sys.executable,
        "-c",
        HOLDER,
        postgres_url,
        *args,
        stdout=asyncio.subprocess.PIPE,
        env=dict(os.environ),
    )
    assert process.stdout is not None
    engine = create_engine(postgres_url)
    try:
        async with asyncio.timeout(TIMEOUT_S):
            backend = int((await process.stdout.readline()).decode())
        # Until its query runs.
        await eventually(
            lambda: backends(engine, backend, "active"), timeout_s=TIMEOUT_S, every_s=0.05
        )
        yield Holder(process, backend, engine)
    finally:
        if process.returncode is None:
            process.kill()
            await process.wait()
        await engine.dispose()


async def test_a_killed_pull_leaves_no_backend_holding_the_source_lock(postgres_url: str) -> None:
    async with holder(postgres_url) as held:
        held.process.send_signal(signal.SIGKILL)
        await held.process.wait()

        async def ended() -> bool:  # the server has ended the backend
            return not await backends(held.engine, held.backend)

        await eventually(ended, timeout_s=TIMEOUT_S, every_s=0.2)
        async with held.engine.connect() as conn:
            taken = (
                await conn.execute(text("SELECT pg_try_advisory_lock(hashtext('fastly'))"))
            ).scalar_one()
    assert taken is True


async def test_sessions_carry_the_configured_statement_timeout(postgres_url: str) -> None:
    settings = settings_from_mapping(
        {"state": {"database_url": postgres_url, "statement_timeout_s": 90}}
    )
    engine, plain = configured_engine(settings), create_engine(postgres_url)
    try:
        async with engine.connect() as conn:
            configured = (await conn.execute(text("SHOW statement_timeout"))).scalar_one()
        async with plain.connect() as conn:
            default = (await conn.execute(text("SHOW statement_timeout"))).scalar_one()
    finally:
        await engine.dispose()
        await plain.dispose()
    assert configured == "90s"
    assert default == "30min"  # [state] statement_timeout_s's default


async def test_the_server_cancels_the_statement_of_a_client_that_hangs(postgres_url: str) -> None:
    """A client that is stopped (SIGSTOP: its connection stays open, so the server cannot
    tell it is gone) does not keep its statement running: ``statement_timeout`` ends it."""
    async with holder(postgres_url, "2") as held:
        held.process.send_signal(signal.SIGSTOP)
        # Until the server has cancelled it, the client still stopped.
        await eventually(
            lambda: backends(held.engine, held.backend, "idle in transaction (aborted)"),
            timeout_s=TIMEOUT_S,
            every_s=0.2,
        )
