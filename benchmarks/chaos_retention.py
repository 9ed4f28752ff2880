"""Retention: many pulls over simulated weeks, housekeeping's purge after each simulated day.

A source is pulled four times a simulated day for ``days`` days (the provider's data unchanged,
so every pull is a run row and nothing else), and once a simulated day housekeeping purges
what is older than ``keep_days``, as the daemon does with ``daemon.keep_runs_days``. Figures:
the run rows and the database file's size after each quarter of the pulls. The promise: the
rows stop growing once the window is full (at most a window's worth of runs remains), however
many pulls follow.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable
from datetime import UTC, date, datetime, timedelta
from pathlib import Path

from chaos_support import Results, connect, sandbox

from reconciler.providers.http import HttpClient
from reconciler.refresh import refresh_source
from reconciler.settings import settings_from_mapping
from reconciler.store.db import create_engine, upgrade
from reconciler.store.retention import purge_history

SECTION = "load"
TODAY = date(2024, 7, 10)
PULLS_PER_DAY = 4


async def run_retention(results: Results, work: Path, *, days: int, keep_days: int) -> None:
    db = work / "retention.db"
    async with sandbox({"fastly_services": 5, "fastly_usage_types": 4}, TODAY.isoformat()) as box:
        settings = settings_from_mapping(
            {
                "state": {"database_url": f"sqlite+aiosqlite:///{db}"},
                "sources": [{"name": "fastly", "provider": "fastly", "base_url": box.base_url}],
            }
        )
        engine = create_engine(f"sqlite+aiosqlite:///{db}", create=True)
        clock = datetime(2024, 7, 10, tzinfo=UTC)
        samples: list[tuple[int, int, int]] = []  # (pulls so far, run rows, file KiB)
        try:
            await upgrade(engine)
            async with HttpClient() as http:
                for pull in range(1, days * PULLS_PER_DAY + 1):
                    outcome = await refresh_source(
                        engine,
                        settings,
                        "fastly",
                        http,
                        today=TODAY,
                        clock=_frozen(clock),
                        environ={"FASTLY_API_TOKEN": box.fastly_token},
                    )
                    if outcome.error:
                        results.add(SECTION, "retention", outcome.error, False, "a pull failed")
                        return
                    clock += timedelta(hours=24 / PULLS_PER_DAY)
                    if pull % PULLS_PER_DAY == 0:
                        await purge_history(engine, before=clock - timedelta(days=keep_days))
                    if pull % (days * PULLS_PER_DAY // 4) == 0:
                        samples.append((pull, _runs(db), _kib(db)))
        finally:
            await engine.dispose()
    window = keep_days * PULLS_PER_DAY + PULLS_PER_DAY + 2  # a window, a day, the import's runs
    growth = ", ".join(f"{p} pulls: {r} runs {k} KiB" for p, r, k in samples)
    bounded = all(runs <= window for _, runs, _ in samples)
    results.add(
        SECTION,
        f"retention ({keep_days}-day window)",
        f"{days * PULLS_PER_DAY} pulls over {days} simulated days; {growth}",
        bounded,
        f"more than {window} run rows kept",
    )


def _frozen(at: datetime) -> Callable[[], datetime]:
    return lambda: at


def _kib(db: Path) -> int:
    """The database's size on disk, its write-ahead log included."""
    files = [db, Path(f"{db}-wal")]
    return sum(f.stat().st_size for f in files if f.exists()) // 1024


def _runs(db: Path) -> int:
    with contextlib.closing(connect(db)) as conn:
        return int(conn.execute("SELECT count(*) FROM pull_runs").fetchone()[0])
