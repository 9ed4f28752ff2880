"""The daemon as a real process for tests: its config, its notify socket, its log lines."""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import socket
import sys
from collections.abc import Awaitable, Callable, Mapping
from pathlib import Path
from typing import Any, TypeVar

from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncEngine

from reconciler.cli.setup_cmds import to_toml
from reconciler.sandbox.server import SandboxServer
from reconciler.store.db import reader
from reconciler.store.runs import runs_t

T = TypeVar("T")
# How long a daemon that did not stop is given to write its stacks after SIGABRT.
DUMP_WAIT_S = 10

FAST_DAEMON: dict[str, Any] = {
    "jitter_s": 0,
    "first_pull_delay_s": 0,
    "alert_every_s": 1,
    "lease_ttl_s": 5,
    "stop_timeout_s": 10,
}


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def fastly_source(sandbox: SandboxServer, name: str = "fastly", **extra: Any) -> dict[str, Any]:
    return {
        "name": name,
        "provider": "fastly",
        "base_url": sandbox.base_url,
        "max_retries": 0,
        "lookback_months": 2,
        "pull_every": "2s",
        **extra,
    }


def akamai_source(
    sandbox: SandboxServer, edgerc: Path, name: str = "akamai", **extra: Any
) -> dict[str, Any]:
    if not edgerc.exists():
        edgerc.write_text(sandbox.edgerc_text())
        edgerc.chmod(0o600)
    return {
        "name": name,
        "provider": "akamai",
        "base_url": sandbox.base_url,
        "edgerc": str(edgerc),
        "contracts": sandbox.contracts,
        "max_retries": 0,
        "lookback_months": 2,
        "pull_every": "2s",
        **extra,
    }


def write_config(
    path: Path,
    database_url: str,
    sources: list[dict[str, Any]],
    *,
    listen: str = "",
    **daemon: Any,
) -> Path:
    data = {
        "state": {"database_url": database_url, "directory": str(path.parent / "state")},
        "daemon": {**FAST_DAEMON, "listen": listen, **daemon},
        "sources": sources,
    }
    path.write_text(to_toml(data))
    return path


async def eventually(
    probe: Callable[[], Awaitable[T | None]], *, timeout_s: float, every_s: float = 0.1
) -> T:
    """Poll ``probe`` until it returns something truthy; its value. TimeoutError otherwise."""
    async with asyncio.timeout(timeout_s):
        while True:
            value = await probe()
            if value:
                return value
            await asyncio.sleep(every_s)


