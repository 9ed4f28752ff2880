"""The sandbox verifies every Akamai request's EdgeGrid signature, like Akamai's gateway."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
import time_machine
from pydantic import SecretStr

from reconciler.providers.edgegrid import (
    EdgeGridCredentials,
    authorization_header,
    edgegrid_timestamp,
)
from reconciler.sandbox import SandboxCredentials, named_scenario
from tests.sandbox.conftest import SandboxClient, StartSandbox, loads

VECTORS = Path(__file__).parent.parent / "fixtures" / "edgegrid"
IDS = "/contract-api/v1/contracts/identifiers"
SUMMARY = "/billing/v1/contracts/K-0N7RAK7/products/1-ABC012/usage/monthly-summary"
DENY_FIELDS = [
    "type",
    "title",
    "status",
    "detail",
    "instance",
    "method",
    "serverIp",
    "clientIp",
    "requestId",
    "requestTime",
]


def _creds(client: SandboxClient, **changes: Any) -> EdgeGridCredentials:
    values: dict[str, Any] = {
        "client_token": client.edgegrid.client_token,
        "client_secret": client.edgegrid.client_secret,
        "access_token": client.edgegrid.access_token,
        "host": f"http://{client.server.address}",
    }
    values.update(changes)
    return EdgeGridCredentials(**values)


def _assert_denied(status: int, body: bytes, headers: dict[str, str], detail: str) -> None:
    assert status == 401
    assert headers["Content-Type"].startswith("application/problem+json")
    problem = loads(body)
    assert list(problem) == DENY_FIELDS
    assert problem["type"] == "https://problems.luna.akamaiapis.net/-/pep-authn/deny"
    assert (problem["title"], problem["status"], problem["method"]) == (
        "Not authorized",
        401,
        "GET",
    )
    assert problem["detail"] == detail


async def test_signed_requests_are_accepted_on_every_akamai_route(sandbox: SandboxClient) -> None:
    for path, params in [
        (IDS, {"depth": "TOP"}),
        ("/contract-api/v1/contracts/K-0N7RAK7/products/summaries", {}),
        ("/billing/v1/contracts/K-0N7RAK7/products", {"start": "2024-06", "end": "2024-07"}),
        (SUMMARY, {"start": "2024-06", "end": "2024-07", "accountSwitchKey": "1-ABC:1-DEF"}),
    ]:
        status, body, _ = await sandbox.akamai(path, params)
        assert status == 200, body


async def test_a_tampered_signature_is_refused(sandbox: SandboxClient) -> None:
    url = sandbox.url(IDS)
    auth = authorization_header(sandbox.edgegrid, "GET", url)
    last = auth[-2]
    tampered = auth[:-2] + ("A" if last != "A" else "B") + auth[-1]
    _assert_denied(
        *await sandbox.get(url, {"Authorization": tampered}), "The signature does not match"
    )


async def test_a_signature_for_another_query_is_refused(sandbox: SandboxClient) -> None:
    signed_url = sandbox.url(SUMMARY, {"start": "2024-06", "end": "2024-07"})
    sent_url = sandbox.url(SUMMARY, {"start": "2024-01", "end": "2024-07"})
    auth = authorization_header(sandbox.edgegrid, "GET", signed_url)
    assert (await sandbox.get(signed_url, {"Authorization": auth}))[0] == 200
    _assert_denied(
        *await sandbox.get(sent_url, {"Authorization": auth}), "The signature does not match"
    )


async def test_a_signature_for_another_host_is_refused(sandbox: SandboxClient) -> None:
    url = sandbox.url(IDS)
    other = _creds(sandbox, host=f"http://localhost:{sandbox.server.port}")
    auth = authorization_header(other, "GET", url.replace("127.0.0.1", "localhost"))
    _assert_denied(*await sandbox.get(url, {"Authorization": auth}), "The signature does not match")


@pytest.mark.parametrize(
    ("changes", "detail"),
    [
        ({"client_secret": SecretStr("not-the-secret=")}, "The signature does not match"),
        ({"client_token": "akab-someone-else"}, "unknown client token"),
        ({"access_token": "akab-wrong-access-token"}, "access token mismatch"),
    ],
)
async def test_wrong_credentials_are_refused(
    sandbox: SandboxClient, changes: dict[str, Any], detail: str
) -> None:
    status, body, headers = await sandbox.akamai(IDS, creds=_creds(sandbox, **changes))
    _assert_denied(status, body, headers, detail)


@pytest.mark.parametrize("skew", [timedelta(minutes=-10), timedelta(minutes=10)])
async def test_a_timestamp_too_far_off_is_refused(sandbox: SandboxClient, skew: timedelta) -> None:
    url = sandbox.url(IDS)
    stamp = edgegrid_timestamp(datetime.now(UTC) + skew)
    auth = authorization_header(sandbox.edgegrid, "GET", url, timestamp=stamp)
    _assert_denied(*await sandbox.get(url, {"Authorization": auth}), "timestamp too far off")


@pytest.mark.parametrize(
    ("headers", "detail"),
    [
        ({}, "missing authorization header"),
        ({"Authorization": "Bearer abc"}, "malformed authorization header"),
    ],
)
async def test_missing_or_malformed_headers_are_refused(
    sandbox: SandboxClient, headers: dict[str, str], detail: str
) -> None:
    _assert_denied(*await sandbox.get(sandbox.url(IDS), headers), detail)


async def test_requests_signed_per_the_official_vectors_are_accepted(
    start_sandbox: StartSandbox,
) -> None:
    data = json.loads((VECTORS / "testdata.json").read_text())
    cases = {c["testName"]: c for c in json.loads((VECTORS / "testcases.json").read_text())}
    vector_host = data["base_url"].removeprefix("https://").rstrip("/")
    official = EdgeGridCredentials(
        client_token=data["client_token"],
        client_secret=SecretStr(data["client_secret"]),
        access_token=data["access_token"],
        host=vector_host,
        max_body=data["max_body"],
    )
    fixed = {"timestamp": data["timestamp"], "nonce": data["nonce"]}
    # The signer used here reproduces Akamai's own expected values...
    for name in ("simple GET", "GET with querystring"):
        url = f"https://{vector_host}{cases[name]['request']['path']}"
        assert (
            authorization_header(official, "GET", url, **fixed)
            == cases[name]["expectedAuthorization"]
        )
    # ... and a sandbox holding the vectors' credentials accepts that signing, at that moment.
    creds = SandboxCredentials(
        client_token=data["client_token"],
        client_secret=data["client_secret"],
        access_token=data["access_token"],
        max_body=data["max_body"],
    )
    client = await start_sandbox(named_scenario("default"), creds)
    url = client.url(IDS, {"depth": "TOP"})
    auth = authorization_header(client.edgegrid, "GET", url, **fixed)
    with time_machine.travel(datetime(2014, 3, 21, 19, 34, 21, tzinfo=UTC), tick=True):
        status, body, _ = await client.get(url, {"Authorization": auth})
    assert status == 200, body
    assert loads(body) == ["K-0N7RAK7"]
    # the same signature today is years off
    status, body, headers = await client.get(url, {"Authorization": auth})
    _assert_denied(status, body, headers, "timestamp too far off")
