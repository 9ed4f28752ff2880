"""Responses aiohttp's parser refuses are transient failures, retried, then a provider error."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable

import pytest

from reconciler.errors import ProviderError
from reconciler.providers.base import PullStats
from reconciler.providers.http import HttpClient, RetryPolicy

MALFORMED = {
    "bad status line": b"HTTP/1.1 abc OK\r\nContent-Length: 2\r\n\r\n{}",
    "bad Content-Length": (
        b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: abc\r\n\r\n{}"
    ),
    "not HTTP at all": b"\x00\x01garbage\r\n\r\n",
    "body shorter than Content-Length": (
        b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: 100\r\n\r\n{}"
    ),
}


@pytest.fixture
async def raw_server() -> AsyncIterator[Callable[[bytes], str]]:
    """A loopback server answering every request with the bytes last given to it."""
    answer = [b""]

    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await reader.readuntil(b"\r\n\r\n")
        writer.write(answer[0])
        await writer.drain()
        writer.close()

    server = await asyncio.start_server(handle, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]

    def serve(raw: bytes) -> str:
        answer[0] = raw
        return f"http://127.0.0.1:{port}/billing/v3/invoices"

    try:
        yield serve
    finally:
        server.close()
        await server.wait_closed()


@pytest.mark.parametrize("case", list(MALFORMED))
async def test_a_malformed_response_is_retried_then_a_provider_error(
    raw_server: Callable[[bytes], str], case: str
) -> None:
    url = raw_server(MALFORMED[case])
    stats = PullStats()
    policy = RetryPolicy(max_retries=2, cap_s=0.0, timeout_s=30.0, base_s=0.0)
    async with HttpClient() as http:
        with pytest.raises(ProviderError) as caught:
            await http.get_json(
                "fastly",
                "/billing/v3/invoices",
                url,
                headers={},
                limiter=asyncio.Semaphore(1),
                policy=policy,
                stats=stats,
            )
    message = str(caught.value)
    assert message.startswith("source 'fastly': /billing/v3/invoices: gave up after 3 attempts: ")
    assert "\n" not in message
    assert stats.retries == 2
