"""Helpers for the end-to-end loop test: the daemon and the CLI as real processes, and probes
of the state the daemon writes."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import sys
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass
from datetime import date, datetime
from decimal import Decimal
from pathlib import Path
from typing import Any, TypeVar

import aiohttp
from sqlalchemy import select
from sqlalchemy.exc import OperationalError
from sqlalchemy.ext.asyncio import AsyncEngine

from reconciler.daemon.leases import leases_t
from reconciler.sandbox.server import SandboxServer
from reconciler.store.db import create_engine, reader
from reconciler.store.runs import runs_t

T = TypeVar("T")


async def eventually(
    probe: Callable[[], Awaitable[T | None]], what: str, *, timeout_s: float = 15
) -> T:
    """Poll ``probe`` until it returns something truthy; AssertionError naming ``what``
    after ``timeout_s``."""
    try:
        async with asyncio.timeout(timeout_s):
            while True:
                value = await probe()
                if value:
                    return value
                await asyncio.sleep(0.1)
    except TimeoutError:
        raise AssertionError(f"timed out waiting for {what}") from None


def clean_environment(extra: Mapping[str, str]) -> dict[str, str]:
    """This process's environment without reconciler, systemd or Slack settings, plus
    ``extra``: a child sees only the configuration the test gives it."""
    env = {
        key: value
        for key, value in os.environ.items()
        if not key.startswith(("RECONCILER_", "NOTIFY_", "WATCHDOG_", "JOURNAL_", "SLACK_"))
    }
    env.update(extra)
    return env


@dataclass(frozen=True)
class CliResult:
    code: int
    stdout: str
    stderr: str


async def run_cli(
    config: Path, *args: str, env: Mapping[str, str], timeout_s: float = 60
) -> CliResult:
    """``python -m reconciler --config CONFIG ARGS...`` without blocking the event loop (the
    sandbox and the Slack stand-in serve from this loop)."""
    process = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "reconciler",
        "--config",
        str(config),
        *args,
        env=dict(env),
        stdin=asyncio.subprocess.DEVNULL,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    try:
        async with asyncio.timeout(timeout_s):
            out, err = await process.communicate()
    finally:
        if process.returncode is None:
            process.kill()
            await process.wait()
    assert process.returncode is not None
    return CliResult(process.returncode, out.decode(), err.decode())


class DaemonProcess:
    """``python -m reconciler --config CONFIG run --sandbox-clock URL``, logging to a file."""

    def __init__(self, config: Path, clock_url: str, log: Path, env: Mapping[str, str]) -> None:
        self.config = config
        self.clock_url = clock_url
        self.log_path = log
        self.env = dict(env)
        self._process: asyncio.subprocess.Process | None = None

    async def start(self) -> DaemonProcess:
        with self.log_path.open("wb") as log:
            self._process = await asyncio.create_subprocess_exec(
                sys.executable,
                "-m",
                "reconciler",
                "--config",
                str(self.config),
                "run",
                "--sandbox-clock",
                self.clock_url,
                env=self.env,
                stdin=asyncio.subprocess.DEVNULL,
                stdout=log,
                stderr=log,
            )
        return self

    @property
    def running(self) -> bool:
        return self._process is not None and self._process.returncode is None

    def log(self) -> str:
        try:
            return self.log_path.read_text(errors="replace")
        except FileNotFoundError:
            return ""

    async def stop(self, timeout_s: float = 30) -> int:
        """SIGTERM, then the exit status."""
        assert self._process is not None, "not started"
        self._process.send_signal(signal.SIGTERM)
        async with asyncio.timeout(timeout_s):
            return await self._process.wait()

    async def close(self) -> None:
        """Kill it if it still runs: a failed test must not leave a daemon behind."""
        if self._process is not None and self._process.returncode is None:
            self._process.kill()
            await self._process.wait()


class StateProbe:
    """Read-only queries on the daemon's SQLite state, opened once the daemon created it."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self._engine: AsyncEngine | None = None

    @property
    def engine(self) -> AsyncEngine:
        if self._engine is None:
            self._engine = create_engine(f"sqlite+aiosqlite:///{self.path}")
        return self._engine

    async def close(self) -> None:
        if self._engine is not None:
            await self._engine.dispose()

    async def pulled_since(self, since: datetime) -> dict[str, str]:
        """Per source, the status of its newest run whose slot was claimed at or after
        ``since`` (empty while the daemon has not created the state yet).

        The daemon claims a slot, then asks the sandbox for today, then pulls: a run whose
        claim is not older than ``since`` saw the sandbox's clock as it was at ``since`` or
        later.
        """
        if not self.path.exists():
            return {}
        query = (
            select(runs_t.c.source, runs_t.c.status, runs_t.c.error)
            .select_from(runs_t.join(leases_t, runs_t.c.slot == leases_t.c.slot))
            .where(leases_t.c.acquired_at >= since)
            .order_by(runs_t.c.id)
        )
        try:
            async with reader(self.engine).connect() as conn:
                rows = (await conn.execute(query)).all()
        except OperationalError as exc:
            if "no such table" in str(exc):  # migrations still running
                return {}
            raise
        newest: dict[str, str] = {}
        for row in rows:
            if row.status == "failed":
                raise AssertionError(f"pull of {row.source} failed: {row.error}")
            newest[row.source] = row.status
        return newest

    async def wait_for_pulls(
        self, sources: list[str], since: datetime, daemon: DaemonProcess, *, timeout_s: float = 30
    ) -> None:
        """Until every source has a successful pull claimed at or after ``since``."""
        try:
            async with asyncio.timeout(timeout_s):
                while True:
                    assert daemon.running, f"the daemon exited; its log:\n{daemon.log()}"
                    done = await self.pulled_since(since)
                    if all(done.get(source) == "succeeded" for source in sources):
                        return
                    await asyncio.sleep(0.1)
        except TimeoutError:
            raise AssertionError(
                f"no successful pull of {sources} since {since}; daemon log:\n{daemon.log()}"
            ) from None


