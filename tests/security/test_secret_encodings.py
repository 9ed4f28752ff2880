"""Every encoding of every configured secret is masked from the start of the process: a
provider that echoes another source's secret (URL-encoded, JSON-escaped, base64) before that
source is even opened leaks it neither to the terminal nor to ``pull_runs.error``."""

from __future__ import annotations

import base64
import json
import secrets
import urllib.parse
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from aiohttp import web

from reconciler.logs import encodings, redact, register_secret
from reconciler.sandbox import SandboxServer, named_scenario
from reconciler.sandbox.credentials import SandboxCredentials
from tests.security.support import Handler, cli, sqlite_dump, write_config


def encoded(value: str) -> dict[str, str]:
    raw = value.encode()
    return {
        "raw": value,
        "url": urllib.parse.quote(value, safe=""),
        "url+": urllib.parse.quote_plus(value),
        "json": json.dumps(value)[1:-1],
        "base64": base64.b64encode(raw).decode(),
        "base64url": base64.urlsafe_b64encode(raw).decode(),
    }


def test_every_encoding_of_a_registered_secret_is_masked() -> None:
    secret = f's3cr3t {secrets.token_hex(8)}+/="\\é'
    register_secret(secret)
    for name, form in encoded(secret).items():
        assert form in encodings(secret), name
        text = f"upstream said: <{form}>"
        assert redact(text) == "upstream said: <***>", name


@pytest.fixture
async def echoing(tmp_path: Path) -> AsyncIterator[tuple[Path, SandboxCredentials, dict[str, str]]]:
    credentials = SandboxCredentials(
        fastly_token=f"fastly-{secrets.token_hex(16)}",
        client_token=f"akab-client-{secrets.token_hex(12)}",
        access_token=f"akab-access-{secrets.token_hex(12)}",
        client_secret=f"{secrets.token_urlsafe(18)}+/{secrets.token_hex(4)}=",
    )
    echo = encoded(credentials.client_secret)

    @web.middleware
    async def echo_akamai_secret(request: web.Request, handler: Handler) -> web.StreamResponse:
        if request.path.startswith("/billing/v3/"):  # Fastly's routes: Akamai's key in them
            detail = " ".join(f"{name}={form}" for name, form in echo.items())
            return web.json_response({"msg": "proxy error", "detail": detail}, status=400)
        return await handler(request)

    sandbox = SandboxServer(named_scenario("default"), host="127.0.0.1", credentials=credentials)
    sandbox.app.middlewares.insert(0, echo_akamai_secret)
    async with sandbox:
        config = write_config(tmp_path, sandbox)
        yield config, credentials, echo


async def test_a_secret_echoed_before_its_source_is_opened_is_masked_everywhere(
    echoing: tuple[Path, SandboxCredentials, dict[str, str]], tmp_path: Path
) -> None:
    config, credentials, echo = echoing
    init = await cli("--config", str(config), "init", cwd=tmp_path)
    assert init.code == 0, init.output
    # Only the Fastly source is pulled: the Akamai source (whose secret is echoed) is never
    # opened in this process.
    ran = await cli(
        "-vv",
        "--config",
        str(config),
        "pull",
        "--source",
        "fastly",
        cwd=tmp_path,
        env={"FASTLY_API_TOKEN": credentials.fastly_token},
    )
    assert ran.code != 0 and "proxy error" in ran.output
    stored = sqlite_dump(tmp_path / "state" / "state.db")
    assert "proxy error" in stored  # the run's error is recorded...
    for where, text in (("output", ran.output), ("database", stored)):
        leaked = [name for name, form in echo.items() if form in text]
        assert leaked == [], f"{where} holds the Akamai client secret as {leaked}"
