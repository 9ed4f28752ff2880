"""The daemon's scheduled pull and a CLI ``pull`` of the same source never run at once: both
take the source's pull lock (``pull:<source>`` in ``job_leases``). A CLI pull while the
daemon pulls refuses the source with one line naming the daemon; a scheduled pull while a
CLI pull runs pulls nothing and hands its slot back for a retry. SQLite and PostgreSQL, the
CLI as a real process, the daemon in this process, each held inside a hung provider request.
"""

from __future__ import annotations

import asyncio
import logging
import sys
from pathlib import Path

import pytest
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncEngine

from reconciler.daemon.leases import leases_t
from reconciler.sandbox.server import SandboxServer
from reconciler.store.pull_lock import pull_slot
from reconciler.store.runs import runs_t
from tests.daemon.inprocess import MakeDaemon, make_daemon, sandbox
from tests.daemon.support import eventually, fastly_source, write_config
from tests.loop_support import clean_environment, run_cli

AS_OF = "2024-07-12"


def _cli_config(tmp_path: Path, state_url: str, sandbox: SandboxServer) -> Path:
    return write_config(
        tmp_path / "reconciler.toml", state_url, [fastly_source(sandbox, pull_every="7d")]
    )


async def _pull_lock_holder(engine: AsyncEngine) -> str | None:
    async with engine.connect() as conn:
        query = select(leases_t.c.holder).where(leases_t.c.slot == pull_slot("fastly"))
        return (await conn.execute(query)).scalar_one_or_none()


async def _runs(engine: AsyncEngine) -> list[tuple[str | None, str]]:
    async with engine.connect() as conn:
        rows = await conn.execute(select(runs_t.c.instance, runs_t.c.status).order_by(runs_t.c.id))
        return [(row.instance, row.status) for row in rows]


async def test_a_cli_pull_refuses_a_source_the_daemon_is_pulling(
    engine: AsyncEngine,
    state_url: str,
    sandbox: SandboxServer,
    make_daemon: MakeDaemon,
    tmp_path: Path,
) -> None:
    daemon = make_daemon("scheduler-1")
    (hang,) = sandbox.state.add_faults(
        [{"kind": "hang", "endpoint": "fastly.usage_metrics", "count": 1}]
    )
    pulling = asyncio.create_task(daemon.pull_source("fastly"))
    try:

        async def holding() -> str | None:
            return await _pull_lock_holder(engine) if hang.fired == 1 else None

        holder = await eventually(holding, timeout_s=60)
        assert holder.startswith("scheduler-1@"), holder
        env = clean_environment({"FASTLY_API_TOKEN": sandbox.fastly_token})
        ran = await run_cli(
            _cli_config(tmp_path, state_url, sandbox), "pull", "--as-of", AS_OF, env=env
        )
        assert ran.code == 1, ran
        assert ran.stdout.startswith(
            f"fastly: FAILED after 0.0s (0 API calls, 0 retries): source 'fastly' is being "
            f"pulled by {holder} since "
        ), ran.stdout
        assert "Traceback" not in ran.stdout + ran.stderr
        # The CLI recorded no run of its own, and left the daemon's lock alone.
        assert await _runs(engine) == [("scheduler-1", "running")]
        assert await _pull_lock_holder(engine) == holder
    finally:
        pulling.cancel()
        await asyncio.gather(pulling, return_exceptions=True)


async def test_a_scheduled_pull_leaves_a_source_a_cli_pull_holds(
    engine: AsyncEngine,
    state_url: str,
    sandbox: SandboxServer,
    make_daemon: MakeDaemon,
    tmp_path: Path,
    caplog: pytest.LogCaptureFixture,
) -> None:
    (hang,) = sandbox.state.add_faults(
        [{"kind": "hang", "endpoint": "fastly.usage_metrics", "count": 1}]
    )
    config = _cli_config(tmp_path, state_url, sandbox)
    env = clean_environment({"FASTLY_API_TOKEN": sandbox.fastly_token})
    cli = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "reconciler",
        "--config",
        str(config),
        "pull",
        "--as-of",
        AS_OF,
        env=env,
        stdin=asyncio.subprocess.DEVNULL,
        stdout=asyncio.subprocess.DEVNULL,
        stderr=asyncio.subprocess.DEVNULL,
    )
    try:

        async def holding() -> str | None:
            return await _pull_lock_holder(engine) if hang.fired == 1 else None

        holder = await eventually(holding, timeout_s=60)
        assert holder.endswith(f":{cli.pid}"), holder
        daemon = make_daemon("scheduler-1")
        with caplog.at_level(logging.WARNING, logger="reconciler.daemon.service"):
            assert await daemon.pull_source("fastly") is None
        assert f"source 'fastly' is being pulled by {holder} since " in caplog.text
        # Only the CLI's run: the daemon pulled nothing, and handed its slot back.
        assert await _runs(engine) == [(None, "running")]
        async with engine.connect() as conn:
            slots = (
                await conn.execute(
                    select(leases_t.c.slot, leases_t.c.outcome).where(
                        leases_t.c.slot != pull_slot("fastly")
                    )
                )
            ).all()
        assert [(slot.startswith("pull:fastly:"), outcome) for slot, outcome in slots] == [
            (True, "failed")
        ]
        assert await _pull_lock_holder(engine) == holder
    finally:
        cli.kill()
        await cli.wait()


__all__ = ["make_daemon", "sandbox"]