async def sandbox_post(sandbox: SandboxServer, path: str, body: Any) -> Any:
    """A control API request, as a user would make it with curl."""
    async with (
        asyncio.timeout(10),
        aiohttp.ClientSession() as session,
        session.post(f"{sandbox.base_url}{path}", json=body) as response,
    ):
        text = await response.text()
        assert response.status < 300, f"POST {path}: {response.status} {text}"
    return json.loads(text) if text else None


async def month_totals(
    sandbox: SandboxServer, usage_type: str, first: str, last: str
) -> dict[str, Decimal]:
    """Fastly account-level month totals of ``usage_type`` (at most three months at once)."""
    url = f"{sandbox.base_url}/billing/v3/usage-metrics?start_month={first}&end_month={last}"
    async with (
        asyncio.timeout(10),
        aiohttp.ClientSession() as session,
        session.get(url, headers={"Fastly-Key": sandbox.fastly_token}) as response,
    ):
        assert response.status == 200, await response.text()
        body = json.loads(await response.text(), parse_float=Decimal)
    return {
        r["month"]: Decimal(str(r["quantity"]))
        for r in body["data"]
        if r["usage_type"] == usage_type
    }


async def ordinary_totals(
    sandbox: SandboxServer, usage_type: str, ranges: list[tuple[str, str]], as_of: date
) -> dict[str, Decimal]:
    """Month totals of ``usage_type`` over ``ranges`` as seen on ``as_of``, read before any
    event is added; the sandbox's clock is put back afterwards."""
    today = sandbox.state.today
    sandbox.state.set_today(as_of)
    try:
        totals: dict[str, Decimal] = {}
        for first, last in ranges:
            totals.update(await month_totals(sandbox, usage_type, first, last))
    finally:
        sandbox.state.set_today(today)
    return totals
