"""``config check`` warns about what is valid but probably wrong: no sources, a source the
state has lines of but the configuration no longer names, keys overridden from the
environment (named, so a surprising value can be traced)."""

from __future__ import annotations

import tomllib
from pathlib import Path
from typing import NamedTuple

import pytest

from reconciler.cli.config_notes import env_overrides, unowned_notes
from reconciler.domain import reporting_group_service
from reconciler.settings import load_settings, settings_from_mapping
from reconciler.team_settings import TeamSettings
from tests.cli.test_broken_states import Invoke, invoke  # noqa: F401  (the fixture)
from tests.security.support import cli, tampered_sandbox, write_config


def test_a_configuration_without_sources_is_valid_with_a_warning(
    tmp_path: Path,
    invoke: Invoke,  # noqa: F811
) -> None:
    (tmp_path / "reconciler.toml").write_text("[daemon]\nlisten = ''\n")
    ran = invoke("config", "check")
    assert ran.code == 0
    assert ran.stderr == "warning: no [[sources]] configured: reconciler has nothing to pull\n"


async def test_a_renamed_source_and_an_environment_override_are_named(tmp_path: Path) -> None:
    async with tampered_sandbox() as (sandbox, _):
        config = write_config(tmp_path, sandbox)
        env = {"FASTLY_API_TOKEN": sandbox.fastly_token}
        assert (await cli("init", cwd=tmp_path, env=env)).code == 0
        pulled = await cli("pull", "--source", "akamai", "--as-of", "2024-07-10", cwd=tmp_path)
        assert pulled.code == 0, pulled.output
    config.write_text(config.read_text().replace('name = "akamai"', 'name = "akamai-main"'))
    env["RECONCILER_SOURCES__0__TIMEOUT_S"] = "5"
    ran = await cli("config", "check", cwd=tmp_path, env=env)
    assert ran.code == 0, ran.stderr
    assert ran.stderr.splitlines() == [
        "warning: the state has lines of source 'akamai', which the configuration does not "
        "name (renamed or removed?): its lines are kept but no longer pulled",
        "warning: environment variable RECONCILER_SOURCES__0__TIMEOUT_S overrides "
        "sources[0].timeout_s",
    ]


def test_environment_override_names() -> None:
    assert env_overrides(
        {"RECONCILER_DAEMON__LISTEN": "x", "RECONCILER_CONFIG": "c", "HOME": "/", "X": "y"}
    ) == ["environment variable RECONCILER_DAEMON__LISTEN overrides daemon.listen"]


CONFIG_WITH_ALERTS = """
[[sources]]
name = "fastly"
provider = "fastly"
token_env = "BROKEN_STATE_TOKEN"
lookback_months = 2

[[expectations]]
name = "bandwidth cap"
usage_type = "North America Bandwidth"
monthly_max = "1000.5"
tolerance = "5%"

[alerts.slack]
webhook_url_env = "CHECK_SLACK_URL"

[[alerts.slack.routes]]
source = "fastly"
webhook_url_env = "CHECK_ROUTE_URL"

[[alerts.channels]]
name = "ops"
type = "webhook"
url_env = "CHECK_CHANNEL_URL"
secret_env = "CHECK_CHANNEL_SECRET"
"""


