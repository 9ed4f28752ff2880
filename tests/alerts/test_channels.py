"""The channels beside Slack, through the outbox, against real loopback stand-ins: a
receiver that verifies the webhook signature and refuses replays, PagerDuty's Events API v2
shapes, a Teams Workflows webhook that checks the Adaptive Card, and an SMTP server
(aiosmtpd) with STARTTLS and AUTH."""

from __future__ import annotations

import dataclasses
import json
import logging
from datetime import timedelta
from decimal import Decimal
from email.message import EmailMessage
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from sqlalchemy.ext.asyncio import AsyncEngine

from reconciler.alerts.status import outbox_status, render_status
from reconciler.alerts.webhook import SlackWebhookClient
from reconciler.domain import Severity
from reconciler.sandbox.channels import Canned, ChannelStandIn
from reconciler.settings import Settings, settings_from_mapping
from tests.alerts.channel_support import (
    ROUTING_KEY,
    SMTP_PASSWORD,
    SMTP_USER,
    WEBHOOK_SECRET,
    SmtpServer,
)
from tests.alerts.helpers import make_item
from tests.alerts.outbox_support import T0, Deliverer, dump_tables, outbox_rows, record_run


def channel_settings(
    channel_list: list[dict[str, Any]], routes: list[dict[str, Any]] | None = None
) -> Settings:
    return settings_from_mapping(
        {
            "alerts": {
                "slack": {"enabled": False},
                "channels": channel_list,
                "routes": routes or [],
            }
        }
    )


WEBHOOK = {"name": "ops", "type": "webhook", "url_env": "OPS_URL", "secret_env": "OPS_SECRET"}


async def test_the_generic_webhook_is_signed_exact_and_refuses_replays(
    engine: AsyncEngine,
    channels: ChannelStandIn,
    client: SlackWebhookClient,
    session: aiohttp.ClientSession,
) -> None:
    settings = channel_settings([WEBHOOK])
    env = {"OPS_URL": channels.webhook_url("ops"), "OPS_SECRET": WEBHOOK_SECRET}
    item = make_item(fingerprint="a", before="100.10", after="12345678901234567890.123456789")
    await record_run(engine, settings, [item], run_id=1)
    await record_run(engine, settings, [], run_id=2, resolve=["a"])

    report = await Deliverer(engine, settings, client, env)(T0)

    assert report.sent == 2
    first, second = channels.webhooks["ops"]
    assert (first["version"], first["type"], first["id"], first["run_id"]) == ("1", "run", "1", 1)
    assert first["possible_repeat"] is False
    [sent] = first["items"]
    assert sent["after"]["quantity"] == "12345678901234567890.123456789"  # exact, a string
    assert Decimal(sent["before"]["quantity"]) == Decimal("100.10")
    assert sent["delta"] == "12345678901234567790.023456789"  # 29 digits, not rounded
    assert first["counts"] == {"critical": 0, "warning": 1, "info": 0}
    assert (second["type"], [r["fingerprint"] for r in second["resolved"]]) == ("resolved", ["a"])
    headers = channels.webhook_headers["ops"][0]
    assert headers["X-Reconciler-Signature"].startswith("v1=")

    assert WEBHOOK_SECRET not in await dump_tables(engine, ["alert_outbox"])
    # The same request again (a replay) is refused by a receiver that verifies.
    raw = channels.webhook_raw["ops"][0]
    async with session.post(channels.webhook_url("ops"), data=raw, headers=headers) as answer:
        assert answer.status == 401
    assert channels.refused[-1][2] == "delivery already received (a replay)"
    # A tampered body fails the signature.
    tampered = raw.replace(b'"run_id":1', b'"run_id":9')
    async with session.post(channels.webhook_url("ops"), data=tampered, headers=headers) as answer:
        assert answer.status == 401
    assert channels.refused[-1][2] == "bad signature"


async def test_a_wrong_signing_secret_stops_the_webhook_until_it_changes(
    engine: AsyncEngine, channels: ChannelStandIn, client: SlackWebhookClient
) -> None:
    settings = channel_settings([WEBHOOK])
    await record_run(engine, settings, [make_item(fingerprint="a")], run_id=1)
    await record_run(engine, settings, [make_item(fingerprint="b")], run_id=2)
    deliver = Deliverer(
        engine, settings, client, {"OPS_URL": channels.webhook_url("ops"), "OPS_SECRET": "nope!!"}
    )

    report = await deliver(T0)

    assert (report.sent, report.refused, report.blocked) == (0, 1, 2)
    status = await outbox_status(engine, settings, now=T0, environ=deliver.environ)
    assert "channel:ops: refused (HTTP 401" in render_status(status)
    deliver.environ = {"OPS_URL": channels.webhook_url("ops"), "OPS_SECRET": WEBHOOK_SECRET}
    report = await deliver(T0 + timedelta(minutes=1))
    assert report.sent == 2
    assert [b["run_id"] for b in channels.webhooks["ops"]] == [1, 2]


