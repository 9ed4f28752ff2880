"""Signed requests sent by a real aiohttp client and verified by a real aiohttp server."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from datetime import UTC, datetime

import aiohttp
import pytest
import yarl
from aiohttp import web
from aiohttp.test_utils import TestServer
from pydantic import SecretStr

from reconciler.providers.edgegrid import (
    EdgeGridCredentials,
    EdgeGridVerificationError,
    sign_aiohttp_request,
    verify_authorization,
)

CLIENT_TOKEN = "akab-client-token-loopback"
ACCESS_TOKEN = "akab-access-token-loopback"
SECRET = "c2VjcmV0LWZvci10aGUtbG9vcGJhY2stdGVzdA=="
PATH = "/billing/v1/contracts/K-0N7RAK7/products"


class Recorder:
    """The server side: verifies every request and remembers what it saw on the wire."""

    def __init__(self) -> None:
        self.raw_paths: list[str] = []

    async def handle(self, request: web.Request) -> web.Response:
        self.raw_paths.append(request.raw_path)
        # request.url is rebuilt from the Host header and the request target as received.
        assert request.url.raw_path_qs == request.raw_path
        try:
            verify_authorization(
                request.headers.get("Authorization", ""),
                method=request.method,
                url=request.url,
                body=await request.read(),
                lookup_secret={CLIENT_TOKEN: (SECRET, ACCESS_TOKEN)}.get,
                now=datetime.now(UTC),
            )
        except EdgeGridVerificationError as e:
            return web.json_response({"detail": e.reason}, status=401)
        return web.json_response({"ok": True})


@pytest.fixture
async def server() -> AsyncIterator[tuple[TestServer, Recorder]]:
    recorder = Recorder()
    app = web.Application()
    app.router.add_route("*", "/{tail:.*}", recorder.handle)
    test_server = TestServer(app, host="127.0.0.1", port=0)
    await test_server.start_server()
    try:
        yield test_server, recorder
    finally:
        await test_server.close()


def creds_for(test_server: TestServer, secret: str = SECRET) -> EdgeGridCredentials:
    return EdgeGridCredentials(
        client_token=CLIENT_TOKEN,
        client_secret=SecretStr(secret),
        access_token=ACCESS_TOKEN,
        host=f"http://127.0.0.1:{test_server.port}",
    )


async def send(
    creds: EdgeGridCredentials, method: str, url: str, body: bytes = b""
) -> tuple[int, dict[str, object]]:
    headers = sign_aiohttp_request(creds, method, url, body)
    async with (
        asyncio.timeout(10),
        aiohttp.ClientSession() as session,
        session.request(method, url, data=body or None, headers=headers) as response,
    ):
        return response.status, await response.json()


@pytest.mark.parametrize(
    "query",
    [
        "?start=2024-01&end=2024-03&accountSwitchKey=1-ABC:1-DEF",
        # yarl re-quotes these before they go on the wire; the signer must follow it.
        "?start=2024-01&end=2024-03&name=a b&tilde=%7E&plus=1+1&pct=%2f&uni=é",
    ],
)
async def test_signed_get_verifies_on_a_real_server(
    server: tuple[TestServer, Recorder], query: str
) -> None:
    test_server, recorder = server
    creds = creds_for(test_server)
    url = f"{creds.base_url}{PATH}{query}"

    status, payload = await send(creds, "GET", url)

    assert (status, payload) == (200, {"ok": True})
    assert recorder.raw_paths == [yarl.URL(url).raw_path_qs]


async def test_requoted_query_differs_from_the_text_given() -> None:
    # Guard for the test above: the second query really is changed by yarl, so signing the
    # text as given (rather than the wire form) would have failed on the server.
    url = f"http://127.0.0.1:1{PATH}?name=a b&tilde=%7E&uni=é"
    assert yarl.URL(url).raw_path_qs != url.removeprefix("http://127.0.0.1:1")


async def test_signed_post_verifies_on_a_real_server(server: tuple[TestServer, Recorder]) -> None:
    test_server, _ = server
    creds = creds_for(test_server)
    body = b'{"contractId": "K-0N7RAK7"}' * 10_000  # longer than max_body
    status, payload = await send(creds, "POST", f"{creds.base_url}/billing/v1/search", body)
    assert (status, payload) == (200, {"ok": True})


async def test_wrong_secret_is_refused_by_a_real_server(
    server: tuple[TestServer, Recorder],
) -> None:
    test_server, _ = server
    creds = creds_for(test_server, secret="bm90LXRoZS1zZWNyZXQ=")
    status, payload = await send(creds, "GET", f"{creds.base_url}{PATH}?start=2024-01")
    assert (status, payload) == (401, {"detail": "The signature does not match"})


async def test_unsigned_request_is_refused_by_a_real_server(
    server: tuple[TestServer, Recorder],
) -> None:
    test_server, _ = server
    async with (
        asyncio.timeout(10),
        aiohttp.ClientSession() as session,
        session.get(f"{creds_for(test_server).base_url}{PATH}") as response,
    ):
        assert response.status == 401
        assert await response.json() == {"detail": "malformed authorization header"}
