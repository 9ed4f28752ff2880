"""``reconciler run`` as a real process against the provider sandbox: what systemd hears,
graceful stop in the middle of a slow pull, SIGHUP reloads, /healthz /readyz /metrics and
``reconciler check``."""

from __future__ import annotations

import asyncio
import dataclasses
import os
import signal
import sys
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping
from functools import partial
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from prometheus_client.parser import text_string_to_metric_families
from sqlalchemy import func, select, text
from sqlalchemy.ext.asyncio import AsyncEngine

from reconciler.daemon.leases import leases_t
from reconciler.sandbox.scenario import named_scenario
from reconciler.sandbox.server import SandboxServer
from reconciler.store.db import create_engine, reader, sqlite_path
from reconciler.store.ingest import lines_t, versions_t
from reconciler.store.items import findings_table
from reconciler.store.runs import runs_t, staging_t
from reconciler.store.tables import ChangeRow
from tests.daemon.support import (
    DaemonProcess,
    NotifySocket,
    akamai_source,
    eventually,
    fastly_source,
    free_port,
    run_counts,
    write_config,
)

changes_t = ChangeRow.__table__  # type: ignore[attr-defined]
Spawn = Callable[..., Awaitable[DaemonProcess]]


@pytest.fixture
async def sandbox() -> AsyncIterator[SandboxServer]:
    async with SandboxServer(named_scenario("default"), host="127.0.0.1", port=0) as server:
        yield server


@pytest.fixture
async def notify(tmp_path: Path) -> AsyncIterator[NotifySocket]:
    listener = NotifySocket(tmp_path / "notify")
    yield listener
    await listener.close()


@pytest.fixture
async def spawn(sandbox: SandboxServer) -> AsyncIterator[Spawn]:
    started: list[DaemonProcess] = []

    async def start(
        config: Path, *, notify: NotifySocket | None = None, env: Mapping[str, str] | None = None
    ) -> DaemonProcess:
        daemon = DaemonProcess(config, sandbox, notify=notify, env=env)
        started.append(daemon)
        return await daemon.start()

    yield start
    for daemon in started:
        await daemon.close()


@pytest.fixture
def db_url(tmp_path: Path) -> str:
    return f"sqlite+aiosqlite:///{tmp_path / 'state' / 'state.db'}"


@pytest.fixture
async def state(db_url: str, tmp_path: Path) -> AsyncIterator[Callable[[], AsyncEngine]]:
    """The daemon's database, opened (read-only use) once the daemon has created it."""
    engines: list[AsyncEngine] = []

    def open_state() -> AsyncEngine:
        if not engines:
            engines.append(create_engine(db_url))
        return engines[0]

    yield open_state
    for engine in engines:
        await engine.dispose()


async def succeeded_runs(engine: AsyncEngine, source: str, at_least: int) -> int | None:
    count = (await run_counts(engine, source)).get("succeeded", 0)
    return count if count >= at_least else None


# -- systemd ------------------------------------------------------------------------------------


async def test_systemd_hears_ready_watchdog_status_reloading_and_stopping(
    sandbox: SandboxServer, notify: NotifySocket, spawn: Spawn, db_url: str, tmp_path: Path
) -> None:
    config = write_config(tmp_path / "reconciler.toml", db_url, [fastly_source(sandbox)])
    daemon = await spawn(
        config, notify=notify, env={"WATCHDOG_USEC": "300000", "JOURNAL_STREAM": "8:12345"}
    )
    ready = await notify.wait_for("READY", "1")
    assert notify.messages[ready]["STATUS"] == "running; sources: fastly"
    assert notify.messages[0] == {"STATUS": "migrating the state database"}
    status = await notify.wait_for("STATUS", "last run: fastly: ", after=ready)
    assert "32 lines read" in notify.messages[status]["STATUS"]

    # Pings keep coming from the loop at half of WATCHDOG_USEC while the daemon runs.
    ping = status
    for _ in range(3):
        ping = await notify.wait_for("WATCHDOG", "1", after=ping + 1, timeout_s=5)

    daemon.send_signal(signal.SIGHUP)
    reloading = await notify.wait_for("RELOADING", "1", after=ping)
    assert int(notify.messages[reloading]["MONOTONIC_USEC"]) > 0
    again = await notify.wait_for("READY", "1", after=reloading)
    assert notify.messages[again]["STATUS"] == "reloaded; sources: fastly"

    daemon.send_signal(signal.SIGTERM)
    stopping = await notify.wait_for("STOPPING", "1", after=again)
    assert await daemon.wait() == 0
    # After STOPPING=1: watchdog pings, and at most the outcome of a pull that was already in
    # flight, marked as such; no READY, no run started after the stop.
    after_stop = notify.messages[stopping + 1 :]
    assert {key for message in after_stop for key in message} <= {"WATCHDOG", "STATUS"}
    assert all(m["STATUS"].startswith("stopping; last run: ") for m in after_stop if "STATUS" in m)
    # Under journald every line carries a priority prefix.
    assert daemon.lines and all(line.startswith(("<6>", "<4>", "<3>")) for line in daemon.lines)
    assert any(line.startswith("<6>reconciler daemon ") for line in daemon.lines)
    assert daemon.lines[-1].startswith("<6>reconciler daemon ") and "stopped" in daemon.lines[-1]


