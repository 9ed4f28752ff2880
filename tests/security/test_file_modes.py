"""What reconciler writes is owner-only, whatever the umask: the state directory and database
(with its -wal and -shm files), reports and their directory, and saved plans.

The commands run through the real entry point under ``umask 000``, where anything created
with default permissions would be readable and writable by everyone.
"""

from __future__ import annotations

import asyncio
import os
import shlex
import stat
import sys
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
import pytest_asyncio

from tests.security.support import TIMEOUT_S, tampered_sandbox, write_config

pytestmark = pytest.mark.asyncio(loop_scope="module")


async def run_with_umask(umask: int, cwd: Path, env: dict[str, str], *args: str) -> str:
    """``umask U; python -m reconciler ARGS`` through a shell; its output (exit 0 asserted)."""
    command = f"umask {umask:03o} && exec {shlex.quote(sys.executable)} -m reconciler " + " ".join(
        shlex.quote(a) for a in args
    )
    base = {k: v for k, v in os.environ.items() if not k.startswith(("RECONCILER_", "FASTLY_"))}
    proc = await asyncio.create_subprocess_exec(
        "/bin/sh",
        "-c",
        command,
        cwd=cwd,
        env={**base, **env},
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.STDOUT,
    )
    async with asyncio.timeout(TIMEOUT_S):
        out, _ = await proc.communicate()
    assert proc.returncode == 0, out.decode()
    return out.decode()


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def written(tmp_path_factory: pytest.TempPathFactory) -> AsyncIterator[Path]:
    """A directory where init, two pulls, reports and a saved plan ran under umask 000."""
    directory = tmp_path_factory.mktemp("modes")
    async with tampered_sandbox() as (sandbox, _):
        write_config(directory, sandbox)
        env = {"FASTLY_API_TOKEN": sandbox.fastly_token}

        async def run(*args: str) -> str:
            return await run_with_umask(0o000, directory, env, *args)

        await run("init")
        await run("pull", "--as-of", "2024-07-10")
        await run("plan", "--as-of", "2024-07-10", "--out", "saved-plan.json")
        for fmt in ("html", "md"):  # every format goes through the same private writer
            await run("report", "--format", fmt, "--from", "2024-05", "--to", "2024-07")
        yield directory


def mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


async def test_the_state_directory_and_database_files_are_owner_only(written: Path) -> None:
    state = written / "state"
    assert mode(state) == 0o700
    files = sorted(state.glob("state.db*"))
    assert [f.name for f in files][:1] == ["state.db"]
    for path in files:  # state.db, and -wal / -shm while they exist
        assert mode(path) & 0o077 == 0, f"{path.name}: {oct(mode(path))}"


WHILE_OPEN = """
import asyncio, os, stat, sys
from sqlalchemy import text
from reconciler.store.db import create_engine

async def main() -> None:
    engine = create_engine("sqlite+aiosqlite:///" + sys.argv[1])
    async with engine.begin() as conn:
        await conn.execute(text("UPDATE state_meta SET value = value"))
    async with engine.connect():
        for suffix in ("-wal", "-shm"):
            print(suffix, oct(stat.S_IMODE(os.stat(sys.argv[1] + suffix).st_mode)))
    await engine.dispose()

asyncio.run(main())
"""


async def test_the_database_wal_and_shm_files_are_owner_only_while_open(written: Path) -> None:
    db = written / "state" / "state.db"
    command = f"umask 000 && exec {shlex.quote(sys.executable)} -c {shlex.quote(WHILE_OPEN)} {db}"
    proc = await asyncio.create_subprocess_exec(
        "/bin/sh", "-c", command, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.STDOUT
    )
    async with asyncio.timeout(TIMEOUT_S):
        out, _ = await proc.communicate()

    assert proc.returncode == 0, out.decode()
    assert out.decode().split() == ["-wal", "0o600", "-shm", "0o600"]


async def test_reports_and_their_directory_are_owner_only(written: Path) -> None:
    reports = written / "state" / "reports"
    assert mode(reports) == 0o700
    files = sorted(p for p in reports.rglob("*") if p.is_file())
    suffixes = {p.suffix for p in files}
    assert {".html", ".md", ".svg"} <= suffixes
    for path in files:
        assert mode(path) == 0o600, f"{path.name}: {oct(mode(path))}"


async def test_a_saved_plan_is_owner_only(written: Path) -> None:
    assert mode(written / "saved-plan.json") == 0o600
