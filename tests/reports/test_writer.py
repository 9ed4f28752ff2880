"""The daemon's dated report set, owner-only files and retention."""

from __future__ import annotations

import json
import os
import stat
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from sqlalchemy.ext.asyncio import AsyncEngine

from reconciler.errors import StateError
from reconciler.reports.writer import (
    dated_name,
    previous_report_time,
    prune_reports,
    stamp_of,
    write_private,
    write_report_set,
)
from tests.reports.seed import NOW, Seeded, report_settings


def _mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


async def test_report_set_writes_every_format_owner_only(
    engine: AsyncEngine, seeded: Seeded, tmp_path: Path
) -> None:
    settings = report_settings(
        tmp_path / "state", formats=["html", "md", "json", "focus-csv"], months=3
    )
    paths = await write_report_set(engine, settings, NOW)
    directory = tmp_path / "state" / "reports"
    assert [p.name for p in paths] == [
        "reconciler-report-20240615T120000Z.html",
        "reconciler-report-20240615T120000Z.md",
        "reconciler-report-20240615T120000Z.json",
        "reconciler-report-20240615T120000Z.focus.csv",
    ]
    assert all(p.parent == directory for p in paths)
    assert _mode(directory) == 0o700
    files = sorted(directory.iterdir())
    charts = [f for f in files if f.suffix == ".svg"]
    assert len(charts) == 6 + 1  # six series, one restatement in Apr-Jun
    assert all(f.name.startswith("reconciler-report-20240615T120000Z-") for f in charts)
    assert {_mode(f) for f in files} == {0o600}
    assert not [f for f in files if f.name.startswith(".")]  # no temporary files left
    data = json.loads(paths[2].read_text())
    assert data["months"] == {"first": "2024-04", "last": "2024-06"}
    assert data["summary"]["changes"]["basis"] == "the latest run of each source"


async def test_second_set_reports_changes_since_the_first(
    engine: AsyncEngine, seeded: Seeded, tmp_path: Path
) -> None:
    settings = report_settings(tmp_path / "state", formats=["json"])
    first = datetime(2024, 6, 10, 12, tzinfo=UTC)
    await write_report_set(engine, settings, first)
    (path,) = await write_report_set(engine, settings, NOW)
    changes = json.loads(path.read_text())["summary"]["changes"]
    assert changes["basis"] == "the previous report"
    assert changes["since"] == "2024-06-10T12:00:00Z"
    assert sorted(changes["raised"]) == ["f-decreased", "f-image", "f-projected"]


def test_write_private_replaces_a_readable_file(tmp_path: Path) -> None:
    path = tmp_path / "out" / "nested" / "report.html"
    path.parent.mkdir(parents=True)
    path.write_text("old")
    path.chmod(0o644)
    write_private(path, "new")
    assert path.read_text() == "new"
    assert _mode(path) == 0o600


def test_write_private_creates_owner_only_directories(tmp_path: Path) -> None:
    old_umask = os.umask(0o022)
    try:
        write_private(tmp_path / "a" / "b" / "r.json", "{}")
    finally:
        os.umask(old_umask)
    assert _mode(tmp_path / "a") == 0o700 and _mode(tmp_path / "a" / "b") == 0o700


def test_write_private_error_names_the_file(tmp_path: Path) -> None:
    blocker = tmp_path / "file"
    blocker.write_text("")
    with pytest.raises(StateError, match="report directory"):
        write_private(blocker / "r.html", "x")


def test_names_and_stamps() -> None:
    name = dated_name("focus-csv", NOW)
    assert name == "reconciler-report-20240615T120000Z.focus.csv"
    assert stamp_of(name) == NOW
    assert stamp_of("reconciler-report-20240615T120000Z-usage-01.svg") == NOW
    for other in (
        "notes.txt",
        "reconciler-report-2024.html",
        "reconciler-report-20241315T000000Z.md",
    ):
        assert stamp_of(other) is None


def test_prune_keeps_recent_reports_and_everything_else(tmp_path: Path) -> None:
    def touch(name: str) -> Path:
        path = tmp_path / name
        path.write_text("x")
        return path

    old = NOW - timedelta(days=31)
    recent = NOW - timedelta(days=29)
    removed_files = [
        touch(dated_name("html", old)),
        touch(dated_name("md", old)),
        touch(dated_name("md", old).replace(".md", "-usage-01.svg")),
    ]
    kept = [
        touch(dated_name("html", recent)),
        touch(dated_name("json", NOW)),
        touch("notes.txt"),
        touch("reconciler-report-latest.html"),
    ]
    (tmp_path / dated_name("html", old).replace(".html", ".d")).mkdir()  # not a file: kept
    assert previous_report_time(tmp_path, NOW) == recent
    assert prune_reports(tmp_path, 30, NOW) == 3
    assert not any(p.exists() for p in removed_files)
    assert all(p.exists() for p in kept)
    assert prune_reports(tmp_path, 30, NOW) == 0
    assert prune_reports(tmp_path / "missing", 30, NOW) == 0