async def test_without_notify_socket_it_runs_the_same_and_sigint_stops_it(
    sandbox: SandboxServer, spawn: Spawn, db_url: str, tmp_path: Path, state: Any
) -> None:
    config = write_config(tmp_path / "reconciler.toml", db_url, [fastly_source(sandbox)])
    daemon = await spawn(config)
    await daemon.wait_for_log("fastly: 32 lines read")
    daemon.send_signal(signal.SIGINT)
    assert await daemon.wait() == 0
    await daemon.wait_for_log("stopping: finishing in-flight work")
    assert (await run_counts(state(), "fastly")).keys() == {"succeeded"}


# -- graceful stop ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("stop_timeout_s", "latency_ms", "expected"),
    [(1, 3000, "rolled back"), (20, 1500, "finished")],
)
async def test_sigterm_during_a_slow_pull_exits_0_and_leaves_a_consistent_database(
    sandbox: SandboxServer,
    spawn: Spawn,
    db_url: str,
    tmp_path: Path,
    state: Callable[[], AsyncEngine],
    stop_timeout_s: float,
    latency_ms: int,
    expected: str,
) -> None:
    (slow,) = sandbox.state.add_faults(
        [{"kind": "latency", "latency_ms": latency_ms, "endpoint": "fastly.usage_metrics"}]
    )
    config = write_config(
        tmp_path / "reconciler.toml",
        db_url,
        [fastly_source(sandbox, pull_every="1h")],
        stop_timeout_s=stop_timeout_s,
    )
    daemon = await spawn(config)
    await daemon.wait_for_log("started")

    async def in_flight() -> bool:
        running = (await run_counts(state(), "fastly")).get("running", 0)
        return running == 1 and slow.fired >= 1

    await eventually(in_flight, timeout_s=20, every_s=0.05)
    daemon.send_signal(signal.SIGTERM)
    # The stop takes up to stop_timeout_s and the final alert delivery: a generous bound,
    # so that a loaded machine is not taken for a daemon that does not stop.
    assert await daemon.wait(timeout_s=120) == 0, daemon.log()
    await daemon.wait_for_log("stopping: finishing in-flight work")
    assert "stopped" in daemon.lines[-1]

    engine = state()
    async with reader(engine).connect() as conn:
        assert (await conn.execute(text("PRAGMA integrity_check"))).scalar_one() == "ok"
        runs = (await conn.execute(select(runs_t))).mappings().all()
        lines = (await conn.execute(select(func.count()).select_from(lines_t))).scalar_one()
        versions = (await conn.execute(select(versions_t.c.run_id))).scalars().all()
        changes = (await conn.execute(select(func.count()).select_from(changes_t))).scalar_one()
        findings = (
            await conn.execute(select(func.count()).select_from(findings_table))
        ).scalar_one()
        staged = (await conn.execute(select(func.count()).select_from(staging_t))).scalar_one()
        lease = (await conn.execute(select(leases_t))).mappings().one()
    assert len(runs) == 1
    (run,) = runs
    assert staged == 0
    if expected == "rolled back":
        assert (run["status"], run["error"], run["finished_at"] is not None) == (
            "failed",
            "cancelled",
            True,
        )
        assert (lines, versions, changes, findings) == (0, [], 0, 0)
        # The slot is handed back for a retry by whichever instance comes next.
        assert (lease["outcome"], lease["completed_at"]) == ("failed", None)
        await daemon.wait_for_log("stop timeout (1.0s) reached: cancelling 1 in-flight jobs")
        await daemon.wait_for_log("job pull_source cancelled at stop")
    else:
        assert run["status"] == "succeeded" and run["error"] is None, (run, daemon.log())
        assert lines == run["lines_read"] == 32
        assert versions == [run["id"]] * run["versions_added"] and run["versions_added"] == 32
        assert lease["outcome"] == "succeeded" and lease["completed_at"] is not None
        assert any("fastly: 32 lines read" in line for line in daemon.lines)
        assert "stop timeout" not in daemon.log()
    assert " ERROR " not in daemon.log()  # no traceback for a pull stopped on purpose


