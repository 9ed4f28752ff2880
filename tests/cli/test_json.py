"""--json on the read commands: one convention (snake_case keys, exact decimal strings,
ISO 8601 UTC times), checked on the demo's state."""

from __future__ import annotations

import json
from pathlib import Path

from tests.test_cli import run


def test_read_commands_print_json(demo_state: Path) -> None:
    current = json.loads(run("db", "current", "--json", cwd=demo_state).stdout)
    assert current["up_to_date"] is True and current["current"] == current["newest"]

    listed = run("state", "list", "--json", "--month", "2024-07", cwd=demo_state).stdout
    first = json.loads(listed.splitlines()[0])
    shown = run("state", "show", first["key"], "--json", cwd=demo_state)
    assert shown.returncode == 0, shown.stderr
    data = json.loads(shown.stdout)
    assert data["line"] == first
    assert data["history"][-1]["quantity"] == first["quantity"]
    assert data["history"][-1]["recorded_at"].endswith("+00:00")

    report = run("report", "--format", "json", "--as-of", "2024-07-15", "--json", cwd=demo_state)
    assert report.returncode == 0, report.stderr
    written = json.loads(report.stdout)
    assert (written["format"], written["first_month"], written["last_month"]) == (
        "json",
        "2024-02",
        "2024-07",
    )
    assert Path(demo_state, written["path"]).is_file()


def test_pull_json_reports_each_source_even_when_it_fails(tmp_path: Path) -> None:
    (tmp_path / "reconciler.toml").write_text(
        "[[sources]]\nname = 'f'\nprovider = 'fastly'\nbase_url = 'http://127.0.0.1:9'\n"
        "max_retries = 0\ntoken_env = 'T'\n",
        encoding="utf-8",
    )
    assert run("init", cwd=tmp_path).returncode == 0
    result = run("pull", "--json", cwd=tmp_path, env={"T": "token"})
    assert result.returncode == 1
    (outcome,) = json.loads(result.stdout)
    assert (outcome["source"], outcome["ok"], outcome["lines_read"]) == ("f", False, 0)
    assert "127.0.0.1:9" in outcome["error"] or "connect" in outcome["error"].lower()
