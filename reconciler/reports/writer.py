"""Writing reports: dated file names, owner-only atomic files, the daemon's set, retention.

A dated report is named ``reconciler-report-<YYYYMMDDTHHMMSSZ><suffix>``; the Markdown
report's charts are ``<stem>-<chart>.svg`` beside it. Files are written to a temporary file
in the same directory (mode 0600) and renamed into place, so a reader never sees half a
report; a directory created for reports is mode 0700.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import re
import time as clock
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from sqlalchemy.ext.asyncio import AsyncEngine

from reconciler.errors import StateError
from reconciler.reports.data import ReportRequest, gather_report
from reconciler.reports.figures import build_figures
from reconciler.reports.focus import focus_rows, render_focus_csv
from reconciler.reports.html import render_html
from reconciler.reports.json_report import render_json
from reconciler.reports.markdown import render_markdown
from reconciler.settings import ReportFormat, Settings

log = logging.getLogger(__name__)

PREFIX = "reconciler-report-"
STAMP_FORMAT = "%Y%m%dT%H%M%SZ"
SUFFIXES: dict[str, str] = {
    "html": ".html",
    "md": ".md",
    "json": ".json",
    "focus-csv": ".focus.csv",
}
_DATED = re.compile(r"^reconciler-report-(\d{8}T\d{6}Z)[-.]")


def dated_name(fmt: ReportFormat, now: datetime) -> str:
    return f"{PREFIX}{now.astimezone(UTC).strftime(STAMP_FORMAT)}{SUFFIXES[fmt]}"


def stamp_of(name: str) -> datetime | None:
    """The time in a dated report file name, or None for any other name."""
    match = _DATED.match(name)
    if match is None:
        return None
    try:
        return datetime.strptime(match.group(1), STAMP_FORMAT).replace(tzinfo=UTC)
    except ValueError:
        return None


def ensure_directory(directory: Path) -> None:
    """Create ``directory`` and missing parents owner-only (0700); existing ones are kept."""
    missing = []
    for candidate in (directory, *directory.parents):
        if candidate.is_dir():
            break
        missing.append(candidate)
    for path in reversed(missing):
        try:
            path.mkdir(mode=0o700)
        except FileExistsError:
            if not path.is_dir():
                raise StateError(f"cannot create report directory {path}: it is a file") from None
            continue
        except OSError as exc:
            raise StateError(f"cannot create report directory {path}: {exc.strerror}") from exc
        path.chmod(0o700)  # mkdir's mode is filtered by the umask


def write_private(path: Path, content: str) -> None:
    """Write ``content`` to ``path`` atomically as an owner-only (0600) file."""
    ensure_directory(path.parent)
    temporary = path.with_name(f".{path.name}.{os.getpid()}.{clock.monotonic_ns()}.tmp")
    try:
        fd = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "w", encoding="utf-8", newline="") as handle:
            os.fchmod(handle.fileno(), 0o600)
            handle.write(content)
            handle.flush()
            os.fsync(handle.fileno())
        temporary.replace(path)
    except OSError as exc:
        with contextlib.suppress(OSError):
            temporary.unlink()
        raise StateError(f"cannot write report {path}: {exc.strerror}") from exc


@dataclass(frozen=True, slots=True)
class ReportOutput:
    """What one rendering produced: the report file and any chart files beside it."""

    path: Path
    extra: tuple[Path, ...] = ()


async def write_report(
    engine: AsyncEngine,
    settings: Settings,
    request: ReportRequest,
    now: datetime,
    formats: Sequence[ReportFormat],
    path_for: dict[ReportFormat, Path],
) -> list[ReportOutput]:
    """Gather once, render each format and write it to ``path_for[format]``.

    Rendering and writing run in a worker thread: a large report's templates and charts, or
    an fsync, must not stall the daemon's event loop (and with it the watchdog).
    """
    outputs: list[ReportOutput] = []
    data = None
    figures = None
    for fmt in formats:
        path = path_for[fmt]
        if fmt == "focus-csv":
            rows = await focus_rows(
                engine, request.first_month, request.last_month, request.sources, settings
            )
            await asyncio.to_thread(_render_to, path, render_focus_csv, rows)
            outputs.append(ReportOutput(path))
            continue
        if data is None:
            data = await gather_report(engine, settings, request, now)
            figures = await asyncio.to_thread(build_figures, data)
        if fmt == "html":
            await asyncio.to_thread(_render_to, path, render_html, data, figures)
            outputs.append(ReportOutput(path))
        elif fmt == "json":
            await asyncio.to_thread(_render_to, path, render_json, data)
            outputs.append(ReportOutput(path))
        else:
            prefix = path.name.removesuffix(".md")
            markdown = await asyncio.to_thread(render_markdown, data, prefix, figures)
            extra = []
            for name, svg in markdown.charts.items():
                await asyncio.to_thread(write_private, path.parent / name, svg)
                extra.append(path.parent / name)
            await asyncio.to_thread(write_private, path, markdown.text)
            outputs.append(ReportOutput(path, tuple(extra)))
    return outputs


def _render_to(path: Path, render: Callable[..., str], *args: Any) -> None:
    write_private(path, render(*args))


def previous_report_time(directory: Path, before: datetime) -> datetime | None:
    """The time of the newest dated report in ``directory`` older than ``before``."""
    try:
        names = [entry.name for entry in os.scandir(directory)]
    except FileNotFoundError:
        return None
    stamps = [s for s in (stamp_of(name) for name in names) if s is not None and s < before]
    return max(stamps, default=None)


async def write_report_set(
    engine: AsyncEngine, settings: Settings, now: datetime, *, as_of: datetime | None = None
) -> list[Path]:
    """The daemon's scheduled reports: every configured format of the last ``reports.months``
    months, dated ``now``, in the reports directory. Returns the report files (not charts).

    ``as_of`` (default ``now``) is the moment the report describes: its months and month-end
    projections. File names, retention and "since the last report" stay on ``now``.
    """
    directory = settings.reports_directory
    described = as_of or now
    request = ReportRequest.last_months(
        settings.reports.months, described, since=previous_report_time(directory, now)
    )
    formats = list(dict.fromkeys(settings.reports.formats))
    paths = {fmt: directory / dated_name(fmt, now) for fmt in formats}
    started = clock.monotonic()
    outputs = await write_report(engine, settings, request, described, formats, paths)
    log.info(
        "wrote %d report file(s) to %s in %.2fs",
        sum(1 + len(o.extra) for o in outputs),
        directory,
        clock.monotonic() - started,
    )
    return [o.path for o in outputs]


def prune_reports(directory: Path, keep_days: int, now: datetime) -> int:
    """Delete dated report files (and their charts) older than ``keep_days``; returns how many.

    Only files named like dated reports are touched; the age comes from the name, not mtime.
    """
    cutoff = now - timedelta(days=keep_days)
    removed = 0
    try:
        entries = list(os.scandir(directory))
    except FileNotFoundError:
        return 0
    for entry in entries:
        stamp = stamp_of(entry.name)
        if stamp is None or stamp >= cutoff or not entry.is_file(follow_symlinks=False):
            continue
        try:
            Path(entry.path).unlink()
        except FileNotFoundError:
            continue
        except OSError as exc:
            log.warning("cannot remove old report %s: %s", entry.path, exc.strerror)
            continue
        removed += 1
    if removed:
        log.info(
            "removed %d report file(s) older than %d days from %s", removed, keep_days, directory
        )
    return removed
