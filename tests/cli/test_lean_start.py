"""Each command imports what it uses: the real entry point, run under ``python -X importtime``.

``--version`` and ``--help`` load neither the settings, the store nor any HTTP or database
library (help lists each command from :data:`SUMMARIES`, which must say what the command's own
help says); a pull and ``config check`` load no migration tool, no templates, no metrics, no
scheduler, no daemon service, no sandbox, no reports and, on SQLite, no PostgreSQL dialect.
Modules are read from the interpreter's own import log, not timed.
"""

from __future__ import annotations

import asyncio
import os
import re
import sys
from pathlib import Path

import click
import pytest

from reconciler.cli import COMMANDS, SUMMARIES, cli
from reconciler.sandbox import SandboxServer, named_scenario
from tests.security.support import write_config

NEVER_FOR_VERSION = (
    "aiohttp",
    "alembic",
    "asyncio",
    "jinja2",
    "prometheus_client",
    "pydantic",
    "sqlalchemy",
    "sqlmodel",
    "reconciler.sandbox",
    "reconciler.settings",
    "reconciler.store",
)
NEVER_FOR_WORK = (
    "alembic",
    "jinja2",
    "prometheus_client",
    "apscheduler",
    "reconciler.sandbox",
    "reconciler.reports",
    # The daemon's service, HTTP endpoint and metrics (a pull does use its leases).
    "reconciler.daemon.service",
    "reconciler.daemon.http",
    "reconciler.daemon.metrics",
    "reconciler.daemon.systemd",
    # The state is SQLite here: PostgreSQL's dialect loads every PostgreSQL driver's module.
    "sqlalchemy.dialects.postgresql",
)


async def imported_by(*args: str, cwd: Path, env: dict[str, str] | None = None) -> set[str]:
    """The modules ``python -m reconciler ARGS`` imports; fails unless it exits 0."""
    base = {k: v for k, v in os.environ.items() if not k.startswith(("RECONCILER_", "FASTLY_"))}
    proc = await asyncio.create_subprocess_exec(
        sys.executable,
        "-X",
        "importtime",
        "-m",
        "reconciler",
        *args,
        cwd=cwd,
        env={**base, **(env or {})},
        stdin=asyncio.subprocess.DEVNULL,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    async with asyncio.timeout(120):
        out, err = await proc.communicate()
    log = err.decode()
    assert proc.returncode == 0, out.decode() + log
    names = set(re.findall(r"^import time:[^|]*\|[^|]*\|\s*(\S+)\s*$", log, re.M))
    assert "reconciler.cli" in names  # the log was read right
    return names


def loaded(names: set[str], packages: tuple[str, ...]) -> list[str]:
    return sorted(n for n in names if any(n == p or n.startswith(p + ".") for p in packages))


async def test_version_imports_the_command_line_alone(tmp_path: Path) -> None:
    names = await imported_by("--version", cwd=tmp_path)
    assert loaded(names, NEVER_FOR_VERSION) == []


async def test_help_lists_every_command_without_importing_one(tmp_path: Path) -> None:
    names = await imported_by("--help", cwd=tmp_path)
    assert loaded(names, NEVER_FOR_VERSION) == []
    assert loaded(names, tuple(where.partition(":")[0] for where in COMMANDS.values())) == []


@pytest.mark.parametrize("name", sorted(COMMANDS))
def test_each_summary_is_what_the_command_itself_would_list(name: str) -> None:
    assert sorted(SUMMARIES) == sorted(COMMANDS)
    command = cli.get_command(click.Context(cli), name)
    assert command is not None
    for limit in (30, 45, 80, 200):
        assert cli.listed_help(click.Context(cli), name, limit) == command.get_short_help_str(limit)


async def test_a_pull_and_config_check_import_no_tool_they_do_not_use(tmp_path: Path) -> None:
    sandbox = SandboxServer(named_scenario("tiny"), host="127.0.0.1")
    async with sandbox:
        write_config(tmp_path, sandbox)
        env = {"FASTLY_API_TOKEN": sandbox.fastly_token}
        await imported_by("init", cwd=tmp_path, env=env)
        pull = await imported_by("pull", "--as-of", "2024-07-10", cwd=tmp_path, env=env)
        check = await imported_by("config", "check", cwd=tmp_path, env=env)
    assert "reconciler.providers.akamai" in pull  # it did pull
    assert loaded(pull, NEVER_FOR_WORK) == []
    assert loaded(check, NEVER_FOR_WORK) == []
