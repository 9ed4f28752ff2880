"""``apply`` through the real entry point on a terminal: the interactive prompt (only 'yes'
acknowledges), and the second stale-plan check, at the moment of applying, that refuses a plan
the state moved past while the prompt was waiting. (A saved PLANFILE applies without a prompt:
tests/cli/test_apply.py.)"""

from __future__ import annotations

import asyncio
import os
import pty
import sys
from collections.abc import AsyncIterator
from datetime import timedelta
from pathlib import Path

import pytest

from reconciler.sandbox import SandboxServer, named_scenario
from tests.security.support import Ran, cli, write_config

EXPECT = [{"source": "*", "monthly_max": "1"}]  # every month of every source is over


@pytest.fixture
async def state(tmp_path: Path) -> AsyncIterator[tuple[SandboxServer, Path, dict[str, str]]]:
    async with SandboxServer(named_scenario("default"), host="127.0.0.1", port=0) as sandbox:
        config = write_config(tmp_path, sandbox, expectations=EXPECT)
        env = {"FASTLY_API_TOKEN": sandbox.fastly_token}
        as_of = sandbox.state.today.isoformat()
        for step in (("init",), ("pull", "--as-of", as_of)):
            ran = await cli("--config", str(config), *step, cwd=tmp_path, env=env)
            assert ran.code == 0, ran.output
        yield sandbox, config, env


async def apply_on_a_terminal(
    config: Path, cwd: Path, env: dict[str, str]
) -> tuple[asyncio.subprocess.Process, int]:
    """``apply`` with a terminal (a pty) as its standard input, and the pty's other end."""
    base = {k: v for k, v in os.environ.items() if not k.startswith(("RECONCILER_", "FASTLY_"))}
    primary, secondary = pty.openpty()
    proc = await asyncio.create_subprocess_exec(
        *(sys.executable, "-m", "reconciler", "--config", str(config), "apply"),
        cwd=cwd,
        env={**base, **env},
        stdin=secondary,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    os.close(secondary)
    return proc, primary


async def answered(config: Path, cwd: Path, env: dict[str, str], *, answer: str) -> Ran:
    """Plain ``apply`` on a terminal with ``answer`` typed at its prompt."""
    proc, primary = await apply_on_a_terminal(config, cwd, env)
    try:
        os.write(primary, answer.encode())
        async with asyncio.timeout(120):
            out, err = await proc.communicate()
    finally:
        os.close(primary)
    return Ran(proc.returncode or 0, out.decode(), err.decode())


async def open_items(config: Path, cwd: Path, env: dict[str, str]) -> int:
    ran = await cli(
        "--config", str(config), "plan", "--no-refresh", "--detailed-exitcode", cwd=cwd, env=env
    )
    assert ran.code in (0, 2), ran.output
    return ran.code


async def test_the_prompt_acknowledges_only_on_yes(
    state: tuple[SandboxServer, Path, dict[str, str]], tmp_path: Path
) -> None:
    _, config, env = state

    refused = await answered(config, tmp_path, env, answer="y\n")
    assert refused.code == 1 and "Apply cancelled." in refused.stdout
    assert "Only 'yes' will be accepted" in refused.stdout
    assert await open_items(config, tmp_path, env) == 2  # nothing was acknowledged

    applied = await answered(config, tmp_path, env, answer="yes\n")
    assert applied.code == 0, applied.output
    assert "Apply complete!" in applied.stdout and " 0 items" not in applied.stdout
    assert await open_items(config, tmp_path, env) == 0


async def test_a_plan_the_state_moved_past_while_the_prompt_waited_is_refused(
    state: tuple[SandboxServer, Path, dict[str, str]], tmp_path: Path
) -> None:
    sandbox, config, env = state
    proc, primary = await apply_on_a_terminal(config, tmp_path, env)
    assert proc.stdout is not None
    async with asyncio.timeout(120):
        shown = b""
        while b"Only 'yes' will be accepted" not in shown:
            chunk = await proc.stdout.read(4096)
            assert chunk, shown.decode()
            shown += chunk
        # While the prompt waits, a pull of the next day changes the state (new versions).
        sandbox.state.set_today(sandbox.state.today + timedelta(days=1))
        as_of = sandbox.state.today.isoformat()
        pulled = await cli("--config", str(config), "pull", "--as-of", as_of, cwd=tmp_path, env=env)
        assert pulled.code == 0, pulled.output
        os.write(primary, b"yes\n")
        out, err = await proc.communicate()
    os.close(primary)
    assert proc.returncode == 1, (out + err).decode()
    assert "Apply complete!" not in out.decode()
    assert err.decode().startswith("error: the state changed since this plan was made (serial ")
    assert await open_items(config, tmp_path, env) == 2  # still to review
