"""A killed client's PostgreSQL backend does not keep running its query and holding its locks.

A process opens the state database the way reconciler does, takes a source's advisory lock
inside a transaction (as a reconcile transaction does) and runs a query that would take an
hour; it is killed with SIGKILL, so it cannot say goodbye. The server notices the client is
gone (``client_connection_check_interval``), ends the query and releases the lock, so the
next pull of that source does not block.
"""

from __future__ import annotations

import asyncio
import os
import signal
import sys

import pytest
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine

from reconciler.store.db import create_engine

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
