"""Load: one daemon pulls many sources at once, among them a million-line Fastly account.

``reconciler run`` starts with ``NOTIFY_SOCKET`` pointing at a datagram socket of ours and
``WATCHDOG_USEC`` set, as systemd would. Its first pulls of every source start together:
the large Fastly account (2,800 services x 20 usage types x ``months``) and ``akamai``
Akamai sources of one contract each (5 products x 4 statistics), and a second source on the
Fastly account (its open month: 56,000 service lines) that a CLI ``pull`` imported before the
daemon started and that the sandbox then restated, so the daemon's pull of it changes every
line. Figures: lines stored, how long it took, the daemon's peak memory, the largest gap
between two watchdog pings (systemd restarts a service whose pings stop for
``WATCHDOG_USEC``; the daemon aims to ping every half of it), and the longest event-loop
stall, measured inside the daemon by its loop-lag probe (logged when it stops).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import re
import socket
import sys
import time
from datetime import date
from pathlib import Path
from typing import Any

from chaos_support import (
    Results,
    child_env,
    connect,
    log_errors,
    proc_kib,
    sandbox,
    start_daemon,
    stop_process,
)

from reconciler.cli.setup_cmds import to_toml

SECTION = "load"
TODAY = date(2024, 7, 10)
RESTATED = "fastly-restated"
STALL_LINE = re.compile(r" stopped; longest event-loop stall ([0-9.]+)s")


class NotifyListener:
    """A bound AF_UNIX datagram socket standing in for systemd's: arrival times of messages."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        self.sock.bind(str(path))
        self.sock.setblocking(False)
        self.messages: list[tuple[float, dict[str, str]]] = []
        self.ready = asyncio.Event()
        self._task = asyncio.create_task(self._read())

    async def _read(self) -> None:
        loop = asyncio.get_running_loop()
        while True:
            data = await loop.sock_recv(self.sock, 65536)
            fields = dict(line.split("=", 1) for line in data.decode().split("\n") if "=" in line)
            self.messages.append((time.monotonic(), fields))
            if "READY" in fields:
                self.ready.set()

    def pings(self, start: float, end: float) -> list[float]:
        return [t for t, m in self.messages if "WATCHDOG" in m and start <= t <= end]

    async def close(self) -> None:
        self._task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await self._task
        self.sock.close()


def write_config(
    path: Path, db: Path, base_url: str, edgerc: Path, contracts: list[str], months: int
) -> list[str]:
    sources: list[dict[str, Any]] = [
        {
            "name": "fastly-large",
            "provider": "fastly",
            "base_url": base_url,
            "lookback_months": months,
            "pull_every": "24h",
            "timeout_s": 300,
        },
        {
            "name": RESTATED,
            "provider": "fastly",
            "base_url": base_url,
            "lookback_months": 1,
            "pull_every": "24h",
            "timeout_s": 300,
        },
    ]
    for index, contract in enumerate(contracts, 1):
        sources.append(
            {
                "name": f"akamai-{index:02d}",
                "provider": "akamai",
                "base_url": base_url,
                "edgerc": str(edgerc),
                "contracts": [contract],
                "lookback_months": 3,
                "pull_every": "24h",
            }
        )
    data = {
        "state": {"database_url": f"sqlite+aiosqlite:///{db}", "directory": str(path.parent)},
        "daemon": {"listen": "", "jitter_s": 0, "first_pull_delay_s": 0, "alert_every_s": 5},
        "sources": sources,
    }
    path.write_text(to_toml(data))
    return [s["name"] for s in sources]


def finished_runs(db: Path) -> dict[str, str]:
    if not db.exists():
        return {}
    try:
        with contextlib.closing(connect(db)) as conn:
            rows = conn.execute(
                "SELECT source, status FROM pull_runs WHERE status != 'running'"
            ).fetchall()
    except Exception:  # the daemon may still be creating the schema
        return {}
    return {str(source): str(status) for source, status in rows}


async def run_load(
    results: Results,
    work: Path,
    *,
    months: int,
    akamai_sources: int,
    watchdog_s: float,
    quick: bool,
) -> None:
    scenario = {
        "fastly_services": 100 if quick else 2800,
        "fastly_usage_types": 20,
        "first_month": "2023-02",
        "akamai_contracts": akamai_sources,
        "akamai_products_per_contract": 5,
        "akamai_oddities": False,
    }
    async with sandbox(scenario, today=TODAY.isoformat()) as box:
        db = work / "state.db"
        edgerc = box.write_edgerc(work / "sandbox.edgerc")
        config = work / "reconciler.toml"
        names = write_config(config, db, box.base_url, edgerc, box.contracts, months)
        changed = await _import_then_restate(box, config)
        listener = NotifyListener(work / "notify")
        began = time.monotonic()
        daemon = await start_daemon(
            config,
            box.base_url,
            work / "daemon.log",
            FASTLY_API_TOKEN=box.fastly_token,
            NOTIFY_SOCKET=str(listener.path),
            WATCHDOG_USEC=str(int(watchdog_s * 1_000_000)),
        )
        peak_rss = 0
        try:
            async with asyncio.timeout(120):
                await listener.ready.wait()
            ready = time.monotonic()
            print(f"  daemon READY at {time.strftime('%H:%M:%S')}", flush=True)
            async with asyncio.timeout(3600):
                while len(done := finished_runs(db)) < len(names) and daemon.returncode is None:
                    peak_rss = max(peak_rss, proc_kib(daemon.pid, "VmHWM"))
                    await asyncio.sleep(0.5)
            loaded = time.monotonic()
            peak_rss = max(peak_rss, proc_kib(daemon.pid, "VmHWM"))
        finally:
            code = await stop_process(daemon, timeout_s=120)
            await listener.close()
        pings = listener.pings(ready, loaded)
        _report(results, db, names, done, code, pings, ready, loaded, began, watchdog_s)
        _report_stall(results, db, work / "daemon.log", changed)
        errors = log_errors(work / "daemon.log")
        results.add(
            SECTION,
            "daemon log",
            f"{len(errors)} ERROR lines or tracebacks",
            not errors,
            "; ".join(errors[:2]),
        )
        results.add(
            SECTION,
            "memory",
            f"daemon peak RSS {peak_rss / 1024:.0f} MiB; sandbox peak "
            f"{box.peak_rss_mib():.0f} MiB; database {_size_mib(db):.0f} MiB",
        )


