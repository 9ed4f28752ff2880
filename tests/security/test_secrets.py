"""Secrets never leave the places they are kept.

The Fastly token, the ``.edgerc`` client secret (and its tokens) and the Slack webhook URL
are unique random values here, so finding one anywhere is a leak. Everything a user or an
operator can see is searched: the output and logs (at the most verbose level) of every
command, including failures where the provider and Slack echo the credentials they got back
in their error bodies, the daemon's log, every report format, a saved plan, every row of
every table of the state database, what Slack received, and the text, repr and traceback of
the errors a pull raises.
"""

from __future__ import annotations

import asyncio
import json
import signal
import sys
import traceback
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from datetime import date
from pathlib import Path

import pytest
import pytest_asyncio

from reconciler.errors import ProviderError
from reconciler.providers.fastly import FastlyProvider
from reconciler.providers.http import HttpClient
from reconciler.sandbox.slack import Answer, SlackStandIn
from reconciler.settings import FastlySourceSettings
from tests.security.support import (
    cli,
    files_text,
    sqlite_dump,
    tampered_sandbox,
    unique_credentials,
    write_config,
)

pytestmark = pytest.mark.asyncio(loop_scope="module")


@dataclass
class Exposure:
    """Everything visible after a session of commands, and the secrets to look for."""

    secrets: dict[str, str]
    outputs: dict[str, str] = field(default_factory=dict)
    database: str = ""
    files: str = ""
    slack: str = ""
    errors: list[str] = field(default_factory=list)

    def leaks(self, text: str) -> list[str]:
        return [name for name, value in self.secrets.items() if value in text]


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def exposure(tmp_path_factory: pytest.TempPathFactory) -> AsyncIterator[Exposure]:
    directory = tmp_path_factory.mktemp("secrets")
    credentials = unique_credentials()
    async with tampered_sandbox(credentials) as (sandbox, tamper), SlackStandIn() as slack:
        url = slack.webhook_url()
        found = Exposure(
            {
                "Fastly token": credentials.fastly_token,
                "EdgeGrid client secret": credentials.client_secret,
                "EdgeGrid access token": credentials.access_token,
                "EdgeGrid client token": credentials.client_token,
                "Slack webhook URL": url,
                "Slack webhook token": url.rsplit("/", 1)[1],
            }
        )
        write_config(
            directory,
            sandbox,
            expectations=[{"source": "*", "monthly_max": "1"}],
            reports={"formats": ["html", "md", "json", "focus-csv"]},
        )
        env = {"FASTLY_API_TOKEN": credentials.fastly_token, "SLACK_WEBHOOK_URL": url}

        async def run(name: str, *args: str, **extra: str) -> None:
            ran = await cli("-vvv", *args, cwd=directory, env={**env, **extra})
            found.outputs[name] = ran.output

        await run("init", "init")
        await run("config check", "config", "check")
        await run("pull", "pull", "--as-of", "2024-07-10")
        sandbox.state.add_events(
            [{"kind": "restate", "provider": "akamai", "day": "2024-07-11", "month": "2024-05"}]
        )
        sandbox.state.set_today(date(2024, 7, 11))
        await run("plan", "plan", "--as-of", "2024-07-11", "--out", str(directory / "plan.json"))
        await run("alerts test", "alerts", "test")
        slack.answer_next(Answer(500, f"no such hook {url}"))  # Slack echoes the URL
        await run("alerts flush (echoed)", "alerts", "flush")
        await run("alerts flush", "alerts", "flush")
        await run("alerts status", "alerts", "status", "--json")
        for fmt in ("html", "md", "json", "focus-csv"):
            await run(f"report {fmt}", "report", "--format", fmt)
        tamper.leak = True  # the providers now echo every header they receive
        await run("pull (echoed)", "pull", "--as-of", "2024-07-11")
        tamper.leak = False
        await run("pull (wrong token)", "pull", FASTLY_API_TOKEN=credentials.fastly_token[::-1])
        found.outputs["daemon"] = await run_daemon(directory, sandbox.base_url, env)
        found.errors = await pull_errors(sandbox.base_url, credentials.fastly_token, tamper)
        found.database = sqlite_dump(directory / "state" / "state.db")
        found.files = files_text(directory / "state") + (directory / "plan.json").read_text()
        found.slack = json.dumps([slack.received, [r.payload for r in slack.rejected]])
        yield found


