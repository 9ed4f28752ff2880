"""Delivery results against the Slack stand-in, and the webhook URL kept out of every text."""

from __future__ import annotations

import asyncio
import logging
import socket
from datetime import UTC, datetime

import aiohttp
import pytest
from pydantic import SecretStr

from reconciler.alerts.webhook import (
    DeliveryResult,
    DeliveryStatus,
    SlackWebhookClient,
    classify,
    parse_retry_after,
)
from reconciler.sandbox.slack import Answer, SlackStandIn

NOW = datetime(2024, 5, 1, 12, 0, 0, tzinfo=UTC)
MESSAGE = {
    "text": "hello",
    "blocks": [{"type": "section", "text": {"type": "mrkdwn", "text": "hi"}}],
}


def assert_secret_kept(url: str, result: DeliveryResult, caplog: pytest.LogCaptureFixture) -> None:
    token = url.rsplit("/", 1)[1]
    texts = [
        caplog.text,
        *(str(r.args) for r in caplog.records),
        repr(result),
        str(result),
        result.describe("alerts"),
        str(result.to_error("alerts")),
    ]
    for text in texts:
        assert token not in text
        assert url not in text


@pytest.fixture
def client(session: aiohttp.ClientSession) -> SlackWebhookClient:
    return SlackWebhookClient(session, timeout_s=5, clock=lambda: NOW)


@pytest.mark.parametrize(
    ("answer", "expected"),
    [
        (None, DeliveryResult(DeliveryStatus.DELIVERED, "ok", 200)),
        (
            Answer(429, "rate_limited", retry_after="30"),
            DeliveryResult(DeliveryStatus.RATE_LIMITED, "rate_limited", 429, 30.0),
        ),
        (
            Answer(429, "rate_limited", retry_after="Wed, 01 May 2024 12:01:15 GMT"),
            DeliveryResult(DeliveryStatus.RATE_LIMITED, "rate_limited", 429, 75.0),
        ),
        (
            Answer(429, "rate_limited"),
            DeliveryResult(DeliveryStatus.RATE_LIMITED, "rate_limited", 429),
        ),
        ("server_error", DeliveryResult(DeliveryStatus.TRANSIENT, "rollup_error", 500)),
        (Answer(503, ""), DeliveryResult(DeliveryStatus.TRANSIENT, "HTTP 503", 503)),
        ("channel_not_found", DeliveryResult(DeliveryStatus.REFUSED, "channel_not_found", 404)),
        ("action_prohibited", DeliveryResult(DeliveryStatus.REFUSED, "action_prohibited", 403)),
        (
            "channel_is_archived",
            DeliveryResult(DeliveryStatus.REFUSED, "channel_is_archived", 410),
        ),
        ("no_text", DeliveryResult(DeliveryStatus.PERMANENT, "no_text", 400)),
        (
            Answer(200, "<html>proxy</html>"),
            DeliveryResult(DeliveryStatus.DELIVERED, "unexpected answer: <html>proxy</html>", 200),
        ),
    ],
)
async def test_results_for_slack_answers(
    answer: Answer | str | None,
    expected: DeliveryResult,
    slack: SlackStandIn,
    client: SlackWebhookClient,
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.DEBUG)
    url = slack.webhook_url("alerts")
    if answer is not None:
        slack.answer_next(answer)
    async with asyncio.timeout(10):
        result = await client.post(SecretStr(url), MESSAGE, name="alerts")
    assert result == expected
    assert slack.received["alerts"] == ([MESSAGE] if answer is None else [])
    assert_secret_kept(url, result, caplog)
    assert f"webhook alerts: {expected.status.value}" in caplog.text