class NotifySocket:
    """A bound AF_UNIX datagram socket standing in for systemd's NOTIFY_SOCKET."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.messages: list[dict[str, str]] = []
        self._sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        self._sock.bind(str(path))
        self._sock.setblocking(False)
        self._arrived = asyncio.Condition()
        self._reader = asyncio.create_task(self._read())

    async def _read(self) -> None:
        loop = asyncio.get_running_loop()
        while True:
            data = await loop.sock_recv(self._sock, 65536)
            fields = dict(line.split("=", 1) for line in data.decode().split("\n") if line)
            async with self._arrived:
                self.messages.append(fields)
                self._arrived.notify_all()

    def keys(self) -> list[str]:
        """The first field name of each message, in order (READY, STATUS, WATCHDOG, ...)."""
        return [next(iter(m)) for m in self.messages]

    async def wait_for(
        self, key: str, value: str | None = None, *, after: int = 0, timeout_s: float = 20
    ) -> int:
        """Index of the first message from ``after`` on that has ``key`` (= ``value``)."""

        def found() -> int | None:
            for index in range(after, len(self.messages)):
                message = self.messages[index]
                if key in message and (value is None or message[key].startswith(value)):
                    return index
            return None

        async with asyncio.timeout(timeout_s), self._arrived:
            await self._arrived.wait_for(lambda: found() is not None)
        index = found()
        assert index is not None
        return index

    async def close(self) -> None:
        self._reader.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await self._reader
        self._sock.close()


class DaemonProcess:
    """``python -m reconciler --config X run --sandbox-clock URL`` with its stderr collected."""

    def __init__(
        self,
        config: Path,
        sandbox: SandboxServer,
        *,
        notify: NotifySocket | None = None,
        env: Mapping[str, str] | None = None,
    ) -> None:
        self.config = config
        self.sandbox = sandbox
        self.notify = notify
        self.extra_env = dict(env or {})
        self.lines: list[str] = []
        self._process: asyncio.subprocess.Process | None = None
        self._stderr: asyncio.Task[None] | None = None
        self._logged = asyncio.Condition()

    async def start(self) -> DaemonProcess:
        env = {
            key: value
            for key, value in os.environ.items()
            if not key.startswith(("RECONCILER_", "NOTIFY_", "WATCHDOG_", "JOURNAL_"))
        }
        env["FASTLY_API_TOKEN"] = self.sandbox.fastly_token
        env["PYTHONFAULTHANDLER"] = "1"  # a SIGABRT makes it write every thread's stack
        if self.notify is not None:
            env["NOTIFY_SOCKET"] = str(self.notify.path)
        env.update(self.extra_env)
        self._process = await asyncio.create_subprocess_exec(
            sys.executable,
            "-m",
            "reconciler",
            "--config",
            str(self.config),
            "run",
            "--sandbox-clock",
            self.sandbox.base_url,
            env=env,
            stdin=asyncio.subprocess.DEVNULL,
            stdout=asyncio.subprocess.DEVNULL,
            stderr=asyncio.subprocess.PIPE,
        )
        self._stderr = asyncio.create_task(self._collect())
        return self

    @property
    def process(self) -> asyncio.subprocess.Process:
        assert self._process is not None, "not started"
        return self._process

    @property
    def pid(self) -> int:
        return self.process.pid

    async def _collect(self) -> None:
        stream = self.process.stderr
        assert stream is not None
        while line := await stream.readline():
            async with self._logged:
                self.lines.append(line.decode(errors="replace").rstrip("\n"))
                self._logged.notify_all()

    def log(self) -> str:
        return "\n".join(self.lines)

    async def wait_for_log(self, text: str, *, after: int = 0, timeout_s: float = 20) -> int:
        """Index of the first stderr line from ``after`` on that contains ``text``."""

        def found() -> int | None:
            return next((i for i in range(after, len(self.lines)) if text in self.lines[i]), None)

        try:
            async with asyncio.timeout(timeout_s), self._logged:
                await self._logged.wait_for(lambda: found() is not None)
        except TimeoutError:
            raise AssertionError(f"no log line with {text!r}; log:\n{self.log()}") from None
        index = found()
        assert index is not None
        return index

    def send_signal(self, sig: signal.Signals) -> None:
        self.process.send_signal(sig)

    async def wait(self, timeout_s: float = 30) -> int:
        """The exit status, once the daemon has exited and its stderr is read to the end.

        Past ``timeout_s`` an AssertionError carries the daemon's log and, when it still
        runs, the stack of each of its threads (it is sent SIGABRT, which Python's
        faulthandler answers with them): a daemon that does not stop says where it hangs."""
        try:
            async with asyncio.timeout(timeout_s):
                code = await self.process.wait()
                if self._stderr is not None:
                    await self._stderr
        except TimeoutError:
            state = await self._abort_for_stacks()
            raise AssertionError(
                f"the daemon did not exit within {timeout_s:g}s ({state}); log:\n{self.log()}"
            ) from None
        return code

    async def _abort_for_stacks(self) -> str:
        """SIGABRT a daemon still running, and read the stacks it writes as it dies."""
        transport_code = self.process.returncode
        if transport_code is not None:
            return f"it exited with {transport_code}, but its stderr stayed open"
        self.send_signal(signal.SIGABRT)
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(DUMP_WAIT_S):
                await self.process.wait()
                if self._stderr is not None:
                    await asyncio.shield(self._stderr)
        return "still running: sent SIGABRT, its threads' stacks are at the end of the log"

    async def stop(self, timeout_s: float = 30) -> int:
        """SIGTERM and the exit status."""
        self.send_signal(signal.SIGTERM)
        return await self.wait(timeout_s)

    async def close(self) -> None:
        """Kill it if it still runs (a failed test must not leave a daemon behind)."""
        if self._process is not None and self._process.returncode is None:
            self._process.kill()
            await self._process.wait()
        if self._stderr is not None:
            self._stderr.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._stderr


async def run_counts(engine: AsyncEngine, source: str | None = None) -> dict[str, int]:
    """Pull runs by status (of one source, or all)."""
    query = select(runs_t.c.status, func.count()).group_by(runs_t.c.status)
    if source is not None:
        query = query.where(runs_t.c.source == source)
    async with reader(engine).connect() as conn:
        return {status: int(n) for status, n in (await conn.execute(query)).all()}