def _report(
    results: Results,
    db: Path,
    names: list[str],
    done: dict[str, str],
    code: int,
    pings: list[float],
    ready: float,
    loaded: float,
    began: float,
    watchdog_s: float,
) -> None:
    with contextlib.closing(connect(db)) as conn:
        lines = int(conn.execute("SELECT count(*) FROM usage_lines").fetchone()[0])
        read = int(conn.execute("SELECT coalesce(sum(lines_read), 0) FROM pull_runs").fetchone()[0])
        errors = [r[0] for r in conn.execute("SELECT error FROM pull_runs WHERE error IS NOT NULL")]
    succeeded = sum(1 for s in done.values() if s == "succeeded")
    results.add(
        SECTION,
        f"{len(names)} sources at once",
        f"{succeeded}/{len(names)} pulls succeeded; {read:,} lines read, {lines:,} stored; "
        f"{loaded - ready:.0f}s from READY to the last run ({ready - began:.1f}s to READY); "
        f"exit {code} on SIGTERM",
        succeeded == len(names) and code == 0 and lines > 0,
        "; ".join(errors[:2]),
    )
    gaps = [(b - a, a - ready) for a, b in zip([ready, *pings], [*pings, loaded], strict=True)]
    worst, at = max(gaps, default=(loaded - ready, 0.0))
    late = sum(1 for gap, _ in gaps if gap > watchdog_s / 2 * 1.5)
    unit_s = shipped_watchdog_s()
    results.add(
        SECTION,
        f"watchdog (WATCHDOG_USEC {watchdog_s:g}s)",
        f"{len(pings)} pings during the load, one every {watchdog_s / 2:g}s planned, {late} late "
        f"by half an interval or more; max gap {worst:.2f}s ({at:.0f}s after READY); would have "
        f"fired: at {watchdog_s:g}s {'YES' if worst > watchdog_s else 'no'}, at the unit's "
        f"WatchdogSec={unit_s:g}s {'YES' if worst > unit_s else 'no'}",
        worst <= unit_s,
        f"the event loop was blocked for {worst:.1f}s",
    )


async def _import_then_restate(box: Any, config: Path) -> int:
    """Create the state and import the restated source with the CLI, then restate every line
    of the account from today on: the daemon's pull of that source changes every line the CLI
    imported. The number of lines imported."""
    await _cli(box, config, "init")
    out = await _cli(
        box, config, "pull", "--source", RESTATED, "--as-of", TODAY.isoformat(), "--json"
    )
    await box.add_events({"kind": "restate", "provider": "fastly", "day": TODAY.isoformat()})
    return int(json.loads(out)[0]["new_lines"])


async def _cli(box: Any, config: Path, *args: str) -> str:
    process = await asyncio.create_subprocess_exec(
        *(sys.executable, "-m", "reconciler", "--config", str(config), *args),
        env=child_env(FASTLY_API_TOKEN=box.fastly_token),
        stdin=asyncio.subprocess.DEVNULL,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    out, err = await process.communicate()
    if process.returncode != 0:
        raise RuntimeError(f"reconciler {' '.join(args)} failed: {err.decode()[-500:]}")
    return out.decode()


def _report_stall(results: Results, db: Path, log: Path, imported: int) -> None:
    with contextlib.closing(connect(db)) as conn:
        changed = int(
            conn.execute(
                "SELECT count(*) FROM changes c JOIN pull_runs r ON r.id = c.run_id "
                "WHERE r.source = ? AND r.id = (SELECT max(id) FROM pull_runs WHERE source = ?)",
                (RESTATED, RESTATED),
            ).fetchone()[0]
        )
    found = STALL_LINE.findall(log.read_text(errors="replace"))
    stall = float(found[-1]) if found else None
    unit_s = shipped_watchdog_s()
    results.add(
        SECTION,
        "longest event-loop stall",
        (f"{stall:.3f}s" if stall is not None else "not logged")
        + f", measured in the daemon (a probe waking every 0.05s) over the whole load, which "
        f"includes a pull that changed {changed:,} of {imported:,} imported lines",
        stall is not None and stall < unit_s / 2 and changed >= imported > 0,
        f"the daemon's loop was held {stall}s; the unit's watchdog pings every {unit_s / 2:g}s",
    )


def shipped_watchdog_s() -> float:
    """``WatchdogSec=`` of the systemd unit shipped in ``config/``."""
    unit = Path(__file__).resolve().parent.parent / "config" / "reconciler.service"
    match = re.search(r"^WatchdogSec=(\d+)s?$", unit.read_text(), re.MULTILINE)
    return float(match.group(1)) if match else 60.0


def _size_mib(db: Path) -> float:
    return sum(p.stat().st_size for p in db.parent.glob(db.name + "*")) / 2**20
