"""Alerts by team: a route naming a team gets that team's items at its own severity, and every
message names the team, through the outbox to a real loopback channel stand-in."""

from __future__ import annotations

import dataclasses

import pytest
from sqlalchemy.ext.asyncio import AsyncEngine

from reconciler.alerts.channels.text import item_title
from reconciler.alerts.slack import label_of
from reconciler.alerts.webhook import SlackWebhookClient
from reconciler.domain import Severity
from reconciler.errors import ConfigError
from reconciler.sandbox.channels import ChannelStandIn
from reconciler.sandbox.slack import SlackStandIn
from reconciler.settings import settings_from_mapping
from tests.alerts.channel_support import WEBHOOK_SECRET
from tests.alerts.helpers import make_item
from tests.alerts.outbox_support import T0, Deliverer, record_run, runs_received

TEAMS = [{"name": "video", "match": [{"service": "svc-video*"}]}]
CHANNELS = [
    {"name": name, "type": "webhook", "url_env": f"{name.upper()}_URL", "secret_env": "SECRET"}
    for name in ("video", "ops")
]
ROUTES = [
    {"team": "video", "min_severity": "info", "channels": ["video"]},
    {"min_severity": "critical", "channels": ["ops"]},
]


async def test_a_team_route_hears_its_team_and_every_message_names_the_team(
    engine: AsyncEngine, channels: ChannelStandIn, client: SlackWebhookClient
) -> None:
    channels.webhook_secrets["video"] = WEBHOOK_SECRET.encode()
    settings = settings_from_mapping(
        {
            "teams": TEAMS,
            "alerts": {"slack": {"enabled": False}, "channels": CHANNELS, "routes": ROUTES},
        }
    )
    env = {
        "VIDEO_URL": channels.webhook_url("video"),
        "OPS_URL": channels.webhook_url("ops"),
        "SECRET": WEBHOOK_SECRET,
    }
    info = dataclasses.replace(
        make_item(fingerprint="v-info", severity=Severity.INFO), service="svc-video-eu"
    )
    critical = dataclasses.replace(
        make_item(fingerprint="v-crit", severity=Severity.CRITICAL), service="svc-video-us"
    )
    other = dataclasses.replace(
        make_item(fingerprint="o-crit", severity=Severity.CRITICAL), service="svc-web"
    )
    await record_run(engine, settings, [info, critical, other], run_id=1)
    assert (await Deliverer(engine, settings, client, env)(T0)).sent == 2
    heard = {
        name: [(i["fingerprint"], i.get("team")) for body in bodies for i in body["items"]]
        for name, bodies in channels.webhooks.items()
    }
    assert sorted(heard["video"]) == [("v-crit", "video"), ("v-info", "video")]
    assert sorted(heard["ops"]) == [("o-crit", "unallocated"), ("v-crit", "video")]


def test_the_label_of_every_channel_names_the_team() -> None:
    item = dataclasses.replace(make_item(), team="video")
    assert label_of(item).endswith("(team video)")
    assert "(team video)" in item_title(item)


def test_a_route_naming_an_unknown_team_is_a_config_error() -> None:
    with pytest.raises(ConfigError, match=r"alerts.routes\[0\].team: no team named 'vid'"):
        settings_from_mapping(
            {
                "teams": TEAMS,
                "alerts": {"channels": CHANNELS, "routes": [{"team": "vid", "channels": ["ops"]}]},
            }
        )


async def test_a_team_s_own_slack_webhook_hears_only_that_team(
    engine: AsyncEngine, slack: SlackStandIn, client: SlackWebhookClient
) -> None:
    settings = settings_from_mapping(
        {
            "teams": TEAMS,
            "alerts": {
                "slack": {
                    "webhook_url_env": "SLACK_URL",
                    "teams": [
                        {"team": "video", "webhook_url_env": "VIDEO_SLACK", "min_severity": "info"}
                    ],
                }
            },
        }
    )
    env = {"SLACK_URL": slack.webhook_url("default"), "VIDEO_SLACK": slack.webhook_url("video")}
    info = dataclasses.replace(
        make_item(fingerprint="v-info", severity=Severity.INFO), service="svc-video-eu"
    )
    warning = dataclasses.replace(make_item(fingerprint="o-warn"), service="svc-web")
    await record_run(engine, settings, [info, warning], run_id=7)
    assert (await Deliverer(engine, settings, client, env)(T0)).sent == 2
    (video,) = slack.received["video"]
    (default,) = slack.received["default"]
    assert "(team video)" in video["text"] and "(team unallocated)" not in video["text"]
    assert "(team unallocated)" in default["text"] and "(team video)" not in default["text"]
    assert runs_received(slack, "video") == [7]


def test_a_team_slack_route_needs_a_webhook_and_a_known_team() -> None:
    for entry, problem in (
        ({"team": "video"}, "alerts.slack.teams[0]: set webhook_url_env"),
        ({"team": "vid", "webhook_url_env": "X"}, "alerts.slack.teams[0].team: no team named"),
    ):
        with pytest.raises(ConfigError) as caught:
            settings_from_mapping({"teams": TEAMS, "alerts": {"slack": {"teams": [entry]}}})
        assert problem in str(caught.value)
