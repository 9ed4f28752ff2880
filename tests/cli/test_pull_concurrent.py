"""``pull`` through its real entry point: sources pulled side by side, progress on a terminal
only (a pty), and one pull of a source at a time (a lease another live pull holds refuses the
second with one line; one left by a process that died is taken over). SQLite and PostgreSQL.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import pty
import sys
from datetime import UTC, datetime, timedelta
from pathlib import Path

import sqlalchemy as sa

from reconciler.store.db import create_engine
from reconciler.store.pull_lock import leases_t, pull_slot
from tests.security.support import TIMEOUT_S, cli, initialized_state

HELD_SINCE = datetime(2024, 7, 10, 6, 0, tzinfo=UTC)


async def _on_pty(*args: str, cwd: Path, env: dict[str, str]) -> tuple[int, str, str]:
    """``reconciler ARGS`` with stderr on a terminal (a pty); returns (code, stdout, tty)."""
    primary, secondary = pty.openpty()
    base = {k: v for k, v in os.environ.items() if not k.startswith(("RECONCILER_", "FASTLY_"))}
    proc = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "reconciler",
        *args,
        cwd=cwd,
        env={**base, **env},
        stdin=asyncio.subprocess.DEVNULL,
        stdout=asyncio.subprocess.PIPE,
        stderr=secondary,
    )
    os.close(secondary)
    loop = asyncio.get_running_loop()

    def drain() -> bytes:
        chunks = []
        with contextlib.suppress(OSError):  # EIO once the child closed its end
            while chunk := os.read(primary, 4096):
                chunks.append(chunk)
        return b"".join(chunks)

    try:
        async with asyncio.timeout(TIMEOUT_S):
            tty, (out, _) = await asyncio.gather(
                loop.run_in_executor(None, drain), proc.communicate()
            )
    finally:
        os.close(primary)
        if proc.returncode is None:
            proc.kill()
            await proc.wait()
    return proc.returncode or 0, out.decode(), tty.decode()


async def test_pull_shows_progress_on_a_terminal_only(
    tmp_path: Path, backend: str, state_url: str
) -> None:
    async with initialized_state(tmp_path, backend, state_url) as (_, env):
        code, out, tty = await _on_pty("pull", "--as-of", "2024-07-10", cwd=tmp_path, env=env)
        assert code == 0, out + tty
        assert [line.split(":")[0] for line in out.splitlines()] == ["fastly", "akamai"]
        updates = [u for u in tty.replace("\r\n", "\n").split("\r\x1b[K") if u.strip()]
        assert updates, tty
        last = updates[-1]
        for source in ("fastly", "akamai"):
            assert f"{source}: " in last, last
        assert " pages, " in last and " lines, " in last and " lines/s" in last, last
        assert "Traceback" not in tty
        # -q: the summary of a good pull and the progress are both left out.
        code, out, tty = await _on_pty("pull", "-q", "--as-of", "2024-07-11", cwd=tmp_path, env=env)
        assert (code, out, tty) == (0, "", "")
        # Not a terminal: no progress either.
        piped = await cli("pull", "--as-of", "2024-07-12", cwd=tmp_path, env=env)
    assert piped.code == 0 and piped.stderr == "", piped.stderr
    assert [line.split(":")[0] for line in piped.stdout.splitlines()] == ["fastly", "akamai"]


async def _hold(url: str, source: str, holder: str, expires_at: datetime) -> None:
    engine = create_engine(url)
    try:
        async with engine.begin() as conn:
            await conn.execute(
                sa.insert(leases_t).values(
                    slot=pull_slot(source),
                    holder=holder,
                    acquired_at=HELD_SINCE,
                    expires_at=expires_at,
                )
            )
    finally:
        await engine.dispose()


async def _held(url: str) -> list[str]:
    engine = create_engine(url)
    try:
        async with engine.connect() as conn:
            return list((await conn.execute(sa.select(leases_t.c.holder))).scalars())
    finally:
        await engine.dispose()


async def test_a_second_pull_of_a_source_refuses_while_another_holds_it(
    tmp_path: Path, backend: str, state_url: str
) -> None:
    async with initialized_state(tmp_path, backend, state_url) as (_, env):
        # Another live pull of fastly: its lease runs for years yet.
        await _hold(state_url, "fastly", "ops-box:4242", datetime(2999, 1, 1, tzinfo=UTC))
        ran = await cli("pull", "--as-of", "2024-07-10", cwd=tmp_path, env=env)
        assert ran.code == 1, ran.output
        fastly, akamai = ran.stdout.splitlines()
        assert fastly == (
            "fastly: FAILED after 0.0s (0 API calls, 0 retries): source 'fastly' is being "
            "pulled by ops-box:4242 since 2024-07-10 06:00:00Z (another 'reconciler pull' or "
            "'plan', or the daemon): nothing was pulled; run it again when that pull has finished"
        )
        assert akamai.startswith("akamai: ") and " lines read, " in akamai, akamai
        # Only the other pull's lease is left: this one released its own.
        assert await _held(state_url) == ["ops-box:4242"]
        runs = await cli("state", "show", "--json", cwd=tmp_path, env=env)
    assert "Traceback" not in ran.output + runs.output


async def test_a_lease_left_by_a_pull_that_died_is_taken_over(
    tmp_path: Path, backend: str, state_url: str
) -> None:
    async with initialized_state(tmp_path, backend, state_url) as (_, env):
        await _hold(state_url, "fastly", "gone-box:1", HELD_SINCE + timedelta(minutes=2))
        ran = await cli("pull", "--as-of", "2024-07-10", cwd=tmp_path, env=env)
    assert ran.code == 0, ran.output
    assert [line.split(":")[0] for line in ran.stdout.splitlines()] == ["fastly", "akamai"]
    assert await _held(state_url) == []