# -- reload -------------------------------------------------------------------------------------


async def test_sighup_with_a_new_source_pulls_it(
    sandbox: SandboxServer,
    notify: NotifySocket,
    spawn: Spawn,
    db_url: str,
    tmp_path: Path,
    state: Callable[[], AsyncEngine],
) -> None:
    path = tmp_path / "reconciler.toml"
    daemon = await spawn(write_config(path, db_url, [fastly_source(sandbox)]), notify=notify)
    await daemon.wait_for_log("started")
    await eventually(lambda: succeeded_runs(state(), "fastly", 1), timeout_s=20)
    assert await run_counts(state(), "akamai") == {}

    edgerc = tmp_path / "sandbox.edgerc"
    write_config(path, db_url, [fastly_source(sandbox), akamai_source(sandbox, edgerc)])
    mark = len(daemon.lines)
    daemon.send_signal(signal.SIGHUP)
    await daemon.wait_for_log("configuration reloaded: 2 sources", after=mark)
    ready = await notify.wait_for("READY", "1", after=1)
    assert notify.messages[ready]["STATUS"] == "running; sources: fastly"
    reloaded = await notify.wait_for("READY", "1", after=ready + 1)
    assert notify.messages[reloaded]["STATUS"] == "reloaded; sources: fastly, akamai"
    await eventually(lambda: succeeded_runs(state(), "akamai", 1), timeout_s=20)
    await daemon.wait_for_log("akamai: 40 lines read", after=mark)
    # The old source keeps its schedule.
    before = (await run_counts(state(), "fastly"))["succeeded"]
    await eventually(lambda: succeeded_runs(state(), "fastly", before + 1), timeout_s=20)
    assert await daemon.stop() == 0


async def test_sighup_with_a_broken_config_keeps_the_old_one_running(
    sandbox: SandboxServer,
    notify: NotifySocket,
    spawn: Spawn,
    db_url: str,
    tmp_path: Path,
    state: Callable[[], AsyncEngine],
) -> None:
    path = tmp_path / "reconciler.toml"
    good = [fastly_source(sandbox, pull_every="1s")]
    daemon = await spawn(write_config(path, db_url, good), notify=notify)
    await daemon.wait_for_log("started")
    await eventually(lambda: succeeded_runs(state(), "fastly", 1), timeout_s=20)
    ready = await notify.wait_for("READY", "1")

    def toml_syntax() -> None:
        path.write_text("[daemon\nlisten = ")

    def invalid_value() -> None:
        write_config(path, db_url, [fastly_source(sandbox, pull_every="soon")])

    for breaks, reason in ((toml_syntax, "reconciler.toml"), (invalid_value, "pull_every")):
        breaks()
        mark = len(daemon.lines)
        daemon.send_signal(signal.SIGHUP)
        failed = await daemon.wait_for_log("reload failed", after=mark)
        line = daemon.lines[failed]
        assert "still running on the previous configuration" in line and reason in line, line
        ready = await notify.wait_for("READY", "1", after=ready + 1)
        assert notify.messages[ready]["STATUS"].startswith("reload failed")

        # Still pulling on the old schedule: two more slots at least.
        more = (await run_counts(state(), "fastly"))["succeeded"] + 2
        await eventually(partial(succeeded_runs, state(), "fastly", more), timeout_s=20)
    assert await daemon.stop() == 0
    assert " ERROR " not in daemon.log().replace(" ERROR reload failed", "")


# -- health, readiness, metrics, check ----------------------------------------------------------


async def check(config: Path) -> tuple[int, str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("RECONCILER_")}
    process = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "reconciler",
        "--config",
        str(config),
        "check",
        env=env,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    async with asyncio.timeout(30):
        out, err = await process.communicate()
    assert process.returncode is not None
    return process.returncode, out.decode(), err.decode()


Samples = dict[tuple[str, frozenset[tuple[str, str]]], float]


def samples(exposition: str) -> Samples:
    return {
        (sample.name, frozenset(sample.labels.items())): sample.value
        for family in text_string_to_metric_families(exposition)
        for sample in family.samples
    }


