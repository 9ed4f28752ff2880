"""``reconciler sandbox serve`` as a user runs it: a real process, stopped by SIGTERM."""

from __future__ import annotations

import asyncio
import re
import signal
import socket
import stat
import sys
from pathlib import Path

import aiohttp
from click.testing import CliRunner

from reconciler.sandbox.cli import sandbox_group


async def test_serve_prints_credentials_and_stops_on_sigterm(tmp_path: Path) -> None:
    edgerc = tmp_path / "sandbox.edgerc"
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "reconciler", "sandbox", "serve", "--port", "0",
        "--scenario", "tiny", "--today", "2024-06-05", "--seed", "9",
        "--edgerc-out", str(edgerc),
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )  # fmt: skip
    assert proc.stdout is not None
    lines: list[str] = []
    try:
        async with asyncio.timeout(30):
            while not lines or not lines[-1].startswith("contracts = "):
                line = await proc.stdout.readline()
                assert line, "the sandbox exited early"
                lines.append(line.decode().rstrip("\n"))
            match = re.search(r"serving (http://127\.0\.0\.1:\d+)$", lines[0])
            assert match, lines[0]
            base_url = match.group(1)
            assert lines[0].startswith("sandbox: scenario 'tiny' (seed 9), today 2024-06-05")
            assert "export FASTLY_API_TOKEN=sandbox-fastly-token" in lines
            assert "client_token = akab-sandbox-client-token" in lines
            assert f'base_url = "{base_url}"' in lines
            assert f'edgerc = "{edgerc}"' in lines
            async with (
                aiohttp.ClientSession() as session,
                session.get(f"{base_url}/_sandbox/clock") as resp,
            ):
                assert await resp.json() == {"today": "2024-06-05"}
            proc.send_signal(signal.SIGTERM)
            rest = await proc.stdout.read()
            assert await proc.wait() == 0
    finally:
        if proc.returncode is None:
            proc.kill()
            await proc.wait()
    assert b"sandbox: stopping" in rest
    assert stat.S_IMODE(edgerc.stat().st_mode) == 0o600
    assert f"host = {base_url.removeprefix('http://')}" in edgerc.read_text()


def test_every_command_has_help() -> None:
    runner = CliRunner()
    group = runner.invoke(sandbox_group, ["--help"])
    assert group.exit_code == 0 and "serve" in group.output
    serve = runner.invoke(sandbox_group, ["serve", "--help"])
    assert serve.exit_code == 0
    for option in ("--host", "--port", "--scenario", "--seed", "--today", "--edgerc-out"):
        assert option in serve.output
    assert "default, demo, invoices, large, tiny" in serve.output.replace("|", ", ").replace(
        "[", ""
    )


def test_bad_options_are_refused() -> None:
    runner = CliRunner()
    result = runner.invoke(sandbox_group, ["serve", "--today", "yesterday"])
    assert result.exit_code == 2 and "YYYY-MM-DD" in result.output
    result = runner.invoke(sandbox_group, ["serve", "--scenario", "huge"])
    assert result.exit_code == 2


def test_a_busy_port_is_one_clear_error() -> None:
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        result = CliRunner().invoke(sandbox_group, ["serve", "--port", str(port)])
    assert result.exit_code == 1
    assert f"cannot listen on 127.0.0.1:{port}: " in result.output
