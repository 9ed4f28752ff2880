"""Alerts are never lost: a refusing webhook keeps its messages until its URL changes, a 2xx
is a delivery whatever its body, and an answer the database cannot record (a full disk)
is recorded later instead of the message being sent again."""

from __future__ import annotations

import logging
from datetime import timedelta

import pytest
from sqlalchemy.ext.asyncio import AsyncEngine

from reconciler.alerts.blocks import requeue_failed
from reconciler.alerts.status import outbox_status, render_status
from reconciler.alerts.webhook import SlackWebhookClient
from reconciler.sandbox.slack import Answer, SlackStandIn
from tests.alerts.outbox_support import (
    T0,
    WEBHOOK_ENV,
    Deliverer,
    alert_settings,
    disk_full,
    header,
    outbox_rows,
    queue_runs,
    runs_received,
)


@pytest.mark.parametrize("refusal", ["revoked", "channel_not_found", "action_prohibited"])
async def test_a_refusing_webhook_keeps_every_message_until_its_url_changes(
    refusal: str,
    engine: AsyncEngine,
    slack: SlackStandIn,
    client: SlackWebhookClient,
    caplog: pytest.LogCaptureFixture,
) -> None:
    settings = alert_settings()
    await queue_runs(engine, settings, 3)
    environ = {WEBHOOK_ENV: slack.webhook_url("old")}
    if refusal == "revoked":
        slack.revoke("old")  # Slack answers 404 no_service
    else:
        slack.answer_all(refusal, webhook="old")
    deliver = Deliverer(engine, settings, client, environ)

    with caplog.at_level(logging.WARNING):
        report = await deliver(T0)

    assert (report.sent, report.failed, report.refused, report.blocked) == (0, 0, 1, 3)
    assert len(slack.attempts) == 1  # one request, not one failure per message
    rows = await outbox_rows(engine)
    assert [r.state for r in rows] == ["pending"] * 3
    assert "kept pending, and every message to this webhook until its URL changes" in caplog.text
    status = await outbox_status(engine, settings, now=T0, environ=environ)
    [destination] = status.destinations
    assert destination.blocked_reason is not None
    assert destination.blocked_reason.startswith("webhook default: refused (HTTP 40")
    assert status.delivery_failing
    text = render_status(status)
    assert "delivery: FAILING" in text
    assert f"  STOPPED since 2024-05-01T12:00:00Z: {destination.blocked_reason};" in text

    # A day of passes (and a flush) later: still kept, and the webhook is not asked again.
    for hours in (1, 24):
        later = await deliver(T0 + timedelta(hours=hours), ignore_backoff=True)
        assert (later.attempted, later.blocked) == (0, 3)
    assert len(slack.attempts) == 1

    # The configuration changes (a reload with a new URL): everything goes, once, in order.
    deliver.environ = {WEBHOOK_ENV: slack.webhook_url("new")}
    report = await deliver(T0 + timedelta(days=1, minutes=1))
    assert (report.sent, report.refused, report.blocked) == (3, 0, 0)
    assert runs_received(slack, "new") == [1, 2, 3]
    assert {r.state for r in await outbox_rows(engine)} == {"sent"}
    status = await outbox_status(engine, settings, now=T0, environ=deliver.environ)
    assert not status.delivery_failing


async def test_alerts_retry_requeues_failed_messages_and_unblocks_webhooks(
    engine: AsyncEngine, slack: SlackStandIn, client: SlackWebhookClient
) -> None:
    settings = alert_settings()
    await queue_runs(engine, settings, 3)
    environ = {WEBHOOK_ENV: slack.webhook_url()}
    deliver = Deliverer(engine, settings, client, environ)
    slack.answer_next("invalid_payload")  # message 1 refused for good
    slack.answer_next("channel_not_found")  # then the webhook, once (the channel came back)
    report = await deliver(T0)
    assert (report.sent, report.failed, report.refused) == (0, 1, 1)
    assert [r.state for r in await outbox_rows(engine)] == ["failed", "pending", "pending"]

    done = await requeue_failed(engine, now=T0 + timedelta(minutes=1))

    assert (done.messages, done.unblocked) == (1, 1)
    rows = await outbox_rows(engine)
    assert [(r.state, r.attempts) for r in rows] == [("pending", 0), ("pending", 1), ("pending", 0)]
    report = await deliver(T0 + timedelta(minutes=1))
    assert report.sent == 3
    assert runs_received(slack) == [1, 2, 3]
    assert (await requeue_failed(engine, now=T0)).messages == 0


