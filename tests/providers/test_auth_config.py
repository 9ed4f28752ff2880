"""Credentials and addresses: auth failures fail at once without the secret; base_url rules."""

from __future__ import annotations

import logging
from datetime import date
from pathlib import Path

import pytest

from reconciler.domain import Month
from reconciler.errors import ConfigError, MissingSecretError, ProviderAuthError
from reconciler.providers.akamai import AkamaiProvider
from reconciler.providers.base import api_url, check_base_url, months_to_pull, open_provider
from reconciler.providers.fastly import FastlyProvider
from reconciler.providers.http import HttpClient
from reconciler.sandbox.credentials import SandboxCredentials
from reconciler.settings import AkamaiSourceSettings, FastlySourceSettings

from .conftest import Sandbox, collect

TODAY = date(2024, 7, 10)


async def test_wrong_fastly_token_fails_at_once_without_the_token(
    sandbox: Sandbox, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    provider = sandbox.fastly(token="wrong-token-123456")
    with pytest.raises(ProviderAuthError) as caught:
        await collect(provider, TODAY)
    error = caught.value
    assert error.status == 401
    assert str(error) == (
        "source 'fastly-test': /billing/v3/invoices (HTTP 401): "
        "Provided credentials are missing or invalid; the token is not valid"
    )
    assert provider.stats.api_calls == 1 and provider.stats.retries == 0
    assert "wrong-token-123456" not in caplog.text


async def test_wrong_akamai_secret_fails_at_once_without_the_secret(
    sandbox: Sandbox, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    wrong = SandboxCredentials(client_secret="not-the-secret-abcdef=")
    edgerc = sandbox.edgerc(wrong.edgerc_text(sandbox.server.address), "wrong.edgerc")
    provider = sandbox.akamai(edgerc=edgerc)
    with pytest.raises(ProviderAuthError) as caught:
        await collect(provider, TODAY)
    assert caught.value.status == 401
    assert str(caught.value) == (
        "source 'akamai-test': /contract-api/v1/contracts/identifiers (HTTP 401): "
        "Not authorized; The signature does not match"
    )
    assert provider.stats.api_calls == 1
    assert "not-the-secret-abcdef=" not in caplog.text


async def test_a_signed_retry_is_signed_again(sandbox: Sandbox) -> None:
    # A retried request needs a fresh nonce: the sandbox would accept a replay, but a real
    # gateway may not. Each attempt verifies on its own.
    sandbox.add_faults({"kind": "status", "status": 503, "count": 2, "endpoint": "akamai"})
    provider = sandbox.akamai(contracts=["K-0N7RAK7"], products=["1-ABC012"])
    lines, _ = await collect(provider, TODAY)
    assert lines and provider.stats.retries == 2
    assert sandbox.requests("akamai.monthly_summary", 401) == 0


@pytest.mark.parametrize(
    ("url", "expected"),
    [
        ("http://127.0.0.1:8787", "http://127.0.0.1:8787/b/v3/x?a=1"),
        ("http://127.3.2.1", "http://127.3.2.1/b/v3/x?a=1"),
        ("http://[::1]:9000", "http://[::1]:9000/b/v3/x?a=1"),
        ("http://localhost:8787/prefix/", "http://localhost:8787/prefix/b/v3/x?a=1"),
        ("https://api.fastly.com", "https://api.fastly.com/b/v3/x?a=1"),
        ("https://proxy.example.com/fastly", "https://proxy.example.com/fastly/b/v3/x?a=1"),
    ],
)
def test_base_url_allowed(url: str, expected: str) -> None:
    parsed = check_base_url(url, "sources[0].base_url")
    assert str(api_url(parsed, "/b/v3/x", {"a": "1"})) == expected


@pytest.mark.parametrize(
    ("url", "problem"),
    [
        ("http://api.fastly.com", "plain http is only allowed for loopback addresses"),
        ("http://10.0.0.1:8787", "plain http is only allowed for loopback addresses"),
        ("http://[::ffff:127.0.0.1]", "plain http is only allowed for loopback addresses"),
        ("http://localhost.example.com", "plain http is only allowed for loopback addresses"),
        ("ftp://127.0.0.1", "expected https://host"),
        ("api.fastly.com", "expected https://host"),
        ("https://user:pw@api.fastly.com", "must not contain a user name or password"),
        ("https://api.fastly.com/?x=1", "must not contain a query"),
    ],
)
def test_base_url_refused(url: str, problem: str) -> None:
    with pytest.raises(ConfigError) as caught:
        check_base_url(url, "sources[2].base_url")
    assert caught.value.problems[0].startswith(f"sources[2].base_url: {problem}")


async def test_open_provider_refuses_plain_http_off_loopback(http: HttpClient) -> None:
    settings = FastlySourceSettings(name="f", provider="fastly", base_url="http://api.fastly.com")
    with pytest.raises(ConfigError, match=r"sources\[3\].base_url: plain http"):
        open_provider(settings, 3, http, {"FASTLY_API_TOKEN": "token-value"})


async def test_open_provider_refuses_an_edgerc_host_over_plain_http(
    http: HttpClient, tmp_path: Path
) -> None:
    edgerc = tmp_path / "edgerc"
    edgerc.write_text(SandboxCredentials().edgerc_text("http://akab-x.luna.akamaiapis.net"))
    edgerc.chmod(0o600)
    settings = AkamaiSourceSettings(name="a", provider="akamai", edgerc=edgerc)
    with pytest.raises(ConfigError, match=r"sources\[1\].edgerc: plain http"):
        open_provider(settings, 1, http, {})


async def test_open_provider_defaults_and_missing_secrets(http: HttpClient, tmp_path: Path) -> None:
    fastly = FastlySourceSettings(name="f", provider="fastly")
    provider = open_provider(fastly, 0, http, {"FASTLY_API_TOKEN": "token-value"})
    assert isinstance(provider, FastlyProvider) and provider.source == "f"
    with pytest.raises(MissingSecretError, match=r"sources\[0\].token_env"):
        open_provider(fastly, 0, http, {})

    edgerc = tmp_path / "edgerc"
    edgerc.write_text(SandboxCredentials().edgerc_text("akab-x.luna.akamaiapis.net"))
    edgerc.chmod(0o600)
    akamai = AkamaiSourceSettings(name="a", provider="akamai", edgerc=edgerc)
    assert isinstance(open_provider(akamai, 1, http, {}), AkamaiProvider)
    missing = AkamaiSourceSettings(name="a", provider="akamai", edgerc=tmp_path / "none")
    with pytest.raises(MissingSecretError, match=r"sources\[1\].edgerc"):
        open_provider(missing, 1, http, {})


def test_months_to_pull_end_with_todays_month() -> None:
    assert months_to_pull(date(2024, 2, 29), 3) == (Month(2023, 12), Month(2024, 1), Month(2024, 2))
    assert months_to_pull(date(2024, 1, 1), 1) == (Month(2024, 1),)
