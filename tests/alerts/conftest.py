"""A Slack stand-in on loopback and one client session per test."""

from __future__ import annotations

from collections.abc import AsyncIterator

import aiohttp
import pytest

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
