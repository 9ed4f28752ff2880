"""The demo clears only directories it made, and only its own files in them."""

from __future__ import annotations

from pathlib import Path

import pytest

from reconciler.demo_directory import MARKER, DemoDirectoryError, prepare_directory
from tests.test_cli import run


def test_a_new_directory_is_created_owner_only_and_marked(tmp_path: Path) -> None:
    directory = tmp_path / "a" / "demo"
    prepare_directory(directory, cwd=tmp_path)
    assert (directory / MARKER).is_file()
    assert directory.stat().st_mode & 0o777 == 0o700


def test_an_empty_existing_directory_is_used(tmp_path: Path) -> None:
    directory = tmp_path / "demo"
    directory.mkdir()
    prepare_directory(directory, cwd=tmp_path)
    assert sorted(p.name for p in directory.iterdir()) == [MARKER]


def test_a_directory_with_someone_elses_file_is_refused_and_kept(tmp_path: Path) -> None:
    directory = tmp_path / "mydata"
    directory.mkdir()
    (directory / "thesis.tex").write_text("years of work")
    with pytest.raises(DemoDirectoryError) as caught:
        prepare_directory(directory, cwd=tmp_path)
    assert str(caught.value) == (
        f"demo: refusing to use {directory}: it exists, is not empty and was not made by the "
        f"demo ({MARKER}); pass --dir with a new directory (the demo only clears directories "
        "it made)"
    )
    assert (directory / "thesis.tex").read_text() == "years of work"


def test_a_file_is_refused(tmp_path: Path) -> None:
    target = tmp_path / "mydata"
    target.write_text("keep")
    with pytest.raises(DemoDirectoryError, match="it exists and is not a directory"):
        prepare_directory(target, cwd=tmp_path)
    assert target.read_text() == "keep"


def test_a_symlink_to_a_directory_is_refused(tmp_path: Path) -> None:
    real = tmp_path / "real"
    real.mkdir()
    (real / MARKER).write_text("")
    (tmp_path / "link").symlink_to(real)
    with pytest.raises(DemoDirectoryError, match="it exists and is not a directory"):
        prepare_directory(tmp_path / "link", cwd=tmp_path)


@pytest.mark.parametrize(
    ("name", "why"),
    [
        (".", "it is the current directory"),
        ("..", "it contains the current directory"),
        ("/", "it contains the current directory"),
    ],
)
def test_the_working_directory_and_above_are_refused_even_with_a_marker(
    tmp_path: Path, name: str, why: str
) -> None:
    cwd = tmp_path / "work"
    cwd.mkdir()
    (cwd / MARKER).write_text("")
    (cwd / "mine.txt").write_text("keep")
    with pytest.raises(DemoDirectoryError, match=why):
        prepare_directory(Path(name), cwd=cwd)
    assert (cwd / "mine.txt").exists()


def test_home_is_refused(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    home = tmp_path / "home"
    home.mkdir()
    monkeypatch.setenv("HOME", str(home))
    with pytest.raises(DemoDirectoryError, match="it is the home directory"):
        prepare_directory(Path("~"), cwd=tmp_path)


def test_a_demo_directory_is_cleared_of_the_demos_files_only(tmp_path: Path) -> None:
    directory = tmp_path / "demo"
    prepare_directory(directory, cwd=tmp_path)
    own = [
        directory / "reconciler.toml",
        directory / "sandbox.edgerc",
        directory / ".reconciler" / "state.db",
        directory / ".reconciler" / "state.db-wal",
        directory / "reports" / "reconciler-report-20240715T060000Z.html",
        directory / "reports" / "reconciler-report-20240715T060000Z-usage-01.svg",
    ]
    foreign = [
        directory / "notes.md",
        directory / "reports" / "my-annotations.txt",
        directory / ".reconciler" / "backup.db",
    ]
    for path in own + foreign:
        path.parent.mkdir(exist_ok=True)
        path.write_text("x")
    prepare_directory(directory, cwd=tmp_path)
    assert [p for p in own if p.exists()] == []
    assert all(p.read_text() == "x" for p in foreign)
    assert (directory / MARKER).is_file()


def test_demo_command_refuses_the_current_directory(tmp_path: Path) -> None:
    (tmp_path / "mine.txt").write_text("keep")
    result = run("demo", "--dir", ".", cwd=tmp_path)
    assert result.returncode == 1
    assert result.stdout == ""
    assert result.stderr == (
        "error: demo: refusing to use .: it is the current directory; pass --dir with a new "
        "directory (the demo only clears directories it made)\n"
    )
    assert [p.name for p in tmp_path.iterdir()] == ["mine.txt"]


def test_demo_command_refuses_a_users_directory(tmp_path: Path) -> None:
    (tmp_path / "mydata").mkdir()
    (tmp_path / "mydata" / "file").write_text("keep")
    result = run("demo", "--dir", "mydata", cwd=tmp_path)
    assert result.returncode == 1
    assert result.stderr.startswith("error: demo: refusing to use mydata: it exists, is not empty")
    assert (tmp_path / "mydata" / "file").read_text() == "keep"
