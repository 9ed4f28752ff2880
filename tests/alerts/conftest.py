"""A Slack stand-in on loopback, one client session per test and a webhook client on it."""

from __future__ import annotations

from collections.abc import AsyncIterator

import aiohttp
import pytest

from reconciler.alerts.webhook import SlackWebhookClient
from reconciler.sandbox.slack import SlackStandIn
from tests.alerts.channel_support import channels, smtp

__all__ = ["channels", "smtp"]  # the channel stand-ins, as fixtures


@pytest.fixture
async def slack() -> AsyncIterator[SlackStandIn]:
    async with SlackStandIn(host="127.0.0.1", port=0) as stand_in:
        yield stand_in


@pytest.fixture
async def session() -> AsyncIterator[aiohttp.ClientSession]:
    async with aiohttp.ClientSession() as client_session:
        yield client_session


@pytest.fixture
def client(session: aiohttp.ClientSession) -> SlackWebhookClient:
    """A webhook client on the test's session (5 s per request, far above any answer)."""
    return SlackWebhookClient(session, timeout_s=5)
