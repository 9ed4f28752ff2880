"""Credentials only travel encrypted: plain http is refused except to a loopback address, for
provider APIs and for Slack webhooks alike; addresses cannot smuggle credentials in; and a
provider's redirect is never followed (an EdgeGrid signature or a Fastly-Key would go along).
"""

from __future__ import annotations

from datetime import date
from pathlib import Path

import aiohttp
import pytest
from aiohttp import web
from pydantic import SecretStr

from reconciler.alerts.webhook import DeliveryStatus, SlackWebhookClient
from reconciler.errors import ConfigError, ProviderError
from reconciler.providers.base import open_provider
from reconciler.providers.http import HttpClient
from reconciler.sandbox.slack import SlackStandIn
from reconciler.settings import AkamaiSourceSettings, FastlySourceSettings
from tests.security.support import cli, tampered_sandbox, write_config

REFUSED = [
    "http://api.fastly.com",
    "http://10.0.0.7:8787",
    "http://192.168.1.10",
    "http://0.0.0.0:8787",
    "http://localhost.evil.example",
    "http://127.0.0.1.nip.io",
    "http://2130706433",  # 127.0.0.1 as one number: a name here, not an address
    "ftp://127.0.0.1",
    "https://user:secret@api.fastly.com",
    "https://api.fastly.com/?token=x",
]
ALLOWED = [
    "https://api.fastly.com",
    "https://akab-host.luna.akamaiapis.net",
    "http://127.0.0.1:8787",
    "http://127.3.2.1",
    "http://[::1]:8787",
    "http://localhost:8787",
]


def fastly(base_url: str) -> FastlySourceSettings:
    return FastlySourceSettings(name="fastly", provider="fastly", base_url=base_url)


def akamai(base_url: str | None, edgerc: Path) -> AkamaiSourceSettings:
    return AkamaiSourceSettings(name="akamai", provider="akamai", base_url=base_url, edgerc=edgerc)


def edgerc_file(tmp_path: Path, host: str) -> Path:
    path = tmp_path / "edgerc"
    path.write_text(
        f"[default]\nclient_secret = c2VjcmV0\nhost = {host}\n"
        "access_token = akab-access\nclient_token = akab-client\n"
    )
    path.chmod(0o600)
    return path


@pytest.mark.parametrize("url", REFUSED)
async def test_provider_addresses_that_could_expose_credentials_are_refused(
    url: str, tmp_path: Path
) -> None:
    edgerc = edgerc_file(tmp_path, "akab-host.luna.akamaiapis.net")
    async with HttpClient() as http:
        for settings in (fastly(url), akamai(url, edgerc)):
            with pytest.raises(ConfigError, match=r"sources\[0\]\.base_url: "):
                open_provider(settings, 0, http, {"FASTLY_API_TOKEN": "token-123456"})


@pytest.mark.parametrize("url", ALLOWED)
async def test_https_and_loopback_addresses_are_accepted(url: str, tmp_path: Path) -> None:
    edgerc = edgerc_file(tmp_path, "akab-host.luna.akamaiapis.net")
    async with HttpClient() as http:
        for settings in (fastly(url), akamai(url, edgerc)):
            open_provider(settings, 0, http, {"FASTLY_API_TOKEN": "token-123456"})


async def test_an_edgerc_host_is_always_reached_over_https(tmp_path: Path) -> None:
    # .edgerc hosts have no scheme; even one naming a plain-http address gets https.
    edgerc = edgerc_file(tmp_path, "http://evil.example")
    async with HttpClient() as http:
        with pytest.raises(ConfigError):
            open_provider(akamai(None, edgerc), 0, http, {})
        edgerc = edgerc_file(tmp_path, "akab-host.luna.akamaiapis.net")
        provider = open_provider(akamai(None, edgerc), 0, http, {})
        assert provider._base.scheme == "https"  # type: ignore[attr-defined]


async def test_the_cli_refuses_a_plain_http_provider_with_one_clear_line(tmp_path: Path) -> None:
    async with tampered_sandbox() as (sandbox, _):
        write_config(tmp_path, sandbox)
        config = (tmp_path / "reconciler.toml").read_text()
        (tmp_path / "reconciler.toml").write_text(
            config.replace(sandbox.base_url, "http://billing.example.com", 1)
        )
        await cli("init", cwd=tmp_path)
        ran = await cli("pull", cwd=tmp_path, env={"FASTLY_API_TOKEN": "token-123456"})

    assert ran.code == 1
    assert (
        "sources[0].base_url: plain http is only allowed for loopback addresses "
        "(127.0.0.0/8, ::1, localhost), not billing.example.com: use https"
    ) in ran.stderr
    assert "Traceback" not in ran.stderr


async def serve(app: web.Application) -> tuple[web.AppRunner, str]:
    runner = web.AppRunner(app)
    await runner.setup()
    await web.TCPSite(runner, "127.0.0.1", 0).start()
    return runner, f"http://127.0.0.1:{runner.addresses[0][1]}"


async def test_a_provider_redirect_is_not_followed() -> None:
    followed: list[str] = []

    async def elsewhere(request: web.Request) -> web.Response:
        followed.append(request.headers.get("Fastly-Key", ""))
        return web.json_response({"data": []})

    target = web.Application()
    target.router.add_get("/{tail:.*}", elsewhere)
    target_runner, target_url = await serve(target)

    async def redirect(request: web.Request) -> web.Response:
        raise web.HTTPFound(target_url + request.path_qs)

    provider_app = web.Application()
    provider_app.router.add_get("/{tail:.*}", redirect)
    provider_runner, provider_url = await serve(provider_app)
    try:
        async with HttpClient() as http:
            provider = open_provider(
                fastly(provider_url), 0, http, {"FASTLY_API_TOKEN": "key-1234567"}
            )
            with pytest.raises(ProviderError, match=r"HTTP 302.*unexpected redirect"):
                async for _ in provider.pull(date(2024, 7, 10)):
                    pass
    finally:
        await provider_runner.cleanup()
        await target_runner.cleanup()
    assert followed == []


@pytest.mark.parametrize(
    "url",
    [
        "http://hooks.slack.com/services/T000/B000/secret-token-123",
        "http://10.1.2.3/services/T000/B000/secret-token-123",
    ],
)
async def test_a_slack_webhook_over_plain_http_is_refused_before_sending(url: str) -> None:
    async with aiohttp.ClientSession() as session:
        result = await SlackWebhookClient(session).post(SecretStr(url), {"text": "hello"})

    assert result.status is DeliveryStatus.REFUSED  # the webhook is stopped, messages kept
    assert "must use https" in result.reason
    assert "secret-token-123" not in result.describe("default")


async def test_a_slack_webhook_on_loopback_may_use_plain_http() -> None:
    async with SlackStandIn() as slack, aiohttp.ClientSession() as session:
        result = await SlackWebhookClient(session).post(
            SecretStr(slack.webhook_url()), {"text": "hello"}
        )

    assert result.status is DeliveryStatus.DELIVERED
    assert slack.received["default"] == [{"text": "hello"}]
