"""Every duration and count has a documented range that ``config check`` enforces: a value that
would crash the daemon, never fire, or spin a core is one line naming its key."""

from __future__ import annotations

from pathlib import Path

import pytest

from reconciler.errors import ConfigError
from reconciler.settings import settings_from_mapping
from tests.test_cli import run

SOURCE = "[[sources]]\nname = 'a'\nprovider = 'fastly'\n"

# (TOML, the one problem config check reports)
EXTREMES = [
    (SOURCE + "pull_every = 1e300\n", "sources[0].pull_every: duration 1E+300 is not a usable"),
    (SOURCE + "pull_every = 'inf'\n", "sources[0].pull_every: invalid duration 'inf'"),
    (SOURCE + "pull_every = '0.001s'\n", "sources[0].pull_every: must be between 1s and 90d"),
    (SOURCE + "max_age = '1000d'\n", "sources[0].max_age: must be between 1s and 365d"),
    (SOURCE + "timeout_s = inf\n", "sources[0].timeout_s: Input should be a finite number"),
    (SOURCE + "timeout_s = nan\n", "sources[0].timeout_s: Input should be a finite number"),
    (SOURCE + "timeout_s = 1e9\n", "sources[0].timeout_s: Input should be less than or equal"),
    (SOURCE + "retry_cap_s = 0\n", "sources[0].retry_cap_s: Input should be greater than or"),
    ("[daemon]\nlease_ttl_s = inf\n", "daemon.lease_ttl_s: Input should be a finite number"),
    ("[daemon]\nfirst_pull_delay_s = 1e308\n", "daemon.first_pull_delay_s: Input should be less"),
    ("[daemon]\nhousekeeping_every = 0.000001\n", "daemon.housekeeping_every: must be between"),
    ("[daemon]\njitter_s = -1\n", "daemon.jitter_s: Input should be greater than or equal to 0"),
    ("[daemon]\nalert_every_s = 1e-9\n", "daemon.alert_every_s: Input should be greater"),
    ("[daemon]\nstop_timeout_s = 1e300\n", "daemon.stop_timeout_s: Input should be less"),
    ("[daemon]\nkeep_runs_days = 0\n", "daemon.keep_runs_days: Input should be greater"),
    ("[daemon]\nmax_concurrent_pulls = 0\n", "daemon.max_concurrent_pulls: Input should be"),
    ("[daemon]\nmetrics_services = 5000\n", "daemon.metrics_services: Input should be less"),
    ("[reports]\nevery = '0.5s'\n", "reports.every: must be between 1s and 90d, got 0.5s"),
    ("[reports]\nkeep_days = 100000\n", "reports.keep_days: Input should be less than or equal"),
]


@pytest.mark.parametrize(("toml", "problem"), EXTREMES, ids=[p for _, p in EXTREMES])
def test_config_check_refuses_values_outside_their_range(
    tmp_path: Path, toml: str, problem: str
) -> None:
    (tmp_path / "reconciler.toml").write_text(toml, encoding="utf-8")
    result = run("config", "check", cwd=tmp_path, env={"FASTLY_API_TOKEN": "t"})
    assert result.returncode == 1, result.stdout
    lines = result.stderr.splitlines()
    assert lines[0] == "configuration problems in reconciler.toml:"
    assert len(lines) == 2 and lines[1].strip().startswith(problem), lines


@pytest.mark.parametrize(
    "data",
    [
        {"daemon": {"lease_ttl_s": 1, "stop_timeout_s": 3600, "jitter_s": 0}},
        {"daemon": {"housekeeping_every": "1m", "first_pull_delay_s": 86400}},
        {"sources": [{"name": "a", "provider": "fastly", "pull_every": "1s", "timeout_s": 0.1}]},
        {"sources": [{"name": "a", "provider": "fastly", "pull_every": "90d"}]},
        {"reports": {"every": "90d", "keep_days": 3650}},
    ],
)
def test_the_ends_of_each_range_are_accepted(data: dict[str, object]) -> None:
    settings_from_mapping(data)


def test_an_out_of_range_value_is_a_config_error_not_a_crash() -> None:
    with pytest.raises(ConfigError) as caught:
        settings_from_mapping(
            {"sources": [{"name": "a", "provider": "fastly", "pull_every": 1e300}]}
        )
    assert caught.value.problems == [
        "sources[0].pull_every: duration 1e+300 is not a usable length of time"
    ]
