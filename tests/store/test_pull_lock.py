"""The per-source pull lock: a lease left by a pull process of this host that is gone (killed
with SIGKILL) is taken over at once; one of a live process, or of another host, is not."""

from __future__ import annotations

import asyncio
import logging
import os
import socket
import sys
from datetime import UTC, datetime

import pytest
import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncEngine

from reconciler.daemon.leases import leases_t
from reconciler.errors import SourceBusyError
from reconciler.store.pull_lock import pull_slot, source_lock

FOREVER = datetime(2999, 1, 1, tzinfo=UTC)


async def hold(engine: AsyncEngine, holder: str) -> None:
    async with engine.begin() as conn:
        await conn.execute(
            sa.insert(leases_t).values(
                slot=pull_slot("fastly"),
                holder=holder,
                acquired_at=datetime(2024, 7, 10, tzinfo=UTC),
                expires_at=FOREVER,
            )
        )


async def holders(engine: AsyncEngine) -> list[str]:
    async with engine.connect() as conn:
        return list((await conn.execute(sa.select(leases_t.c.holder))).scalars())


async def gone_pid() -> int:
    """The pid of a process of ours that has exited (and been reaped)."""
    process = await asyncio.create_subprocess_exec(sys.executable, "-c", "pass")
    await process.wait()
    return process.pid


async def test_the_lease_of_a_process_of_this_host_that_is_gone_is_taken_over(
    engine: AsyncEngine, caplog: pytest.LogCaptureFixture
) -> None:
    dead = f"{socket.gethostname()}:{await gone_pid()}"
    await hold(engine, dead)

    with caplog.at_level(logging.WARNING):
        async with source_lock(engine, "fastly", holder="me:1"):
            assert await holders(engine) == ["me:1"]

    assert await holders(engine) == []
    assert f"took over the pull lock of {dead}, a process of this host that is gone" in (
        caplog.text
    )


@pytest.mark.parametrize("where", ["a live process of this host", "another host"])
async def test_the_lease_of_a_live_process_or_of_another_host_is_kept(
    where: str, engine: AsyncEngine
) -> None:
    host = socket.gethostname() if where == "a live process of this host" else "ops-box"
    other = f"{host}:{os.getpid()}"
    await hold(engine, other)

    with pytest.raises(SourceBusyError, match=f"is being pulled by {other} since"):
        async with source_lock(engine, "fastly", holder="me:1"):
            pass

    assert await holders(engine) == [other]
