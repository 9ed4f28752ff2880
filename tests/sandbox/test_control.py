"""The /_sandbox/ control API and what it hands out: credentials, .edgerc, config snippet."""

from __future__ import annotations

import tomllib
from pathlib import Path

from reconciler.providers.edgegrid import EdgeGridCredentials, authorization_header
from reconciler.settings import AkamaiSourceSettings, FastlySourceSettings, settings_from_mapping
from tests.sandbox.conftest import SandboxClient


async def test_credentials_document(sandbox: SandboxClient, tmp_path: Path) -> None:
    doc = await sandbox.control("GET", "credentials")
    assert doc["base_url"] == sandbox.server.base_url
    assert doc["fastly"]["token"] == "sandbox-fastly-token" == sandbox.server.fastly_token
    assert doc["akamai"]["contracts"] == ["K-0N7RAK7"]
    assert doc["akamai"]["edgerc"] == sandbox.server.edgerc_text()
    assert doc["config_snippet"] == sandbox.server.config_snippet()
    assert doc == sandbox.server.credentials_document()


async def test_the_edgerc_text_signs_requests_the_sandbox_accepts(
    sandbox: SandboxClient, tmp_path: Path
) -> None:
    edgerc = tmp_path / "sandbox.edgerc"
    edgerc.write_text(sandbox.server.edgerc_text(section="sandbox"))
    creds = EdgeGridCredentials.from_edgerc(edgerc, "sandbox")
    assert creds.host == sandbox.server.address
    assert creds.client_token == "akab-sandbox-client-token"
    url = f"{sandbox.server.base_url}/contract-api/v1/contracts/identifiers"
    status, body, _ = await sandbox.get(
        url, {"Authorization": authorization_header(creds, "GET", url)}
    )
    assert status == 200, body


async def test_the_config_snippet_is_a_valid_configuration(sandbox: SandboxClient) -> None:
    data = tomllib.loads(sandbox.server.config_snippet(edgerc_path="sandbox.edgerc"))
    settings = settings_from_mapping(data)
    fastly, akamai = settings.sources
    assert isinstance(fastly, FastlySourceSettings) and isinstance(akamai, AkamaiSourceSettings)
    assert fastly.base_url == akamai.base_url == sandbox.server.base_url
    assert fastly.token_env == "FASTLY_API_TOKEN" and fastly.finalize_after_days == 3
    assert akamai.contracts == ["K-0N7RAK7"] and akamai.edgerc == Path("sandbox.edgerc")


async def test_clock_control(sandbox: SandboxClient) -> None:
    assert await sandbox.control("GET", "clock") == {"today": "2024-07-10"}
    assert await sandbox.control("POST", "clock", {"advance_days": 25}) == {"today": "2024-08-04"}
    assert sandbox.server.state.today.isoformat() == "2024-08-04"
    url = f"{sandbox.server.base_url}/_sandbox/clock"
    for bad in ({"today": "tomorrow"}, {"advance_days": "3"}, {}, "x"):
        async with sandbox.session.post(url, json=bad) as resp:
            assert resp.status == 400
    async with sandbox.session.post(url, data=b"{not json") as resp:
        assert resp.status == 400


async def test_stats_count_routes_and_statuses(sandbox: SandboxClient) -> None:
    await sandbox.fastly("/billing/v3/invoices")
    await sandbox.fastly("/billing/v3/invoices", limit="999")
    await sandbox.get(sandbox.url("/billing/v3/invoices"))
    await sandbox.akamai("/contract-api/v1/contracts/identifiers")
    await sandbox.get(sandbox.url("/nowhere"))
    stats = await sandbox.control("GET", "stats")
    invoices = stats["routes"]["fastly.invoices"]
    assert invoices["statuses"] == {"200": 1, "400": 1, "401": 1} and invoices["requests"] == 3
    assert stats["routes"]["akamai.contract_identifiers"]["statuses"] == {"200": 1}
    assert stats["routes"]["unmatched"]["statuses"] == {"404": 1}
    assert sandbox.server.state.stats.requests("fastly.invoices", 400) == 1
    cleared = await sandbox.control("DELETE", "stats")
    assert "fastly.invoices" not in cleared["routes"]


async def test_reset(sandbox: SandboxClient) -> None:
    await sandbox.control("POST", "clock", {"today": "2024-09-01"})
    await sandbox.control("POST", "faults", {"kind": "html"})
    event = {"kind": "spike", "provider": "fastly", "day": "2024-07-01"}
    await sandbox.control("POST", "events", event)
    await sandbox.control("POST", "options", {"fastly_service_usage_shape": "nested"})
    assert await sandbox.control("POST", "reset") == {"today": "2024-07-10"}
    assert await sandbox.control("GET", "faults") == []
    assert await sandbox.control("GET", "events") == []
    body = await sandbox.fastly_json("/billing/v3/service-usage-metrics")
    assert isinstance(body["data"], list)


async def test_scenario_parameters(sandbox: SandboxClient) -> None:
    scenario = await sandbox.control("GET", "scenario")
    assert scenario["name"] == "default" and scenario["today"] == "2024-07-10"
    assert scenario["first_month"] == "2024-01" and scenario["fastly_services"] == 3


async def test_index_lists_the_routes(sandbox: SandboxClient) -> None:
    index = await sandbox.control("GET", "")
    assert "GET /billing/v3/service-usage-metrics" in index["routes"]
    assert "POST /_sandbox/clock" in index["routes"]
    assert index["today"] == "2024-07-10"