PAGER = {"name": "pager", "type": "pagerduty", "secret_env": "PD_KEY"}


async def test_pagerduty_one_alert_per_critical_fingerprint_resolved_with_it(
    engine: AsyncEngine,
    channels: ChannelStandIn,
    client: SlackWebhookClient,
    caplog: pytest.LogCaptureFixture,
) -> None:
    settings = channel_settings([{**PAGER, "events_url": channels.events_url}])
    env = {"PD_KEY": ROUTING_KEY}
    items = [
        make_item(fingerprint="crit-a", severity=Severity.CRITICAL),
        make_item(fingerprint="crit-b", severity=Severity.CRITICAL, after="12.000000000001"),
        make_item(fingerprint="warn-c", severity=Severity.WARNING),
    ]
    await record_run(engine, settings, items, run_id=1)
    channels.answer_next("/v2/enqueue", Canned(429, '{"status":"throttled"}', retry_after="30"))
    deliver = Deliverer(engine, settings, client, env)

    with caplog.at_level(logging.DEBUG):
        assert (await deliver(T0)).deferred == 1
        assert (await deliver(T0 + timedelta(seconds=20))).attempted == 0  # Retry-After
        assert (await deliver(T0 + timedelta(seconds=31))).sent == 2

    assert sorted(channels.open_alerts) == [(ROUTING_KEY, "crit-a"), (ROUTING_KEY, "crit-b")]
    trigger = channels.pagerduty[1]
    assert trigger["event_action"] == "trigger"
    assert trigger["payload"]["severity"] == "critical"
    assert trigger["payload"]["custom_details"]["after"]["quantity"] == "12.000000000001"
    assert "CRITICAL grew" in trigger["payload"]["summary"]

    await record_run(engine, settings, [], run_id=2, resolve=["crit-a", "warn-c"])
    assert (await deliver(T0 + timedelta(minutes=5))).sent == 1
    assert channels.pagerduty[-1] == {
        "routing_key": ROUTING_KEY,
        "event_action": "resolve",
        "dedup_key": "crit-a",
    }
    assert list(channels.open_alerts) == [(ROUTING_KEY, "crit-b")]
    # The routing key is a secret: not in the outbox, not in a log line.
    assert ROUTING_KEY not in await dump_tables(engine, ["alert_outbox"])
    assert ROUTING_KEY not in caplog.text


async def test_an_invalid_pagerduty_event_fails_that_event_only(
    engine: AsyncEngine, channels: ChannelStandIn, client: SlackWebhookClient
) -> None:
    settings = channel_settings([{**PAGER, "events_url": channels.events_url}])
    items = [make_item(fingerprint=f"c{n}", severity=Severity.CRITICAL) for n in range(2)]
    await record_run(engine, settings, items, run_id=1)
    deliver = Deliverer(engine, settings, client, {"PD_KEY": "short"})  # not 32 characters

    report = await deliver(T0)

    assert (report.failed, report.sent) == (2, 0)
    rows = await outbox_rows(engine)
    assert "HTTP 400" in rows[0].last_error and "routing_key" in rows[0].last_error


TEAMS = {"name": "teams", "type": "teams", "url_env": "TEAMS_URL"}


async def test_teams_gets_an_adaptive_card_within_its_limits(
    engine: AsyncEngine, channels: ChannelStandIn, client: SlackWebhookClient
) -> None:
    settings = settings_from_mapping(
        {"alerts": {"slack": {"enabled": False, "max_items": 45}, "channels": [TEAMS]}}
    )
    long = "x" * 500
    items = [
        dataclasses.replace(make_item(fingerprint=f"i{n}", after=str(150 + n)), message=long)
        for n in range(120)
    ]
    await record_run(engine, settings, items, run_id=7)
    await record_run(engine, settings, [make_item(fingerprint="one")], run_id=8)

    report = await Deliverer(engine, settings, client, {"TEAMS_URL": channels.teams_url("t")})(T0)

    assert report.sent == 2
    assert channels.refused == []
    big, small = channels.teams["t"]
    assert len(json.dumps(big).encode()) <= 28_000
    body = big["attachments"][0]["content"]["body"]
    assert body[0]["text"] == "reconciler · prod · run 7"
    assert body[1]["text"] == "120 items (120 warning)"
    shown = [b for b in body if b["type"] == "Container"]
    assert 1 <= len(shown) < 45  # fewer than max_items: 28 KB would not hold them
    assert body[-1]["text"] == f"…and {120 - len(shown)} more: run `reconciler plan --source prod`"
    small_body = small["attachments"][0]["content"]["body"]
    assert [b["type"] for b in small_body] == ["TextBlock", "TextBlock", "Container"]
    assert small_body[2]["items"][0]["text"] == (
        "WARNING grew: Full-Site Delivery / bandwidth [north-america] service svc-1 · 2024-05"
    )
    assert small_body[2]["items"][1]["text"].startswith("100 GB → 150 GB · Δ +50 GB (+50")


