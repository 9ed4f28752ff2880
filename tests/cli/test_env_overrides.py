"""Environment overrides reach list entries, as the README promises."""

from __future__ import annotations

from pathlib import Path

import pytest

from reconciler.errors import ConfigError
from reconciler.settings import load_settings

CONFIG = """\
[[sources]]
name = "a"
provider = "fastly"

[[sources]]
name = "b"
provider = "fastly"
timeout_s = 30
"""


@pytest.fixture
def config(tmp_path: Path) -> Path:
    path = tmp_path / "reconciler.toml"
    path.write_text(CONFIG, encoding="utf-8")
    return path


def test_an_override_of_a_list_entry_changes_that_entry_only(
    config: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("RECONCILER_SOURCES__1__TIMEOUT_S", "5")
    monkeypatch.setenv("RECONCILER_SOURCES__0__LOOKBACK_MONTHS", "2")
    settings, _ = load_settings(config)
    a, b = settings.sources
    assert (a.name, a.lookback_months, b.name, b.timeout_s) == ("a", 2, "b", 5.0)
    assert a.timeout_s != 5.0


def test_an_override_of_an_entry_that_does_not_exist_is_a_clear_error(
    config: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("RECONCILER_SOURCES__2__TIMEOUT_S", "5")
    with pytest.raises(ConfigError) as caught:
        load_settings(config)
    assert caught.value.problems == [
        "sources[2] (from the environment, RECONCILER_SOURCES__2__...): there are only 2 "
        "sources entries"
    ]


def test_a_bad_value_from_the_environment_names_its_key(
    config: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("RECONCILER_SOURCES__0__TIMEOUT_S", "soon")
    with pytest.raises(ConfigError) as caught:
        load_settings(config)
    assert caught.value.problems[0].startswith("sources[0].timeout_s: ")
