"""What every section of ``chaos.py`` shares: the result table, processes, the sandbox.

The provider sandbox always runs in its own process (``python chaos_support.py serve
'<scenario JSON>'``) and is driven through its control API over loopback HTTP, like a real
provider that misbehaves on request. SQLite state files are read with the plain ``sqlite3``
module, so checking a database never goes through the code under test.

    python benchmarks/chaos_support.py serve '{"fastly_services": 300}' [--today 2024-07-01]
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import json
import os
import re
import signal
import sqlite3
import sys
from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import aiohttp

from reconciler.store.tracked_state import RUN_COLUMNS, TRACKED_TABLES, naming_run

HERE = Path(__file__).resolve().parent
LOOPBACK = "127.0.0.1"
STARTUP_TIMEOUT_S = 60.0


@dataclass
class Row:
    """One line of the final table; ``ok`` False marks a broken promise."""

    section: str
    case: str
    figures: str
    ok: bool = True
    note: str = ""


@dataclass
class Results:
    rows: list[Row] = field(default_factory=list)

    def add(self, section: str, case: str, figures: str, ok: bool = True, note: str = "") -> None:
        self.rows.append(Row(section, case, figures, ok, note))
        mark = "ok" if ok else "FAIL"
        problem = f" ({note})" if note and not ok else ""
        print(f"  [{mark}] {section} / {case}: {figures}{problem}")
        sys.stdout.flush()

    @property
    def failures(self) -> list[Row]:
        return [r for r in self.rows if not r.ok]

    def table(self) -> str:
        heads = ("section", "case", "figures", "check")
        body = [
            (r.section, r.case, r.figures, "ok" if r.ok else f"FAIL {r.note}") for r in self.rows
        ]
        widths = [max(len(h), *(len(row[i]) for row in body)) for i, h in enumerate(heads)]
        widths[2] = min(widths[2], 120)

        def line(cells: Sequence[str]) -> str:
            return "| " + " | ".join(c.ljust(w) for c, w in zip(cells, widths, strict=True)) + " |"

        rule = "|" + "|".join("-" * (w + 2) for w in widths) + "|"
        return "\n".join([line(heads), rule, *(line(row) for row in body)])


# -- processes ------------------------------------------------------------------------------


def proc_kib(pid: int, name: str) -> int:
    """A ``/proc/<pid>/status`` figure in KiB (VmRSS, VmHWM), or -1 if the process is gone."""
    try:
        text = Path(f"/proc/{pid}/status").read_text()
    except OSError:
        return -1
    match = re.search(rf"^{name}:\s+(\d+) kB$", text, re.MULTILINE)
    return int(match.group(1)) if match else -1


def child_env(**extra: str) -> dict[str, str]:
    """This environment without reconciler, systemd or credential variables, plus ``extra``."""
    drop = ("RECONCILER_", "NOTIFY_", "WATCHDOG_", "JOURNAL_", "FASTLY_", "SLACK_")
    env = {k: v for k, v in os.environ.items() if not k.startswith(drop)}
    env.update(extra)
    return env


async def stop_process(proc: asyncio.subprocess.Process, timeout_s: float = 30) -> int:
    """SIGTERM, then SIGKILL if it does not exit in time; the exit status."""
    if proc.returncode is None:
        with contextlib.suppress(ProcessLookupError):
            proc.send_signal(signal.SIGTERM)
        try:
            async with asyncio.timeout(timeout_s):
                await proc.wait()
        except TimeoutError:
            with contextlib.suppress(ProcessLookupError):
                proc.kill()
            await proc.wait()
    return proc.returncode if proc.returncode is not None else -1


async def start_daemon(
    config: Path, sandbox_url: str, log: Path, **env: str
) -> asyncio.subprocess.Process:
    """``reconciler --config CONFIG run --sandbox-clock URL``, its stderr to ``log``."""
    with log.open("ab") as stderr:
        return await asyncio.create_subprocess_exec(
            sys.executable,
            *("-m", "reconciler", "--config", str(config), "run", "--sandbox-clock", sandbox_url),
            env=child_env(**env),
            stdin=asyncio.subprocess.DEVNULL,
            stdout=asyncio.subprocess.DEVNULL,
            stderr=stderr,
        )


def log_errors(log: Path) -> list[str]:
    """ERROR lines (and tracebacks) a daemon wrote to its log."""
    if not log.exists():
        return []
    lines = log.read_text(errors="replace").splitlines()
    return [line[:200] for line in lines if " ERROR " in line or "Traceback" in line]


class Sandbox:
    """The provider sandbox in its own process, and its control API."""

    def __init__(self, proc: asyncio.subprocess.Process, base_url: str) -> None:
        self.proc = proc
        self.base_url = base_url
        self.session = aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=60))
        self.credentials: dict[str, Any] = {}

    async def call(self, method: str, path: str, body: Any = None) -> Any:
        url = f"{self.base_url}/_sandbox/{path}"
        async with self.session.request(method, url, json=body) as resp:
            data = await resp.json(content_type=None)
            if resp.status >= 300:
                raise RuntimeError(f"sandbox {method} {path}: {resp.status} {data}")
            return data

    async def set_today(self, day: str) -> None:
        await self.call("POST", "clock", {"today": day})

    async def today(self) -> str:
        return str((await self.call("GET", "clock"))["today"])

    async def add_faults(self, *faults: dict[str, Any]) -> list[int]:
        """Add faults; their ids."""
        return [int(f["id"]) for f in await self.call("POST", "faults", list(faults))]

    async def faults(self) -> list[dict[str, Any]]:
        return list(await self.call("GET", "faults"))

    async def clear_faults(self) -> None:
        await self.call("DELETE", "faults")

    async def add_events(self, *events: dict[str, Any]) -> None:
        await self.call("POST", "events", list(events))

    @property
    def fastly_token(self) -> str:
        return str(self.credentials["fastly"]["token"])

    @property
    def contracts(self) -> list[str]:
        return list(self.credentials["akamai"]["contracts"])

    def write_edgerc(self, path: Path) -> Path:
        path.write_text(self.credentials["akamai"]["edgerc"])
        path.chmod(0o600)
        return path

    def peak_rss_mib(self) -> float:
        return proc_kib(self.proc.pid, "VmHWM") / 1024

    async def close(self) -> None:
        await self.session.close()
        await stop_process(self.proc)


@contextlib.asynccontextmanager
async def sandbox(scenario: dict[str, Any], today: str | None = None) -> AsyncIterator[Sandbox]:
    """A sandbox process for the ``default`` scenario changed by ``scenario``."""
    args = [str(HERE / "chaos_support.py"), "serve", json.dumps(scenario)]
    if today:
        args += ["--today", today]
    proc = await asyncio.create_subprocess_exec(
        sys.executable, *args, stdout=asyncio.subprocess.PIPE, env=child_env()
    )
    assert proc.stdout is not None
    try:
        async with asyncio.timeout(STARTUP_TIMEOUT_S):
            line = (await proc.stdout.readline()).decode()
        match = re.search(r"serving (http://\S+)", line)
        if match is None:
            raise RuntimeError(f"the sandbox did not start: {line!r}")
    except BaseException:
        await stop_process(proc)
        raise
    box = Sandbox(proc, match.group(1))
    try:
        box.credentials = await box.call("GET", "credentials")
        yield box
    finally:
        await box.close()


async def _serve(scenario_json: str, today: str | None) -> None:
    from datetime import date

    from reconciler.domain import Month
    from reconciler.sandbox.scenario import named_scenario
    from reconciler.sandbox.server import SandboxServer

    changes = json.loads(scenario_json)
    if "first_month" in changes:
        changes["first_month"] = Month.parse(changes["first_month"])
    scenario = named_scenario("default").replace(name="chaos", **changes)
    if today:
        scenario = scenario.replace(today=date.fromisoformat(today))
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    async with SandboxServer(scenario, host=LOOPBACK, port=0) as server:
        print(f"serving {server.base_url}", flush=True)
        await stop.wait()


# -- SQLite state, read directly ------------------------------------------------------------


def connect(db: Path, *, timeout_s: float = 30) -> sqlite3.Connection:
    conn = sqlite3.connect(db, timeout=timeout_s, isolation_level=None)
    conn.execute("PRAGMA busy_timeout=30000")
    return conn


def integrity(db: Path) -> str:
    """``ok``, or what ``PRAGMA integrity_check`` / ``foreign_key_check`` found."""
    with contextlib.closing(connect(db)) as conn:
        problems = [r[0] for r in conn.execute("PRAGMA integrity_check").fetchall()]
        keys = conn.execute("PRAGMA foreign_key_check").fetchall()
    if problems == ["ok"] and not keys:
        return "ok"
    return "; ".join([*problems, *(f"foreign key {k}" for k in keys)])[:200]


def state_digest(db: Path, tables: Sequence[str] = TRACKED_TABLES) -> str:
    """A hash of every row of the tracked tables, in id order."""
    digest = hashlib.blake2b(digest_size=16)
    with contextlib.closing(connect(db)) as conn:
        for table in tables:
            digest.update(table.encode())
            for row in conn.execute(f"SELECT * FROM {table} ORDER BY 1, 2"):
                digest.update(repr(row).encode())
    return digest.hexdigest()


def scalar(db: Path, sql: str, *params: Any) -> Any:
    with contextlib.closing(connect(db)) as conn:
        row = conn.execute(sql, params).fetchone()
    return row[0] if row else None


def traces_of_run(db: Path, run_id: int) -> int:
    """Rows of the tracked state that name ``run_id``: none may come from a partial run."""
    queries = [f"SELECT count(*) FROM {table} WHERE {naming_run(table)}" for table in RUN_COLUMNS]
    with contextlib.closing(connect(db)) as conn:
        return sum(int(conn.execute(q, {"run": run_id}).fetchone()[0]) for q in queries)


VALUE_COLUMNS = (
    "key_hash, quantity, raw_quantity, unit, status, billable, period_start, period_end, "
    "present, product_name, service_name"
)


def line_values(db: Path) -> set[tuple[Any, ...]]:
    """Every tracked line's identity and values (what a wrong pull would change)."""
    with contextlib.closing(connect(db)) as conn:
        return set(conn.execute(f"SELECT {VALUE_COLUMNS} FROM usage_lines"))


def percent(part: float, whole: float) -> str:
    return f"{100 * part / whole:.0f}%" if whole else "-"


if __name__ == "__main__":
    if len(sys.argv) < 3 or sys.argv[1] != "serve":
        raise SystemExit(__doc__)
    day = sys.argv[sys.argv.index("--today") + 1] if "--today" in sys.argv else None
    asyncio.run(_serve(sys.argv[2], day))
