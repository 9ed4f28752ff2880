"""The CLI through its real entry point (a subprocess running ``python -m reconciler``)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import click
import pytest

from reconciler import __version__
from reconciler.cli import cli

SECRET = "fastly-token-that-must-not-leak-42"


def run(
    *args: str, cwd: Path, env: dict[str, str] | None = None
) -> subprocess.CompletedProcess[str]:
    base = {k: v for k, v in os.environ.items() if not k.startswith("RECONCILER_")}
    base.pop("FASTLY_API_TOKEN", None)
    base.pop("SLACK_WEBHOOK_URL", None)
    return subprocess.run(
        [sys.executable, "-m", "reconciler", *args],
        cwd=cwd,
        env={**base, **(env or {})},
        capture_output=True,
        text=True,
        timeout=120,
    )


def _walk(
    group: click.Group, prefix: tuple[str, ...] = ()
) -> list[tuple[tuple[str, ...], click.Command]]:
    """Every command under ``group``, found as click finds them (loading the lazy ones)."""
    found: list[tuple[tuple[str, ...], click.Command]] = []
    ctx = click.Context(group, info_name=" ".join(prefix) or "reconciler")
    for name in group.list_commands(ctx):
        command = group.get_command(ctx, name)
        assert command is not None, f"{' '.join((*prefix, name))} is listed but cannot be loaded"
        found.append(((*prefix, name), command))
        if isinstance(command, click.Group):
            found.extend(_walk(command, (*prefix, name)))
    return found


def test_every_command_has_help_text() -> None:
    commands = _walk(cli)
    assert len(commands) >= 5
    missing = [" ".join(path) for path, command in commands if not (command.help or "").strip()]
    assert missing == []
    for path, command in commands:
        for param in command.params:
            if isinstance(param, click.Option) and not param.hidden:
                assert param.help, f"{' '.join(path)} {param.opts} has no help"


def test_version(tmp_path: Path) -> None:
    result = run("--version", cwd=tmp_path)
    assert result.returncode == 0
    assert result.stdout == f"reconciler, version {__version__}\n"


def test_init_creates_state_and_config(tmp_path: Path) -> None:
    result = run("init", cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    assert (tmp_path / "reconciler.toml").is_file()
    assert (tmp_path / ".reconciler" / "state.db").is_file()
    assert "wrote example configuration to reconciler.toml" in result.stdout
    again = run("init", cwd=tmp_path)
    assert again.returncode == 0
    assert "already up to date" in again.stdout
    current = run("db", "current", cwd=tmp_path)
    assert current.stdout.splitlines()[-1] == "up to date"


def test_db_current_without_database_says_how_to_create_it(tmp_path: Path) -> None:
    result = run("db", "current", cwd=tmp_path)
    assert result.returncode == 1
    assert result.stderr.startswith("error: no state database at ")
    assert "run 'reconciler init'" in result.stderr


def test_config_check_valid_masks_secrets(tmp_path: Path) -> None:
    (tmp_path / "reconciler.toml").write_text(
        "[[sources]]\nname = 'f'\nprovider = 'fastly'\n", encoding="utf-8"
    )
    result = run("config", "check", cwd=tmp_path, env={"FASTLY_API_TOKEN": SECRET})
    assert result.returncode == 0, result.stderr
    assert "# secrets (masked): f: token ********; slack: no webhook configured" in result.stdout
    assert SECRET not in result.stdout + result.stderr
    as_json = run("config", "check", "--json", cwd=tmp_path, env={"FASTLY_API_TOKEN": SECRET})
    assert as_json.returncode == 0
    assert SECRET not in as_json.stdout


def test_config_check_lists_every_problem(tmp_path: Path) -> None:
    (tmp_path / "reconciler.toml").write_text(
        "[[sources]]\nname = 'a'\nprovider = 'fastly'\n"
        "[[sources]]\nname = 'b'\nprovider = 'fastlyy'\n[daemon]\nlisten = 'x'\n",
        encoding="utf-8",
    )
    result = run("config", "check", cwd=tmp_path)
    assert result.returncode == 1
    assert result.stderr.splitlines() == [
        "configuration problems in reconciler.toml:",
        "  sources[1].provider: unknown provider 'fastlyy' (expected: fastly, akamai)",
        "  daemon.listen: invalid listen address 'x' (expected HOST:PORT or '')",
    ]


def test_config_check_names_a_missing_secret(tmp_path: Path) -> None:
    (tmp_path / "reconciler.toml").write_text(
        "[[sources]]\nname = 'f'\nprovider = 'fastly'\ntoken_env = 'F_TOKEN'\n", encoding="utf-8"
    )
    result = run("config", "check", cwd=tmp_path)
    assert result.returncode == 1
    assert (
        "  sources[0].token_env: Fastly API token for source 'f' not found: looked in "
        "environment variable F_TOKEN"
    ) in result.stderr.splitlines()


@pytest.mark.parametrize("flag", ["--help", "-h"])
def test_help(tmp_path: Path, flag: str) -> None:
    result = run(flag, cwd=tmp_path)
    assert result.returncode == 0
    assert "Catch CDN billing surprises" in result.stdout