async def test_invalid_blocks_from_validation_is_permanent(
    slack: SlackStandIn, client: SlackWebhookClient, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    url = slack.webhook_url("alerts")
    payload = {
        "text": "x",
        "blocks": [{"type": "header", "text": {"type": "plain_text", "text": "h" * 151}}],
    }
    async with asyncio.timeout(10):
        result = await client.post(SecretStr(url), payload, name="alerts")
    assert result == DeliveryResult(DeliveryStatus.PERMANENT, "invalid_blocks", 400)
    assert result.permanent and not result.retryable
    assert slack.rejected[0].detail == "blocks[0].text.text: 151 characters, more than 150"
    assert "webhook alerts: permanent (HTTP 400 invalid_blocks)" in str(result.to_error("alerts"))
    assert_secret_kept(url, result, caplog)


async def test_connection_refused_is_transient(
    client: SlackWebhookClient, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    url = f"http://127.0.0.1:{port}/services/T000/B000/refusedSecretToken"
    async with asyncio.timeout(10):
        result = await client.post(SecretStr(url), MESSAGE, name="alerts")
    assert result.status is DeliveryStatus.TRANSIENT and result.retryable
    assert result.http_status is None
    assert result.reason.startswith("ClientConnectorError")
    assert_secret_kept(url, result, caplog)
    assert str(port) not in result.reason


async def test_timeout_is_transient(
    slack: SlackStandIn, session: aiohttp.ClientSession, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    client = SlackWebhookClient(session, timeout_s=0.2)
    url = slack.webhook_url("slow")
    slack.answer_next(Answer(None, delay_s=30))
    async with asyncio.timeout(10):
        result = await client.post(SecretStr(url), MESSAGE, name="slow")
    assert result == DeliveryResult(DeliveryStatus.TRANSIENT, "timed out after 0.2s")
    assert_secret_kept(url, result, caplog)


@pytest.mark.parametrize(
    "url",
    [
        "hxxp://hooks.example/services/T000/B000/badSchemeSecret",
        "https:///services/T000/B000/noHostSecret",
        "https://hooks.example:99999/services/T000/B000/badPortSecret",
        "not a url/noSchemeSecret",
    ],
)
async def test_invalid_url_is_refused_and_not_quoted(
    url: str, client: SlackWebhookClient, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    async with asyncio.timeout(10):
        result = await client.post(SecretStr(url), MESSAGE, name="alerts")
    assert result.refused
    assert_secret_kept(url, result, caplog)


def test_client_repr_has_no_url(client: SlackWebhookClient) -> None:
    assert repr(client) == "SlackWebhookClient(timeout_s=5)"


@pytest.mark.parametrize(
    ("header", "expected"),
    [
        (None, None),
        ("", None),
        ("0", 0.0),
        ("12", 12.0),
        ("1.5", 1.5),
        ("-4", 0.0),
        ("Wed, 01 May 2024 12:00:30 GMT", 30.0),
        ("Wed, 01 May 2024 11:59:00 GMT", 0.0),
        ("soon", None),
        ("NaN", None),
        ("Infinity", None),
    ],
)
def test_parse_retry_after(header: str | None, expected: float | None) -> None:
    assert parse_retry_after(header, NOW) == expected


@pytest.mark.parametrize(
    ("status", "body", "expected"),
    [
        (200, "ok", DeliveryStatus.DELIVERED),
        (200, "ok\n", DeliveryStatus.DELIVERED),
        (200, "", DeliveryStatus.DELIVERED),
        (200, "OK", DeliveryStatus.DELIVERED),
        (200, '{"ok":true}', DeliveryStatus.DELIVERED),
        (200, "<html>proxy</html>", DeliveryStatus.DELIVERED),
        (204, "", DeliveryStatus.DELIVERED),
        (404, "no_service", DeliveryStatus.REFUSED),
        (404, "channel_not_found", DeliveryStatus.REFUSED),
        (403, "action_prohibited", DeliveryStatus.REFUSED),
        (400, "invalid_token", DeliveryStatus.REFUSED),
        (400, "invalid_blocks", DeliveryStatus.PERMANENT),
        (302, "", DeliveryStatus.PERMANENT),
        (400, "invalid_payload", DeliveryStatus.PERMANENT),
        (401, "", DeliveryStatus.REFUSED),
        (408, "", DeliveryStatus.TRANSIENT),
        (429, "rate_limited", DeliveryStatus.RATE_LIMITED),
        (500, "rollup_error", DeliveryStatus.TRANSIENT),
        (502, "", DeliveryStatus.TRANSIENT),
    ],
)
def test_classify(status: int, body: str, expected: DeliveryStatus) -> None:
    assert classify(status, body, None, NOW).status is expected


def test_reason_is_truncated() -> None:
    result = classify(400, "x" * 10_000, None, NOW)
    assert len(result.reason) == 200


async def test_an_answer_echoing_the_url_is_redacted(
    slack: SlackStandIn, client: SlackWebhookClient, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    url = slack.webhook_url("alerts")
    token = url.rsplit("/", 1)[1]
    slack.answer_next(Answer(400, f"bad webhook {url} (token {token})"))
    async with asyncio.timeout(10):
        result = await client.post(SecretStr(url), MESSAGE, name="alerts")
    assert result.reason == "bad webhook <webhook url> (token <token>)"
    assert_secret_kept(url, result, caplog)
