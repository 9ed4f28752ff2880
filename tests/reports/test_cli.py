"""``reconciler report`` through its real entry point (a subprocess)."""

from __future__ import annotations

import json
import os
import stat
import subprocess
import sys
from pathlib import Path

import pytest
from click.testing import CliRunner, Result

from reconciler.cli import cli
from reconciler.errors import ConfigError
from reconciler.store.db import create_engine, upgrade
from tests.reports.seed import seed_state

CONFIG = """
[state]
directory = "{state}"

[[sources]]
name = "fastly-prod"
provider = "fastly"

[[sources]]
name = "akamai-main"
provider = "akamai"

[reports]
months = 2
"""


def run(*args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("RECONCILER_")}
    return subprocess.run(
        [sys.executable, "-m", "reconciler", "--config", str(cwd / "reconciler.toml"), *args],
        cwd=cwd,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )


@pytest.fixture
async def workdir(tmp_path: Path) -> Path:
    state = tmp_path / "state"
    (tmp_path / "reconciler.toml").write_text(CONFIG.format(state=state))
    engine = create_engine(f"sqlite+aiosqlite:///{state / 'state.db'}", create=True)
    try:
        await upgrade(engine)
        await seed_state(engine)
    finally:
        await engine.dispose()
    return tmp_path


def test_default_html_report_goes_to_the_reports_directory(workdir: Path) -> None:
    result = run("report", "--from", "2024-01", "--to", "2024-06", cwd=workdir)
    assert result.returncode == 0, result.stderr
    path = Path(result.stdout.strip())
    assert path.parent == workdir / "state" / "reports"
    assert path.name.startswith("reconciler-report-") and path.suffix == ".html"
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert stat.S_IMODE(path.parent.stat().st_mode) == 0o700
    document = path.read_text()
    assert "<svg" in document and "fastly-prod" in document


def test_json_for_one_month_and_one_source(workdir: Path) -> None:
    out = workdir / "out" / "april.json"
    result = run(
        "report", "--month", "2024-04", "--source", "akamai-main", "--format", "json",
        "--out", str(out), cwd=workdir,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    assert result.stdout == f"{out}\n"
    data = json.loads(out.read_text())
    assert data["months"] == {"first": "2024-04", "last": "2024-04"}
    assert {s["source"] for s in data["series"]} == {"akamai-main"}


def test_markdown_writes_charts_beside_it(workdir: Path) -> None:
    out = workdir / "review.md"
    result = run("report", "--from", "2024-05", "--to", "2024-06", "--format", "md",
                 "--out", str(out), cwd=workdir)  # fmt: skip
    assert result.returncode == 0, result.stderr
    charts = sorted(workdir.glob("review-*.svg"))
    assert charts and all(f"]({c.name})" in out.read_text() for c in charts)


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--month", "2024-04", "--from", "2024-01"], "use either --month or --from/--to"),
        (["--month", "April"], "'April' is not a month (expected YYYY-MM)"),
        (["--from", "2024-05", "--to", "2024-01"], "--from 2024-05 is after --to 2024-01"),
        (["--format", "pdf"], "'pdf' is not one of 'html', 'md', 'json', 'focus-csv'"),
    ],
)
def test_bad_options(tmp_path: Path, args: list[str], message: str) -> None:
    result = _invoke(tmp_path, *args)
    assert result.exit_code == 2
    assert message in result.output


def test_unknown_source(tmp_path: Path) -> None:
    result = _invoke(tmp_path, "--source", "nope")
    assert isinstance(result.exception, ConfigError)
    assert str(result.exception).endswith(
        "--source: no source named 'nope' (configured: fastly-prod, akamai-main)"
    )


def _invoke(tmp_path: Path, *args: str) -> Result:
    """In-process, for option checks that fail before anything is opened."""
    config = tmp_path / "reconciler.toml"
    config.write_text(CONFIG.format(state=tmp_path / "state"))
    return CliRunner().invoke(cli, ["--config", str(config), "report", *args])


async def test_refuses_an_out_of_date_schema(tmp_path: Path) -> None:
    state = tmp_path / "state"
    (tmp_path / "reconciler.toml").write_text(CONFIG.format(state=state))
    engine = create_engine(f"sqlite+aiosqlite:///{state / 'state.db'}", create=True)
    await engine.dispose()
    result = run("report", cwd=tmp_path)
    assert result.returncode == 1
    assert "reconciler db upgrade" in result.stderr
    assert not (state / "reports").exists()
