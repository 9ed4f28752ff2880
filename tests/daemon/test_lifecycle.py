"""An orderly daemon: a storm of SIGHUPs with good and bad configurations, a reload that would
drop every source, SIGTERM while the start-up migration waits, and database failures that give
one log line per job and a /readyz that says not ready."""

from __future__ import annotations

import asyncio
import logging
import signal
from collections.abc import AsyncIterator, Callable
from pathlib import Path

import pytest
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine

from reconciler.sandbox.scenario import named_scenario
from reconciler.sandbox.server import SandboxServer
from reconciler.store.db import MIGRATION_LOCK_ID, create_engine, current_revision, head_revision
from tests.daemon.inprocess import MakeDaemon, make_daemon
from tests.daemon.support import (
    DaemonProcess,
    NotifySocket,
    eventually,
    fastly_source,
    run_counts,
    write_config,
)

__all__ = ["make_daemon"]


@pytest.fixture
async def sandbox() -> AsyncIterator[SandboxServer]:
    async with SandboxServer(named_scenario("default"), host="127.0.0.1", port=0) as server:
        yield server


@pytest.fixture
async def processes(sandbox: SandboxServer) -> AsyncIterator[Callable[..., DaemonProcess]]:
    made: list[DaemonProcess] = []

    def make(config: Path, notify: NotifySocket | None = None) -> DaemonProcess:
        made.append(DaemonProcess(config, sandbox, notify=notify))
        return made[-1]

    yield make
    for daemon in made:
        await daemon.close()


async def succeeded(url: str, source: str) -> int:
    engine = create_engine(url)
    try:
        return (await run_counts(engine, source)).get("succeeded", 0)
    finally:
        await engine.dispose()


async def test_a_storm_of_reloads_good_and_bad_leaves_it_running_on_the_last_good_one(
    sandbox: SandboxServer,
    processes: Callable[..., DaemonProcess],
    tmp_path: Path,
) -> None:
    url = f"sqlite+aiosqlite:///{tmp_path / 'state' / 'state.db'}"
    path = tmp_path / "reconciler.toml"
    daemon = await processes(write_config(path, url, [fastly_source(sandbox)])).start()
    await daemon.wait_for_log("started", timeout_s=60)
    configs: list[Callable[[], object]] = [
        lambda: write_config(path, url, [fastly_source(sandbox, "fastly-b")]),
        lambda: path.write_text("[daemon\n"),
        lambda: write_config(path, url, [fastly_source(sandbox, pull_every="soon")]),
        lambda: path.write_bytes(b"\xff\xfe not text"),
        lambda: write_config(path, url, []),
        lambda: write_config(path, url, [fastly_source(sandbox, "fastly-c")]),
    ]
    for round_ in range(4):
        for write in configs:
            write()
            daemon.send_signal(signal.SIGHUP)
            await asyncio.sleep(0.01 * round_)  # some land mid-reload, some between
    await daemon.wait_for_log("configuration reloaded: 1 sources", timeout_s=60)
    # The last configuration written was good: the daemon ends up pulling its source.
    await eventually(lambda: succeeded(url, "fastly-c"), timeout_s=60)
    assert await daemon.stop(timeout_s=60) == 0
    log = daemon.log()
    assert "Traceback" not in log
    assert "reload failed" in log
    assert "the new configuration has no sources" in log
    assert "UnicodeDecodeError" in log  # not a configuration error, and handled all the same


async def test_a_reload_that_drops_every_source_is_refused_with_the_reason(
    sandbox: SandboxServer,
    processes: Callable[..., DaemonProcess],
    tmp_path: Path,
) -> None:
    url = f"sqlite+aiosqlite:///{tmp_path / 'state' / 'state.db'}"
    path = tmp_path / "reconciler.toml"
    daemon = await processes(write_config(path, url, [fastly_source(sandbox)])).start()
    await daemon.wait_for_log("started", timeout_s=60)
    await eventually(lambda: succeeded(url, "fastly"), timeout_s=60)
    write_config(path, url, [])
    mark = len(daemon.lines)
    daemon.send_signal(signal.SIGHUP)
    refused = await daemon.wait_for_log("reload failed", after=mark)
    assert (
        "the new configuration has no sources: it would stop every pull" in (daemon.lines[refused])
    )
    before = await succeeded(url, "fastly")
    await eventually(lambda: _more(url, before), timeout_s=60)  # still pulling (2 s slots)
    assert await daemon.stop() == 0


async def _more(url: str, than: int) -> bool:
    return await succeeded(url, "fastly") > than


@pytest.mark.postgres
async def test_sigterm_while_the_start_up_migration_waits_exits_cleanly_at_head(
    sandbox: SandboxServer,
    processes: Callable[..., DaemonProcess],
    postgres_url: str,
    tmp_path: Path,
) -> None:
    notify = NotifySocket(tmp_path / "notify")
    config = write_config(tmp_path / "reconciler.toml", postgres_url, [fastly_source(sandbox)])
    engine = create_engine(postgres_url)
    try:
        # Another instance's migration holds the lock: this one waits inside its migration.
        async with engine.connect() as holder:
            await holder.execute(text("SELECT pg_advisory_lock(:id)"), {"id": MIGRATION_LOCK_ID})
            daemon = await processes(config, notify).start()
            await notify.wait_for("STATUS", "migrating the state database", timeout_s=60)
            daemon.send_signal(signal.SIGTERM)
            await notify.wait_for("STOPPING", "1", timeout_s=60)
            await holder.execute(text("SELECT pg_advisory_unlock(:id)"), {"id": MIGRATION_LOCK_ID})
        assert await daemon.wait(timeout_s=120) == 0
        assert await current_revision(engine) == head_revision()
        assert (await run_counts(engine)) == {}  # it never started pulling
    finally:
        await engine.dispose()
        await notify.close()
    assert "stopped during start-up" in daemon.log()
    assert "Traceback" not in daemon.log()


async def test_database_failures_are_one_line_per_job_and_make_the_daemon_not_ready(
    engine: AsyncEngine, make_daemon: MakeDaemon, caplog: pytest.LogCaptureFixture
) -> None:
    daemon = make_daemon("broken:1", sources=["fastly", "fastly-b"])
    assert not any("database" in p for p in await daemon.readiness())
    async with engine.begin() as conn:
        await conn.execute(text("DROP TABLE job_leases"))  # every pull now fails on the database
    pull = daemon._tracked(daemon.pull_source)
    with caplog.at_level(logging.INFO, logger="reconciler.daemon.service"):
        await pull("fastly")
        assert not any("every pull" in p for p in await daemon.readiness())  # one of two
        await pull("fastly-b")
    failures = [r for r in caplog.records if r.levelno >= logging.ERROR]
    assert len(failures) == 2
    assert all(r.exc_info is None and "\n" not in r.getMessage() for r in failures)
    assert failures[0].getMessage().startswith("job pull_source failed: ")
    assert "job_leases" in failures[0].getMessage()
    problems = await daemon.readiness()
    assert any(p.startswith("every pull is failing on the database: ") for p in problems)