def value(found: Samples, name: str, **labels: str) -> float:
    return found.get((name, frozenset(labels.items())), 0.0)


def remove_database(url: str) -> None:
    path = sqlite_path(url)
    assert path is not None
    path.unlink()


async def test_health_readiness_metrics_and_check(
    sandbox: SandboxServer,
    spawn: Spawn,
    db_url: str,
    tmp_path: Path,
    state: Callable[[], AsyncEngine],
) -> None:
    port = free_port()
    base = f"http://127.0.0.1:{port}"
    config = write_config(
        tmp_path / "reconciler.toml",
        db_url,
        [fastly_source(sandbox, max_age="3s")],
        listen=f"127.0.0.1:{port}",
    )
    daemon = await spawn(config)
    await daemon.wait_for_log("started")
    await eventually(lambda: succeeded_runs(state(), "fastly", 1), timeout_s=20)

    async with aiohttp.ClientSession() as http:

        async def get(path: str) -> tuple[int, str, Any]:
            async with asyncio.timeout(10), http.get(base + path) as response:
                body = await response.text()
                kind = response.headers["Content-Type"]
                return response.status, kind, body

        status, _, body = await get("/healthz")
        assert (status, body) == (200, '{"status": "ok"}')
        status, kind, body = await get("/readyz")
        assert (status, kind, body) == (
            200,
            "application/json; charset=utf-8",
            '{"status": "ready", "problems": []}',
        )
        assert await check(config) == (0, f"ready ({base}/readyz)\n", "")

        status, kind, body = await get("/metrics")
        assert status == 200 and kind.startswith("text/plain; version=")
        found = samples(body)
        ok = value(found, "reconciler_pull_runs_total", source="fastly", outcome="succeeded")
        assert ok >= 1
        assert value(found, "reconciler_lines_ingested_total", source="fastly") == 32 * ok
        assert value(found, "reconciler_provider_api_calls_total", source="fastly") >= 3 * ok
        assert value(found, "reconciler_pull_duration_seconds_count", source="fastly") == ok
        assert ("reconciler_alert_outbox_depth", frozenset()) in found
        assert value(found, "reconciler_last_successful_pull_timestamp_seconds", source="fastly")
        assert "reconciler_provider_errors_total" not in {name for name, _ in found}
        # Bounded labels only: usage by product, usage type, unit and month status, never a
        # line's service, account or month.
        labels = {key for _, pairs in found for key, _ in pairs}
        assert labels <= {"source", "outcome", "kind", "severity", "le", "reason"} | {
            "product",
            "usage_type",
            "unit",
            "month_status",
            "expectation",
        }
        assert not labels & {"service", "account", "month", "region"}
        held = ("reconciler_alert_messages_held", frozenset({("reason", "refused")}))
        assert found[held] == 0

        # The provider starts refusing the token: after max_age without success, not ready.
        sandbox.state.credentials = dataclasses.replace(
            sandbox.state.credentials, fastly_token="rotated-elsewhere"
        )

        async def not_ready() -> Any:
            status, _, body = await get("/readyz")
            return body if status == 503 else None

        body = await eventually(not_ready, timeout_s=20)
        assert '"status": "not ready"' in body
        assert "source 'fastly': last successful pull" in body and "(allowed 0:00:03)" in body
        code, out, err = await check(config)
        assert (code, out) == (1, "")
        assert err.startswith("not ready: source 'fastly': last successful pull ")
        await daemon.wait_for_log("401")
        found = samples((await get("/metrics"))[2])
        failed = value(found, "reconciler_pull_runs_total", source="fastly", outcome="failed")
        assert failed >= 1
        assert value(found, "reconciler_provider_errors_total", source="fastly") == failed
        assert not any("rotated-elsewhere" in line for line in daemon.lines)

        # The database goes away.
        remove_database(db_url)

        async def db_gone() -> Any:
            status, _, body = await get("/readyz")
            return body if status == 503 and "database" in body else None

        body = await eventually(db_gone, timeout_s=20)
        assert "database unreachable" in body
        assert (await get("/healthz"))[0] == 200  # alive, just not ready

    assert await daemon.stop() == 0
    code, out, err = await check(config)
    assert (code, out) == (1, "")
    assert err.startswith(f"not ready: no daemon answering at {base}/readyz (")


async def test_check_without_a_health_endpoint(db_url: str, tmp_path: Path) -> None:
    config = write_config(tmp_path / "reconciler.toml", db_url, [], listen="")
    code, out, err = await check(config)
    assert (code, out) == (1, "")
    assert "daemon.listen is off" in err
