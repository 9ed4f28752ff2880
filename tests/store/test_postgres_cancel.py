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
import os
import signal
import sys

import pytest
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine

from reconciler.settings import settings_from_mapping
from reconciler.store.db import configured_engine, create_engine

pytestmark = pytest.mark.postgres

HOLDER = """
import asyncio, sys
from sqlalchemy import text
from reconciler.store.db import create_engine

async def main() -> None:
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


async def test_a_killed_pull_leaves_no_backend_holding_the_source_lock(postgres_url: str) -> None:
    process = await asyncio.create_subprocess_exec(
        sys.executable,
        "-c",
        HOLDER,
        postgres_url,
        stdout=asyncio.subprocess.PIPE,
        env=dict(os.environ),
    )
    assert process.stdout is not None
    engine = create_engine(postgres_url)
    try:
        async with asyncio.timeout(120):
            backend = int((await process.stdout.readline()).decode())
            while True:  # until its query runs
                if await backends(engine, backend, "active"):
                    break
                await asyncio.sleep(0.05)
            process.send_signal(signal.SIGKILL)
            await process.wait()
            while True:  # until the server has ended the backend
                if not await backends(engine, backend):
                    break
                await asyncio.sleep(0.2)
        async with engine.connect() as conn:
            taken = (
                await conn.execute(text("SELECT pg_try_advisory_lock(hashtext('fastly'))"))
            ).scalar_one()
        assert taken is True
    finally:
        if process.returncode is None:
            process.kill()
            await process.wait()
        await engine.dispose()


STOPPED_HOLDER = """
import asyncio, sys
from sqlalchemy import text
from reconciler.settings import settings_from_mapping
from reconciler.store.db import configured_engine

async def main() -> None:
    state = {"database_url": sys.argv[1], "statement_timeout_s": float(sys.argv[2])}
    engine = configured_engine(settings_from_mapping({"state": state}))
    async with engine.begin() as conn:
        await conn.execute(text("SELECT pg_advisory_xact_lock(hashtext('fastly'))"))
        pid = (await conn.execute(text("SELECT pg_backend_pid()"))).scalar_one()
        print(pid, flush=True)
        await conn.execute(text("SELECT pg_sleep(3600)"))

asyncio.run(main())
"""


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
    process = await asyncio.create_subprocess_exec(
        sys.executable,
        "-c",
        STOPPED_HOLDER,
        postgres_url,
        "2",
        stdout=asyncio.subprocess.PIPE,
        env=dict(os.environ),
    )
    assert process.stdout is not None
    engine = create_engine(postgres_url)
    try:
        async with asyncio.timeout(120):
            backend = int((await process.stdout.readline()).decode())
            while True:  # until its statement runs
                if await backends(engine, backend, "active"):
                    break
                await asyncio.sleep(0.05)
            process.send_signal(signal.SIGSTOP)
            while True:  # until the server has cancelled it, the client still stopped
                if await backends(engine, backend, "idle in transaction (aborted)"):
                    break
                await asyncio.sleep(0.2)
    finally:
        if process.returncode is None:
            process.kill()
            await process.wait()
        await engine.dispose()
