"""``reconciler alerts test|status|flush`` through the real entry point, against the stand-in.

The CLI runs as a subprocess started from the event loop, so the stand-in keeps serving.
"""

from __future__ import annotations

import asyncio
import json
import os
import re
import sys
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from sqlalchemy.ext.asyncio import AsyncEngine

from reconciler.sandbox.slack import SlackStandIn
from reconciler.settings import Settings, load_settings
from reconciler.store.db import create_engine, upgrade
from tests.alerts.helpers import make_item
from tests.alerts.outbox_support import WEBHOOK_ENV, record_run

CONFIG = f"""
[state]
directory = "state"

[[sources]]
name = "prod"
provider = "fastly"

[[sources]]
name = "edge"
provider = "akamai"

[alerts.slack]
webhook_url_env = "{WEBHOOK_ENV}"

[[alerts.slack.routes]]
source = "edge"
webhook_url_file = "edge-webhook"
"""


@dataclass
class Result:
    code: int
    stdout: str
    stderr: str


@dataclass
class Cli:
    directory: Path
    settings: Settings
    engine: AsyncEngine

    async def run(self, *args: str, env: dict[str, str] | None = None) -> Result:
        base = {k: v for k, v in os.environ.items() if not k.startswith("RECONCILER_")}
        for name in ("SLACK_WEBHOOK_URL", WEBHOOK_ENV, "CREDENTIALS_DIRECTORY", "STATE_DIRECTORY"):
            base.pop(name, None)
        process = await asyncio.create_subprocess_exec(
            sys.executable,
            "-m",
            "reconciler",
            "--config",
            "reconciler.toml",
            *args,
            cwd=self.directory,
            env={**base, **(env or {})},
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.PIPE,
        )
        async with asyncio.timeout(60):
            out, err = await process.communicate()
        assert process.returncode is not None
        return Result(process.returncode, out.decode(), err.decode())

    async def queue(self, count: int, source: str = "prod") -> None:
        for run_id in range(1, count + 1):
            item = make_item(fingerprint=f"{source}-{run_id}")
            await record_run(self.engine, self.settings, [item], run_id=run_id, source=source)


@pytest.fixture
async def cli(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> AsyncIterator[Cli]:
    (tmp_path / "reconciler.toml").write_text(CONFIG, encoding="utf-8")
    monkeypatch.chdir(tmp_path)
    settings, _ = load_settings(Path("reconciler.toml"))
    engine = create_engine(settings.database_url, create=True)
    await upgrade(engine)
    try:
        yield Cli(tmp_path, settings, engine)
    finally:
        await engine.dispose()


def assert_no_secret(slack: SlackStandIn, *texts: str) -> None:
    for name in ("default", "edge"):
        url = slack.webhook_url(name)
        for text in texts:
            assert url not in text
            assert url.rsplit("/", 1)[1] not in text


async def test_alerts_test_sends_a_labelled_message(cli: Cli, slack: SlackStandIn) -> None:
    result = await cli.run("alerts", "test", env={WEBHOOK_ENV: slack.webhook_url()})
    assert (result.code, result.stdout) == (0, "webhook default: delivered (HTTP 200 ok)\n")
    [message] = slack.received["default"]
    assert message["text"].startswith("[TEST] reconciler test message from ")
    assert_no_secret(slack, result.stdout, result.stderr)


async def test_alerts_test_reports_slack_refusing(cli: Cli, slack: SlackStandIn) -> None:
    slack.answer_next("channel_not_found")
    result = await cli.run("alerts", "test", env={WEBHOOK_ENV: slack.webhook_url()})
    assert result.code == 1
    assert result.stdout == "webhook default: refused (HTTP 404 channel_not_found)\n"
    assert result.stderr.endswith("error: the test message was not delivered\n")
    assert_no_secret(slack, result.stdout, result.stderr)


async def test_alerts_test_of_a_source_route_and_without_webhook(
    cli: Cli, slack: SlackStandIn
) -> None:
    (cli.directory / "edge-webhook").write_text(slack.webhook_url("edge"), encoding="utf-8")
    (cli.directory / "edge-webhook").chmod(0o600)
    result = await cli.run("alerts", "test", "--source", "edge")
    assert (result.code, result.stdout) == (0, "webhook source:edge: delivered (HTTP 200 ok)\n")
    assert len(slack.received["edge"]) == 1

    result = await cli.run("alerts", "test")
    assert result.code == 1
    assert result.stderr == (
        "error: invalid configuration:\n  alerts.slack.webhook_url_env: Slack webhook URL not "
        f"found: looked in environment variable {WEBHOOK_ENV}\n"
    )


async def test_alerts_status_without_webhook(cli: Cli, slack: SlackStandIn) -> None:
    await cli.queue(2)
    result = await cli.run("alerts", "status")
    assert result.code == 0, result.stderr
    lines = result.stdout.splitlines()
    assert re.fullmatch(r"queue: 2 messages waiting, oldest queued \d+d \d\dh ago", lines[0])
    assert lines[1:] == [
        "delivery: FAILING (see below)",
        "last success: never",
        "sent: 0, failed: 0",
        "webhook default: 2 waiting, URL NOT configured",
        "no webhook configured: 2 messages kept undelivered",
        f"  alerts.slack.webhook_url_env: Slack webhook URL not found: looked in "
        f"environment variable {WEBHOOK_ENV}",
    ]

    result = await cli.run("alerts", "status", "--json")
    status = json.loads(result.stdout)
    assert status["waiting"] == 2
    assert status["counts"] == {"pending": 2, "sending": 0, "sent": 0, "failed": 0, "withdrawn": 0}
    assert status["undelivered_no_webhook"] == 2
    assert status["oldest_pending_at"] == "2024-05-01T12:00:00Z"
    assert status["destinations"][0]["configured"] is False


async def test_alerts_flush_delivers_now_and_reports(cli: Cli, slack: SlackStandIn) -> None:
    await cli.queue(3)
    env = {WEBHOOK_ENV: slack.webhook_url()}
    result = await cli.run("alerts", "flush")
    assert (result.code, result.stdout) == (
        1,
        "0 sent, 0 deferred, 0 failed; no webhook configured: 3 messages kept undelivered\n",
    )
    assert slack.attempts == []

    slack.answer_next("invalid_payload")
    result = await cli.run("alerts", "flush", env=env)
    assert result.code == 1
    assert result.stdout == (
        "2 sent, 0 deferred, 1 failed\n"
        "  #1 (prod): webhook default: permanent (HTTP 400 invalid_payload)\n"
    )
    assert [m["blocks"][0]["text"]["text"] for m in slack.received["default"]] == [
        "reconciler · prod · run 2",
        "reconciler · prod · run 3",
    ]
    result = await cli.run("alerts", "flush", env=env)
    assert (result.code, result.stdout) == (0, "nothing to deliver\n")

    result = await cli.run("alerts", "status", env=env)
    lines = result.stdout.splitlines()
    assert lines[0] == "queue: empty"
    assert re.fullmatch(r"last success: \S+Z \(\d+s ago\)", lines[1])
    assert lines[2:] == [
        "sent: 2, failed: 1",
        "  failed #1 (run, source prod run 1, 1 attempt): "
        "webhook default: permanent (HTTP 400 invalid_payload)",
    ]
    assert_no_secret(slack, result.stdout, result.stderr)
