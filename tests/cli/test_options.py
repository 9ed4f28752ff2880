"""Options behave the same in every command: --source and --month are validated alike,
global options go before or after the command, usage errors exit 1 (never 2)."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.cli.test_broken_states import Invoke, invoke  # noqa: F401  (the fixture)

CONFIG = """\
[state]
directory = "state"

[[sources]]
name = "fastly"
provider = "fastly"
token_env = "BROKEN_STATE_TOKEN"

[[sources]]
name = "akamai"
provider = "akamai"
edgerc = "missing.edgerc"
"""
UNKNOWN = (
    "error: invalid configuration:\n"
    "  --source: no source named 'nope' (configured: fastly, akamai)\n"
)


@pytest.fixture
def configured(tmp_path: Path, invoke: Invoke) -> Invoke:  # noqa: F811
    (tmp_path / "reconciler.toml").write_text(CONFIG, encoding="utf-8")
    return invoke


@pytest.mark.parametrize(
    "args",
    [
        ["pull", "--source", "nope"],
        ["plan", "--no-refresh", "--source", "nope"],
        ["state", "list", "--source", "nope"],
        ["findings", "--source", "nope"],
        ["report", "--source", "nope"],
    ],
)
def test_an_unknown_source_is_the_same_error_everywhere(
    configured: Invoke, args: list[str]
) -> None:
    ran = configured(*args)
    assert (ran.code, ran.stdout, ran.stderr) == (1, "", UNKNOWN)


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["state", "list", "--month", "2024-13"], "'2024-13' is not a month (expected YYYY-MM)"),
        (["report", "--month", "July"], "'July' is not a month (expected YYYY-MM)"),
        (["pull", "--as-of", "yesterday"], "'yesterday' is not a date (expected YYYY-MM-DD)"),
        (["plan", "--as-of", "2024-02-30"], "'2024-02-30' is not a date (expected YYYY-MM-DD)"),
        (["report", "--as-of", "x"], "'x' is not a date (expected YYYY-MM-DD)"),
        (["plan", "--detailed-exitcode", "--bogus"], "No such option '--bogus'"),
        (["plan", "--limit", "-1"], "-1 is not in the range x>=0"),
        (["apply", "--limit", "x"], "'x' is not a valid integer"),
    ],
)
def test_usage_errors_exit_1_with_one_message(
    configured: Invoke, args: list[str], message: str
) -> None:
    ran = configured(*args)
    assert ran.code == 1
    assert ran.stdout == ""
    assert message in ran.stderr.splitlines()[-1]


def test_global_options_go_before_or_after_the_command(configured: Invoke) -> None:
    before = configured("-q", "--config", "reconciler.toml", "state", "list", "--source", "x")
    after = configured("state", "list", "--source", "x", "--config", "reconciler.toml", "-q")
    assert before == after
    assert before.stderr == (
        "error: invalid configuration:\n"
        "  --source: no source named 'x' (configured: fastly, akamai)\n"
    )
    missing = configured("findings", "--config", "elsewhere.toml")
    assert missing.code == 1
    assert "elsewhere.toml does not exist" in missing.stderr
