"""Saved plans: anything but a plan saved by ``plan --out`` is refused with one line, and
``plan --out`` replaces a file atomically, owner-only."""

from __future__ import annotations

import json
import stat
from pathlib import Path

import pytest

from tests.test_cli import run

NOT_A_PLAN = "error: {path} is not a plan saved by 'reconciler plan --out': {why}\n"


@pytest.fixture
def state(tmp_path: Path) -> Path:
    assert run("init", cwd=tmp_path).returncode == 0
    return tmp_path


def _valid(serial: int = 0) -> dict[str, object]:
    return {"format_version": 1, "serial": serial, "drift": [], "findings": []}


@pytest.mark.parametrize(
    ("content", "why"),
    [
        ("[1, 2]", "it holds a JSON list, not a plan object"),
        ('"a plan"', "it holds a JSON str, not a plan object"),
        ("null", "it holds a JSON NoneType, not a plan object"),
        ("{", "Expecting property name enclosed in double quotes: line 1 column 2 (char 1)"),
        (json.dumps({**_valid(), "drift": {}}), "'drift' must be a list of plan items"),
        (json.dumps({**_valid(), "findings": None}), "'findings' must be a list of plan items"),
        (json.dumps({**_valid(), "drift": ["x"]}), "drift[0] is not a plan item"),
        (
            json.dumps({**_valid(), "drift": [{"fingerprint": "f"}]}),
            "drift[0] has no fingerprint and values_hash",
        ),
        (json.dumps({**_valid(), "serial": "3"}), "'serial' must be a whole number, not '3'"),
        (json.dumps({**_valid(), "serial": True}), "'serial' must be a whole number, not True"),
        (json.dumps({**_valid(), "format_version": 9}), "unsupported format_version 9"),
    ],
)
def test_a_file_that_is_not_a_saved_plan_is_refused_with_one_line(
    state: Path, content: str, why: str
) -> None:
    (state / "p.json").write_text(content)
    result = run("apply", "p.json", cwd=state)
    assert result.returncode == 1
    assert result.stdout == ""
    assert result.stderr == NOT_A_PLAN.format(path="p.json", why=why)


def test_a_plan_file_that_is_not_text_is_refused(state: Path) -> None:
    (state / "p.json").write_bytes(b"\xff\xfe\x00garbage")
    result = run("apply", "p.json", cwd=state)
    assert result.returncode == 1
    assert result.stderr == "error: cannot read the plan p.json: it is not UTF-8 text\n"


def test_plan_out_replaces_an_existing_file_owner_only(state: Path) -> None:
    target = state / "plan.json"
    target.write_text("someone's old, world-readable file")
    target.chmod(0o644)
    result = run("plan", "--no-refresh", "--out", "plan.json", cwd=state)
    assert result.returncode == 0, result.stderr
    assert stat.S_IMODE(target.stat().st_mode) == 0o600
    assert json.loads(target.read_text())["serial"] == 0
    assert sorted(p.name for p in state.iterdir()) == [
        ".reconciler",
        "plan.json",
        "reconciler.toml",
    ]


def test_plan_out_into_a_missing_directory_is_one_line(state: Path) -> None:
    result = run("plan", "--no-refresh", "--out", "nowhere/plan.json", cwd=state)
    assert result.returncode == 1
    assert result.stderr == (
        "error: cannot save the plan to nowhere/plan.json: No such file or directory "
        "(nothing was written)\n"
    )