@pytest.mark.parametrize("body", ["OK", '{"ok":true}', "<html>a proxy's page</html>", ""])
async def test_a_2xx_is_a_delivery_whatever_its_body(
    body: str,
    engine: AsyncEngine,
    slack: SlackStandIn,
    client: SlackWebhookClient,
    caplog: pytest.LogCaptureFixture,
) -> None:
    settings = alert_settings()
    await queue_runs(engine, settings, 2)
    slack.answer_next(Answer(200, body))
    deliver = Deliverer(engine, settings, client, {WEBHOOK_ENV: slack.webhook_url()})

    with caplog.at_level(logging.WARNING):
        report = await deliver(T0)

    assert (report.sent, report.deferred) == (2, 0)
    assert [(r.state, r.attempts) for r in await outbox_rows(engine)] == [("sent", 1)] * 2
    assert "webhook default: delivered (HTTP 200 unexpected answer" in caplog.text
    assert (await deliver(T0 + timedelta(days=2), ignore_backoff=True)).attempted == 0
    assert len(slack.attempts) == 2  # never posted again


def _records_sent(statement: str) -> bool:
    return statement.lstrip().upper().startswith("UPDATE ALERT_OUTBOX") and "sent_at" in statement


async def test_an_accepted_message_is_not_sent_again_when_the_disk_was_full(
    engine: AsyncEngine,
    slack: SlackStandIn,
    client: SlackWebhookClient,
    caplog: pytest.LogCaptureFixture,
) -> None:
    """Faults injected at the database driver (a real full disk needs a filesystem of its
    own): Slack accepts message 1, recording it fails, the disk stays full past the claim's
    lease; once it frees, message 1 is recorded as sent, and only then is message 2 sent."""
    settings = alert_settings()
    await queue_runs(engine, settings, 2)
    deliver = Deliverer(engine, settings, client, {WEBHOOK_ENV: slack.webhook_url()})

    with caplog.at_level(logging.WARNING), disk_full(engine, _records_sent) as disk:
        report = await deliver(T0)
        assert (report.sent, report.unrecorded) == (1, 1)
        assert "could not record the answer to message #1" in caplog.text
        assert "database or disk is full" in caplog.text
        # Past the 5-minute lease, the disk still full: nothing is claimed or sent.
        for minutes in (6, 10):
            report = await deliver(T0 + timedelta(minutes=minutes))
            assert (report.attempted, report.unrecorded) == (0, 1)
        assert disk.refused >= 3
        disk.full = False
        report = await deliver(T0 + timedelta(minutes=11))

    assert (report.sent, report.unrecorded, report.lost_claims) == (1, 0, 0)
    assert runs_received(slack) == [1, 2]
    assert len(slack.attempts) == 2
    rows = await outbox_rows(engine)
    assert [(r.state, r.attempts) for r in rows] == [("sent", 1), ("sent", 1)]
    assert rows[0].sent_at is not None and rows[0].sent_at < T0 + timedelta(minutes=1)


async def test_after_a_crash_with_the_answer_unrecorded_the_repeat_is_labelled(
    engine: AsyncEngine, slack: SlackStandIn, client: SlackWebhookClient
) -> None:
    """The guarantee is at least once: a deliverer that dies before recording (its journal
    lost with it) leaves the row to be sent again after the lease, marked as a repeat."""
    settings = alert_settings()
    await queue_runs(engine, settings, 1)
    env = {WEBHOOK_ENV: slack.webhook_url()}
    with disk_full(engine, _records_sent):
        assert (await Deliverer(engine, settings, client, env)(T0)).unrecorded == 1
    restarted = Deliverer(engine, settings, client, env)  # a new process: a new journal

    assert (await restarted(T0 + timedelta(minutes=1))).attempted == 0  # lease still held
    assert (await restarted(T0 + timedelta(minutes=6))).sent == 1

    first, repeat = slack.received["default"]
    assert header(first) == "reconciler · prod · run 1"
    assert header(repeat) == "[possible repeat of alert #1] reconciler · prod · run 1"
    assert repeat["blocks"][1:] == first["blocks"][1:]
