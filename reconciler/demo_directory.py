"""The demo's directory: made by the demo, marked as such, and the only thing it ever clears.

``reconciler demo --dir DIR`` starts from a fresh directory each time. It never removes a
directory it did not make: an existing directory is reused only when it is empty or holds the
demo's marker file, and then only the demo's own files are removed, by name. The working
directory, anything above it, the home directory and the filesystem root are refused outright.
"""

from __future__ import annotations

import os
import re
from pathlib import Path

from reconciler.errors import ReconcilerError

MARKER = ".reconciler-demo"
MARKER_TEXT = "This directory was made by 'reconciler demo'; the demo may clear it.\n"
# What the demo writes at the top of its directory; everything else is left alone.
OWN_FILES = ("reconciler.toml", "sandbox.edgerc")
OWN_DIRECTORIES = {
    # The state directory holds the SQLite database and its journal files.
    ".reconciler": re.compile(r"^state\.db(-wal|-shm|-journal)?$"),
    # Dated reports and their charts (see reconciler.reports.writer).
    "reports": re.compile(r"^reconciler-report-\d{8}T\d{6}Z[-.][\w.-]+$"),
}


class DemoDirectoryError(ReconcilerError, ValueError):
    """The demo was pointed at a directory it must not clear."""


def _protected(resolved: Path, cwd: Path) -> str | None:
    if resolved == cwd:
        return "it is the current directory"
    if resolved in cwd.parents:
        return "it contains the current directory"
    if resolved == Path.home().resolve():
        return "it is the home directory"
    if resolved == Path(resolved.anchor):
        return "it is the filesystem root"
    return None


def _refuse(directory: Path, why: str) -> DemoDirectoryError:
    return DemoDirectoryError(
        f"demo: refusing to use {directory}: {why}; pass --dir with a new directory "
        "(the demo only clears directories it made)"
    )


def check_directory(directory: Path, *, cwd: Path | None = None) -> None:
    """Raise :class:`DemoDirectoryError` unless the demo may (re)create ``directory``."""
    base = (cwd or Path.cwd()).resolve()
    resolved = (base / directory.expanduser()).resolve()
    why = _protected(resolved, base)
    if why is not None:
        raise _refuse(directory, why)
    if not os.path.lexists(resolved):
        return
    if (base / directory.expanduser()).is_symlink() or not resolved.is_dir():
        raise _refuse(directory, "it exists and is not a directory")
    if any(resolved.iterdir()) and not (resolved / MARKER).is_file():
        raise _refuse(directory, f"it exists, is not empty and was not made by the demo ({MARKER})")


def _clear_own_files(directory: Path) -> None:
    for name in (MARKER, *OWN_FILES):
        (directory / name).unlink(missing_ok=True)
    for name, pattern in OWN_DIRECTORIES.items():
        sub = directory / name
        if sub.is_symlink() or not sub.is_dir():
            continue
        for entry in sub.iterdir():
            if pattern.match(entry.name) and entry.is_file() and not entry.is_symlink():
                entry.unlink()
        if not any(sub.iterdir()):
            sub.rmdir()


def prepare_directory(directory: Path, *, cwd: Path | None = None) -> None:
    """Make ``directory`` ready for a fresh demo: checked, cleared of the demo's own files
    (anything else stays), created owner-only and marked as the demo's."""
    check_directory(directory, cwd=cwd)
    resolved = ((cwd or Path.cwd()).resolve() / directory.expanduser()).resolve()
    try:
        if resolved.is_dir():
            _clear_own_files(resolved)
        resolved.mkdir(parents=True, exist_ok=True, mode=0o700)
        resolved.chmod(0o700)
        (resolved / MARKER).write_text(MARKER_TEXT, encoding="utf-8")
    except OSError as exc:
        raise DemoDirectoryError(
            f"demo: cannot prepare {directory}: {exc.strerror or exc}"
        ) from exc
