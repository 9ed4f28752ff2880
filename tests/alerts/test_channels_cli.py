"""``alerts test --channel`` and ``alerts status`` per channel, through the real entry point,
against the channel stand-ins."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from reconciler.sandbox.channels import ChannelStandIn
from reconciler.settings import load_settings
from reconciler.store.db import create_engine, upgrade
from tests.alerts.channel_support import ROUTING_KEY, WEBHOOK_SECRET
from tests.alerts.helpers import make_item
from tests.alerts.outbox_support import record_run
from tests.alerts.test_alerts_cli import Cli


def config(channels: ChannelStandIn) -> str:
    return f"""
[state]
directory = "state"

[alerts.slack]
enabled = false

[[alerts.channels]]
name = "ops"
type = "webhook"
url_env = "OPS_URL"
secret_env = "OPS_SECRET"

[[alerts.channels]]
name = "pager"
type = "pagerduty"
secret_env = "PD_KEY"
events_url = "{channels.events_url}"

[[alerts.channels]]
name = "teams"
type = "teams"
url_env = "TEAMS_URL"
"""


@pytest.fixture
async def cli(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, channels: ChannelStandIn
) -> AsyncIterator[Cli]:
    (tmp_path / "reconciler.toml").write_text(config(channels), encoding="utf-8")
    monkeypatch.chdir(tmp_path)
    settings, _ = load_settings(Path("reconciler.toml"))
    engine = create_engine(settings.database_url, create=True)
    await upgrade(engine)
    try:
        yield Cli(tmp_path, settings, engine)
    finally:
        await engine.dispose()


async def test_alerts_test_sends_a_labelled_message_through_each_channel(
    cli: Cli, channels: ChannelStandIn
) -> None:
    env = {
        "OPS_URL": channels.webhook_url("ops"),
        "OPS_SECRET": WEBHOOK_SECRET,
        "PD_KEY": ROUTING_KEY,
        "TEAMS_URL": channels.teams_url("t"),
    }
    result = await cli.run("alerts", "test", "--channel", "ops", env=env)
    assert (result.code, result.stdout) == (0, "webhook channel:ops: delivered (HTTP 204 ok)\n")
    [body] = channels.webhooks["ops"]
    assert (body["type"], body["version"]) == ("test", "1")
    assert body["message"].startswith("[TEST] reconciler test message from ")

    result = await cli.run("alerts", "test", "--channel", "pager", env=env)
    assert result.code == 0, result.stderr
    assert result.stdout == "webhook channel:pager: delivered (HTTP 202 ok)\n" * 2
    assert [e["event_action"] for e in channels.pagerduty] == ["trigger", "resolve"]
    assert channels.open_alerts == {}  # the test leaves no incident open

    result = await cli.run("alerts", "test", "--channel", "teams", env=env)
    assert result.code == 0, result.stderr
    [card] = channels.teams["t"]
    assert card["attachments"][0]["content"]["body"][0]["text"].startswith("[TEST] ")
    assert channels.refused == []
    for secret in (WEBHOOK_SECRET, ROUTING_KEY):
        assert secret not in result.stdout + result.stderr

    result = await cli.run("alerts", "test", "--channel", "nope", env=env)
    assert result.code != 0
    assert "no channel named 'nope' (known: ops, pager, teams)" in result.stderr
    assert "Traceback" not in result.stderr


async def test_alerts_status_shows_each_channel(cli: Cli, channels: ChannelStandIn) -> None:
    await record_run(cli.engine, cli.settings, [make_item(fingerprint="a")], run_id=1)

    result = await cli.run("alerts", "status")

    assert result.code == 0, result.stderr
    lines = result.stdout.splitlines()
    assert "channel ops: 0 sent, 0 failed, 1 waiting, last success never" in lines
    assert "channel teams: 0 sent, 0 failed, 1 waiting, last success never" in lines
    assert "channel pager: 0 sent, 0 failed, 0 waiting, last success never" in lines  # warning
    assert "webhook channel:ops: 1 waiting, URL NOT configured" in lines
