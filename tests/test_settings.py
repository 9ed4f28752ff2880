from __future__ import annotations

import logging
from datetime import timedelta
from decimal import Decimal
from pathlib import Path

import pytest

from reconciler.errors import ConfigError, MissingSecretError
from reconciler.secrets import resolve_secret
from reconciler.settings import (
    AkamaiSourceSettings,
    FastlySourceSettings,
    Tolerance,
    load_settings,
    parse_duration,
    settings_from_mapping,
)

SECRET = "fastly-secret-token-0123456789"


def write(path: Path, text: str) -> Path:
    path.write_text(text, encoding="utf-8")
    return path


def test_explicit_path_beats_env_beats_local_beats_system(
    clean_env: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    explicit = write(clean_env / "explicit.toml", "[daemon]\nlisten = '127.0.0.1:1'\n")
    from_env = write(clean_env / "env.toml", "[daemon]\nlisten = '127.0.0.1:2'\n")
    write(clean_env / "reconciler.toml", "[daemon]\nlisten = '127.0.0.1:3'\n")
    monkeypatch.setenv("RECONCILER_CONFIG", str(from_env))
    assert load_settings(explicit)[0].daemon.listen == "127.0.0.1:1"
    assert load_settings(None)[0].daemon.listen == "127.0.0.1:2"
    monkeypatch.delenv("RECONCILER_CONFIG")
    settings, path = load_settings(None)
    assert settings.daemon.listen == "127.0.0.1:3"
    assert path == Path("reconciler.toml")


def test_no_file_anywhere_gives_defaults(clean_env: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr("reconciler.settings.SYSTEM_CONFIG", clean_env / "absent.toml")
    settings, path = load_settings(None)
    assert path is None
    assert settings.sources == []
    assert settings.database_url.endswith(".reconciler/state.db")


def test_environment_overrides_the_file(clean_env: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    path = write(clean_env / "c.toml", "[daemon]\nlisten = '127.0.0.1:1'\n")
    monkeypatch.setenv("RECONCILER_DAEMON__LISTEN", "127.0.0.1:9200")
    monkeypatch.setenv("RECONCILER_STATE__DATABASE_URL", "postgresql+asyncpg://db/x")
    settings, _ = load_settings(path)
    assert settings.daemon.listen == "127.0.0.1:9200"
    assert settings.database_url == "postgresql+asyncpg://db/x"


def test_state_directory_under_systemd(clean_env: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("STATE_DIRECTORY", "/var/lib/reconciler:/var/lib/other")
    settings = settings_from_mapping({})
    assert settings.state_directory == Path("/var/lib/reconciler")
    assert settings.database_url == "sqlite+aiosqlite:////var/lib/reconciler/state.db"


@pytest.mark.parametrize(
    ("data", "problem"),
    [
        (
            {"sources": [{"name": "a", "provider": "fastlyy"}]},
            "sources[0].provider: unknown provider 'fastlyy' (expected: fastly, akamai)",
        ),
        ({"sources": [{"name": "a"}]}, "sources[0].provider: missing (expected: fastly, akamai)"),
        ({"colour": "blue"}, "colour: unknown key"),
        (
            {"sources": [{"name": "a", "provider": "fastly", "contracts": ["K-1"]}]},
            "sources[0].contracts: unknown key",
        ),
        ({"sources": [{"provider": "akamai"}]}, "sources[0].name: required key is missing"),
        (
            {"sources": [{"name": "a", "provider": "fastly", "pull_every": "soon"}]},
            "sources[0].pull_every: invalid duration 'soon' (expected e.g. '90s', '30m', '6h', "
            "'1d')",
        ),
        (
            {"expectations": [{"source": "a"}]},
            "expectations[0]: declares nothing: set monthly_max, monthly_min, monthly_quantity, "
            "unit, invoices or monthly_budget",
        ),
        (
            {"expectations": [{"monthly_max": "lots"}]},
            "expectations[0].monthly_max: invalid quantity 'lots'",
        ),
        (
            {"expectations": [{"invoices": {"May": "1"}}]},
            "expectations[0].invoices: invalid month 'May' (expected YYYY-MM)",
        ),
        ({"daemon": {"listen": "nowhere"}}, "daemon.listen: invalid listen address 'nowhere'"),
        (
            {"sources": [{"name": "a", "provider": "fastly"}, {"name": "a", "provider": "akamai"}]},
            "duplicate source names: a",
        ),
        (
            {"sources": [{"name": "a", "provider": "fastly", "product_id": "cdn_usage"}]},
            "sources[0]: product_id and usage_type_name must be set together",
        ),
        ({"severities": {"restated": "loud"}}, "severities.restated: Input should be"),
    ],
)
def test_every_problem_names_its_key_path(data: dict[str, object], problem: str) -> None:
    with pytest.raises(ConfigError) as caught:
        settings_from_mapping(data)
    assert any(p.startswith(problem) for p in caught.value.problems), caught.value.problems


def test_all_problems_are_reported_at_once() -> None:
    with pytest.raises(ConfigError) as caught:
        settings_from_mapping({"colour": 1, "daemon": {"listen": "x"}, "sources": [{"name": "a"}]})
    assert len(caught.value.problems) == 3


def test_toml_numbers_stay_exact(tmp_path: Path) -> None:
    path = write(
        tmp_path / "c.toml",
        "[[expectations]]\nmonthly_max = 12345678901.0123456789\ntolerance = '2.5%'\n"
        "[expectations.invoices]\n'2024-05' = 0.1\n",
    )
    expectation = load_settings(path)[0].expectations[0]
    assert expectation.monthly_max == Decimal("12345678901.0123456789")
    assert expectation.invoices["2024-05"] == Decimal("0.1")
    assert expectation.tolerance == Tolerance(percent=Decimal("2.5"))


def test_invalid_toml_names_the_file(tmp_path: Path) -> None:
    path = write(tmp_path / "bad.toml", "[daemon\n")
    with pytest.raises(ConfigError, match=r"bad\.toml"):
        load_settings(path)


def test_missing_file_is_an_error(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="does not exist"):
        load_settings(tmp_path / "nope.toml")


@pytest.mark.parametrize(
    ("text", "seconds"),
    [("90s", 90), ("30m", 1800), ("6h", 21600), ("1d", 86400), ("2w", 1209600), (15, 15)],
)
def test_durations(text: object, seconds: int) -> None:
    assert parse_duration(text) == timedelta(seconds=seconds)


@pytest.mark.parametrize(
    ("tolerance", "reference", "allowed"), [("5%", "200", "10"), ("7", "1", "7")]
)
def test_tolerance(tolerance: str, reference: str, allowed: str) -> None:
    assert Tolerance.parse(tolerance).allowance(Decimal(reference)) == Decimal(allowed)


def _fastly(**extra: object) -> FastlySourceSettings:
    source = settings_from_mapping(
        {"sources": [{"name": "f", "provider": "fastly", **extra}]}
    ).sources[0]
    assert isinstance(source, FastlySourceSettings)
    return source


def test_secret_from_env_file_and_credentials(tmp_path: Path) -> None:
    ref = _fastly(token_env="MY_TOKEN").token_ref(0)
    assert resolve_secret(ref, {"MY_TOKEN": SECRET}).get_secret_value() == SECRET
    creds = tmp_path / "creds"
    creds.mkdir()
    (creds / "fastly-token").write_text(SECRET + "-cred\n")
    env = {"MY_TOKEN": SECRET, "CREDENTIALS_DIRECTORY": str(creds)}
    assert resolve_secret(ref, env).get_secret_value() == SECRET + "-cred"
    token_file = tmp_path / "token"
    token_file.write_text(SECRET + "-file")
    token_file.chmod(0o600)
    ref = _fastly(token_env="MY_TOKEN", token_file=str(token_file)).token_ref(0)
    assert resolve_secret(ref, env).get_secret_value() == SECRET + "-file"


def test_missing_secret_names_where_it_looked(tmp_path: Path) -> None:
    ref = _fastly(token_env="MY_TOKEN").token_ref(3)
    with pytest.raises(MissingSecretError) as caught:
        resolve_secret(ref, {"CREDENTIALS_DIRECTORY": str(tmp_path)})
    message = str(caught.value)
    assert "sources[3].token_env" in message
    assert "environment variable MY_TOKEN" in message
    assert "systemd credential 'fastly-token'" in message


def test_secret_is_masked_in_repr_and_errors(tmp_path: Path) -> None:
    secret = resolve_secret(_fastly().token_ref(0), {"FASTLY_API_TOKEN": SECRET})
    assert SECRET not in repr(secret)
    assert SECRET not in str(secret)
    assert SECRET not in f"{secret!r} {secret}"


def test_secret_file_readable_by_others_warns(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    token_file = tmp_path / "token"
    token_file.write_text(SECRET)
    token_file.chmod(0o644)
    with caplog.at_level(logging.WARNING):
        resolve_secret(_fastly(token_file=str(token_file)).token_ref(0), {})
    assert "readable by other users" in caplog.text
    assert SECRET not in caplog.text
    caplog.clear()
    token_file.chmod(0o600)
    with caplog.at_level(logging.WARNING):
        resolve_secret(_fastly(token_file=str(token_file)).token_ref(0), {})
    assert caplog.text == ""


def test_akamai_defaults() -> None:
    source = settings_from_mapping(
        {"sources": [{"name": "a", "provider": "akamai", "contracts": ["K-0N7RAK7"]}]}
    ).sources[0]
    assert isinstance(source, AkamaiSourceSettings)
    assert source.section == "default"
    assert source.allowed_age == timedelta(hours=18)


BOTH_BREAKDOWNS = (
    "sources[0].reporting_groups: a source with cp_codes = true takes no reporting_groups "
    "(both break down the same contract product usage, which would be counted twice): "
    "choose one breakdown per source, CP codes being the finer"
)


@pytest.mark.parametrize(
    ("cp_codes", "reporting_groups", "problems"),
    [
        (True, ["12345"], [BOTH_BREAKDOWNS]),
        (True, ["12345", "678"], [BOTH_BREAKDOWNS]),
        (True, [], []),
        (False, ["12345"], []),
        (True, ["012"], ["sources[0].reporting_groups: reporting group ids are positive"]),
    ],
)
def test_one_breakdown_per_akamai_source(
    cp_codes: bool, reporting_groups: list[str], problems: list[str]
) -> None:
    source = {
        "name": "akamai",
        "provider": "akamai",
        "cp_codes": cp_codes,
        "reporting_groups": reporting_groups,
    }
    try:
        settings_from_mapping({"sources": [source]})
        found: list[str] = []
    except ConfigError as exc:
        found = exc.problems
    assert len(found) == len(problems), found
    assert all(f.startswith(p) for f, p in zip(found, problems, strict=True)), found


def test_cp_codes_from_the_environment_also_refuse_reporting_groups(
    clean_env: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = write(
        clean_env / "c.toml",
        '[[sources]]\nname = "akamai"\nprovider = "akamai"\nreporting_groups = ["12345"]\n',
    )
    assert load_settings(path)[0].sources[0].reporting_groups == ["12345"]  # type: ignore[union-attr]
    monkeypatch.setenv("RECONCILER_SOURCES__0__CP_CODES", "true")
    with pytest.raises(ConfigError) as caught:
        load_settings(path)
    assert caught.value.problems == [BOTH_BREAKDOWNS]