def free_port() -> int:
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


async def run_daemon(directory: Path, sandbox_url: str, env: dict[str, str]) -> str:
    """``reconciler -vvv run`` for a few seconds, then SIGTERM; its log."""
    import os

    proc = await asyncio.create_subprocess_exec(
        sys.executable,
        *("-m", "reconciler", "-vvv", "run", "--sandbox-clock", sandbox_url),
        cwd=directory,
        env={
            **{k: v for k, v in os.environ.items() if not k.startswith(("RECONCILER_", "NOTIFY"))},
            **env,
            "RECONCILER_DAEMON__LISTEN": f"127.0.0.1:{free_port()}",
            "RECONCILER_DAEMON__FIRST_PULL_DELAY_S": "0",
            "RECONCILER_DAEMON__JITTER_S": "0",
        },
        stdin=asyncio.subprocess.DEVNULL,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.STDOUT,
    )
    assert proc.stdout is not None
    lines: list[str] = []
    try:
        async with asyncio.timeout(60):
            while line := (await proc.stdout.readline()).decode():
                lines.append(line)
                if "akamai:" in line and "lines read" in line:
                    break  # both sources pulled (fastly first)
            proc.send_signal(signal.SIGTERM)
            lines.append((await proc.stdout.read()).decode())
            await proc.wait()
    finally:
        if proc.returncode is None:
            proc.kill()
            await proc.wait()
    return "".join(lines)


async def pull_errors(base_url: str, token: str, tamper: object) -> list[str]:
    """What the errors of a pull from an echoing provider say, in every form."""
    settings = FastlySourceSettings(
        name="fastly", provider="fastly", base_url=base_url, max_retries=0
    )
    texts = []
    setattr(tamper, "leak", True)  # noqa: B010 (the fixture's Tamper, typed loosely here)
    try:
        async with HttpClient() as http:
            provider = FastlyProvider.from_settings(settings, 0, http, {"FASTLY_API_TOKEN": token})
            with pytest.raises(ProviderError) as caught:
                async for _ in provider.pull(date(2024, 7, 11)):
                    pass
    finally:
        setattr(tamper, "leak", False)  # noqa: B010
    error = caught.value
    texts += [str(error), repr(error), "".join(traceback.format_exception(error))]
    cause = error.__cause__
    while cause is not None:
        texts += [str(cause), repr(cause)]
        cause = cause.__cause__
    return texts


async def test_the_session_really_used_the_secrets(exposure: Exposure) -> None:
    # The echoing provider and Slack did get them: the searches below are not vacuous.
    assert "FAILED" in exposure.outputs["pull (echoed)"]
    assert "***" in exposure.outputs["pull (echoed)"] + "".join(exposure.errors)
    assert "lines read" in exposure.outputs["daemon"]
    assert "delivered" in exposure.outputs["alerts test"] or "ok" in exposure.outputs["alerts test"]
    assert exposure.database and exposure.files and exposure.slack


@pytest.mark.parametrize(
    "command",
    [
        "init",
        "config check",
        "pull",
        "plan",
        "alerts test",
        "alerts flush (echoed)",
        "alerts flush",
        "alerts status",
        "report html",
        "report md",
        "report json",
        "report focus-csv",
        "pull (echoed)",
        "pull (wrong token)",
        "daemon",
    ],
)
async def test_no_secret_in_command_output_or_logs(exposure: Exposure, command: str) -> None:
    assert exposure.leaks(exposure.outputs[command]) == []


async def test_no_secret_in_the_database(exposure: Exposure) -> None:
    assert "pull_runs" in exposure.database or exposure.database  # every table was dumped
    assert exposure.leaks(exposure.database) == []


async def test_no_secret_in_reports_or_saved_plans(exposure: Exposure) -> None:
    assert exposure.leaks(exposure.files) == []


async def test_no_secret_in_slack_messages(exposure: Exposure) -> None:
    assert exposure.leaks(exposure.slack) == []


async def test_no_secret_in_errors_raised_by_a_pull(exposure: Exposure) -> None:
    assert exposure.errors
    assert exposure.leaks("\n".join(exposure.errors)) == []