def test_config_check_refuses_what_alerts_test_would_refuse(
    tmp_path: Path,
    invoke: Invoke,  # noqa: F811
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    (tmp_path / "reconciler.toml").write_text(CONFIG_WITH_ALERTS)
    monkeypatch.setenv("CHECK_SLACK_URL", "http://hooks.example.com/services/T0/B0/T0K3N")
    monkeypatch.setenv("CHECK_ROUTE_URL", "not a url")
    monkeypatch.setenv("CHECK_CHANNEL_URL", "http://127.0.0.1:9/hook")  # loopback: allowed
    ran = invoke("config", "check")
    assert ran.code == 1
    assert ran.stderr.splitlines() == [
        "configuration problems in reconciler.toml:",
        "  alerts.slack.webhook_url_env: Slack webhook URL (from $CHECK_SLACK_URL): the "
        "webhook URL must use https (plain http only to a loopback address)",
        "  alerts.slack.routes[0]: Slack webhook URL for source 'fastly' (from "
        "$CHECK_ROUTE_URL): the webhook URL is not valid",
    ]
    assert "T0K3N" not in ran.stdout + ran.stderr
    monkeypatch.setenv("CHECK_SLACK_URL", "https://hooks.example.com/services/T0/B0/T0K3N")
    monkeypatch.setenv("CHECK_ROUTE_URL", "https://hooks.example.com/services/T0/B1/T0K3N")
    assert invoke("config", "check").code == 0


def test_the_effective_configuration_reads_back_as_the_same_settings(
    tmp_path: Path,
    invoke: Invoke,  # noqa: F811
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    (tmp_path / "reconciler.toml").write_text(CONFIG_WITH_ALERTS)
    monkeypatch.setenv("CHECK_SLACK_URL", "https://hooks.example.com/services/T0/B0/T0K3N")
    monkeypatch.setenv("RECONCILER_SOURCES__0__TIMEOUT_S", "7")
    ran = invoke("config", "check")
    assert ran.code == 0, ran.stderr
    assert ran.stdout.splitlines()[:2] == [
        "# configuration: reconciler.toml",
        "# secrets (masked): fastly: token ********; slack: webhook URL ********",
    ]
    assert "T0K3N" not in ran.stdout
    original, _ = load_settings(tmp_path / "reconciler.toml", search=False)
    monkeypatch.delenv("RECONCILER_SOURCES__0__TIMEOUT_S")
    read_back = settings_from_mapping(tomllib.loads(ran.stdout))
    assert read_back.sources[0].timeout_s == 7.0  # the override is part of what is in effect
    assert read_back.model_dump(exclude={"state"}) == original.model_dump(exclude={"state"})
    assert read_back.database_url == original.database_url
    assert read_back.state_directory == original.state_directory


BOTH_BREAKDOWNS = """
[[sources]]
name = "akamai"
provider = "akamai"
contracts = ["K-0N7RAK7"]
edgerc = "edgerc"
cp_codes = true
reporting_groups = ["12345"]
"""


def test_config_check_refuses_both_breakdowns_on_one_akamai_source(
    tmp_path: Path,
    invoke: Invoke,  # noqa: F811
) -> None:
    config = tmp_path / "reconciler.toml"
    config.write_text(BOTH_BREAKDOWNS)
    edgerc = tmp_path / "edgerc"
    edgerc.write_text(
        "[default]\nclient_secret = s\nhost = akab-h.luna.akamaiapis.net\n"
        "access_token = a\nclient_token = c\n"
    )
    edgerc.chmod(0o600)
    problem = (
        "  sources[0].reporting_groups: a source with cp_codes = true takes no reporting_groups "
        "(both break down the same contract product usage, which would be counted twice): "
        "choose one breakdown per source, CP codes being the finer"
    )
    # config check, and any command loading the configuration: a heading, then one line.
    for command, heading in (
        (["config", "check"], "configuration problems in reconciler.toml:"),
        (["pull", "--source", "akamai"], "error: invalid configuration in reconciler.toml:"),
    ):
        ran = invoke(*command)
        assert (ran.code, ran.stderr.splitlines()) == (1, [heading, problem]), command
    config.write_text(BOTH_BREAKDOWNS.replace("cp_codes = true", "cp_codes = false"))
    assert invoke("config", "check").code == 0


class StoredLines(NamedTuple):
    """A row of the state's lines counted per line identity and month, as ``config check``
    reads them."""

    service: str
    month: str
    lines: int
    source: str = "akamai"
    account: str = "K-1"
    product: str = "1-AMD"
    product_name: str = "Adaptive Media Delivery"
    usage_type: str = "Total MB"
    region: str = ""
    service_name: str = ""


def test_unowned_lines_of_a_switched_source_are_named_month_by_month() -> None:
    # A source switched from cp_codes to reporting_groups: April is broken down by its CP
    # codes (its contract line no rule owns is shared cost), June by its group alone (what
    # the group leaves of the contract line is unallocated; June's CP-code lines, left from
    # before the switch, count in nobody's usage).
    teams = [
        TeamSettings.model_validate({"name": "video", "match": [{"reporting_group": "100"}]}),
        TeamSettings.model_validate({"name": "edge", "match": [{"cp_code": "7654321"}]}),
    ]
    rows = [
        StoredLines("", "2024-04", 1),
        StoredLines("7654321", "2024-04", 1),
        StoredLines("1234567", "2024-04", 1),
        StoredLines("", "2024-06", 2),
        StoredLines(reporting_group_service("100"), "2024-06", 2),
        StoredLines("7654321", "2024-06", 2),
        StoredLines("1234567", "2024-06", 2),
    ]
    assert unowned_notes(teams, rows) == [
        "no [[teams]] rule matches akamai K-1 product Adaptive Media Delivery (2 lines): "
        "unallocated",
        "no [[teams]] rule matches akamai service 1234567 (1 lines): unallocated",
    ]