def email_channel(smtp: SmtpServer, password_file: Path) -> dict[str, Any]:
    return {
        "name": "mail",
        "type": "email",
        "smtp_host": "127.0.0.1",
        "smtp_port": smtp.port,
        "smtp_security": "starttls",
        "smtp_username": SMTP_USER,
        "smtp_ca_file": str(smtp.ca_file),
        "secret_file": str(password_file),
        "mail_from": "reconciler@example.test",
        "mail_to": ["finops@example.test", "cdn@example.test"],
    }


async def test_email_over_starttls_with_a_password_file_one_message_per_run(
    engine: AsyncEngine, smtp: SmtpServer, client: SlackWebhookClient, tmp_path: Path
) -> None:
    password_file = tmp_path / "smtp-password"
    password_file.write_text(SMTP_PASSWORD + "\n", encoding="utf-8")
    password_file.chmod(0o600)
    settings = channel_settings([email_channel(smtp, password_file)])
    items = [make_item(fingerprint="a", text="<script>alert(1)</script>"), make_item()]
    await record_run(engine, settings, items, run_id=3)
    await record_run(engine, settings, [], run_id=4, resolve=["a"])

    report = await Deliverer(engine, settings, client, {})(T0)

    assert report.sent == 2
    assert smtp.mailbox.logins == [SMTP_USER, SMTP_USER]
    first, second = smtp.mailbox.messages
    assert smtp.mailbox.envelopes[0] == (
        "reconciler@example.test",
        ["finops@example.test", "cdn@example.test"],
    )
    assert first["Subject"] == "reconciler · prod · run 3: 2 items (2 warning)"
    assert first["X-Reconciler-Delivery"] == "1"
    assert first.is_multipart()
    parts = {
        p.get_content_type(): p.get_content()
        for p in first.walk()
        if isinstance(p, EmailMessage) and not p.is_multipart()
    }
    assert "100 GB → 150 GB" in parts["text/plain"]
    assert "&lt;script&gt;" in parts["text/html"] and "<script>" not in parts["text/html"]
    assert second["Subject"] == "reconciler · prod · run 4 · resolved, 1 resolved"


async def test_a_wrong_smtp_password_stops_the_channel_and_keeps_the_message(
    engine: AsyncEngine, smtp: SmtpServer, client: SlackWebhookClient, tmp_path: Path
) -> None:
    password_file = tmp_path / "smtp-password"
    password_file.write_text("wrong-password", encoding="utf-8")
    password_file.chmod(0o600)
    settings = channel_settings([email_channel(smtp, password_file)])
    await record_run(engine, settings, [make_item()], run_id=1)
    deliver = Deliverer(engine, settings, client, {})

    report = await deliver(T0)

    assert (report.refused, report.blocked, report.sent) == (1, 1, 0)
    assert [r.state for r in await outbox_rows(engine)] == ["pending"]
    password_file.write_text(SMTP_PASSWORD, encoding="utf-8")
    assert (await deliver(T0 + timedelta(minutes=1))).sent == 1
    assert len(smtp.mailbox.messages) == 1


async def test_routes_choose_channels_by_source_and_severity(
    engine: AsyncEngine, channels: ChannelStandIn, client: SlackWebhookClient
) -> None:
    routes = [
        {"source": "edge-*", "min_severity": "info", "channels": ["ops"]},
        {
            "source": "prod",
            "min_severity": "critical",
            "channels": ["ops"],
            "min_impact": "1000 USD",
        },
    ]
    settings = channel_settings([WEBHOOK], routes)
    env = {"OPS_URL": channels.webhook_url("ops"), "OPS_SECRET": WEBHOOK_SECRET}
    await record_run(engine, settings, [make_item(fingerprint="w")], run_id=1)  # prod warning
    crit = make_item(fingerprint="c", severity=Severity.CRITICAL)  # no money impact: not held
    small = dataclasses.replace(
        make_item(fingerprint="s", severity=Severity.CRITICAL),
        impact=Decimal("999.99"),
        impact_currency="USD",
    )
    await record_run(engine, settings, [crit, small], run_id=2)
    info = make_item(fingerprint="i", severity=Severity.INFO)
    await record_run(engine, settings, [info], run_id=3, source="edge-eu")
    await record_run(engine, settings, [info], run_id=4, source="other")

    assert (await Deliverer(engine, settings, client, env)(T0)).sent == 2
    assert [
        (b["run_id"], [i["fingerprint"] for i in b["items"]]) for b in channels.webhooks["ops"]
    ] == [
        (2, ["c"]),
        (3, ["i"]),
    ]
