"""Ingest a million Fastly service lines end to end, twice, and compare with the floor.

The sandbox runs as its own process (``python -m reconciler sandbox serve --scenario large``)
so it does not share this process's GIL. Then:

1. run 1: a fresh SQLite state file; :func:`reconciler.refresh.refresh_source` pulls the
   Fastly source (18 months, service lines, invoices) through the real client and engine;
2. about 1% of the service lines change through the control API (a ``restate`` of every month
   for 1% of the services), and run 2 pulls again; the versions it adds must equal the lines
   whose stored values changed, counted in the database by comparing with a copy taken
   after run 1;
3. the floor: the same service-usage pages fetched with plain aiohttp, parsed with the
   standard json module (``parse_float=Decimal``) and inserted with plain sqlite3
   ``executemany``, the rate no Python ingester beats on this machine.

Prints lines per second, version rows added, database size and peak RSS for both runs, the
sandbox's peak RSS and the end-to-end / floor ratio.

    .venv/bin/python benchmarks/ingest.py [--scenario large] [--months 18] [--keep]

``--months 2`` (or ``--scenario default``) makes a quick run.

With ``--postgres URL`` (a server where the URL's user may create databases) the same two
pulls run against a fresh PostgreSQL database instead, the second one an unchanged re-pull
made right after the first, before autovacuum has analyzed anything (the case that was
quadratic): ``--postgres postgresql+asyncpg://postgres@127.0.0.1:5432/postgres --months 2``
pulls about 112,000 lines twice and prints both durations. Measured on a loaded 2-core
machine (PostgreSQL 15): before the comparison's tables were analyzed, run 2 (the unchanged
re-pull of 112,040 lines) was still in its vanished-lines query when stopped after 24 minutes
(run 1: 44.8 s); with them analyzed, run 1 took 55.9 s and run 2 29.7 s, adding 0 versions.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import re
import resource
import sqlite3
import sys
import tempfile
import time
from dataclasses import dataclass
from datetime import date
from decimal import Decimal
from pathlib import Path
from typing import Any

import aiohttp

from reconciler.providers.http import HttpClient
from reconciler.refresh import RunOutcome, refresh_source
from reconciler.settings import Settings, settings_from_mapping
from reconciler.store.db import create_engine, upgrade

TOKEN = "sandbox-fastly-token"
SERVICE_USAGE = "/billing/v3/service-usage-metrics"
VALUE_COLUMNS = "quantity, raw_quantity, unit, status, billable, period_end, present"


@dataclass
class Figures:
    name: str
    lines: int
    seconds: float
    versions: int | None
    db_bytes: int
    rss_mib: float

    @property
    def rate(self) -> float:
        return self.lines / self.seconds if self.seconds else 0.0


def peak_rss_mib() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # Linux: KiB


def proc_kib(pid: int, field: str) -> int:
    text = Path(f"/proc/{pid}/status").read_text()
    match = re.search(rf"^{field}:\s+(\d+) kB$", text, re.MULTILINE)
    return int(match.group(1)) if match else -1


def wal_bytes(path: Path) -> int:
    wal = path.with_name(path.name + "-wal")
    return wal.stat().st_size if wal.exists() else 0


def db_bytes(path: Path) -> int:
    return path.stat().st_size + wal_bytes(path)


async def start_sandbox(scenario: str, today: str) -> tuple[asyncio.subprocess.Process, str]:
    proc = await asyncio.create_subprocess_exec(
        sys.executable,
        *("-m", "reconciler", "sandbox", "serve", "--scenario", scenario),
        *("--port", "0", "--today", today),
        stdout=asyncio.subprocess.PIPE,
    )
    assert proc.stdout is not None
    async with asyncio.timeout(60):
        while True:
            line = (await proc.stdout.readline()).decode()
            if not line:
                raise SystemExit("the sandbox exited before serving")
            match = re.search(r"serving (http://\S+)$", line.strip())
            if match:
                break
        async with aiohttp.ClientSession() as session:
            while True:  # wait until it answers
                try:
                    async with session.get(f"{match.group(1)}/_sandbox/clock") as resp:
                        if resp.status == 200:
                            return proc, match.group(1)
                except aiohttp.ClientError:
                    pass
                await asyncio.sleep(0.1)


async def refresh(engine: Any, settings: Settings, today: date) -> tuple[RunOutcome, float]:
    async with HttpClient() as http:
        began = time.perf_counter()
        outcome = await refresh_source(
            engine, settings, "fastly", http, today=today, environ={"FASTLY_API_TOKEN": TOKEN}
        )
        elapsed = time.perf_counter() - began
    if not outcome.ok:
        raise SystemExit(f"refresh failed: {outcome.error}")
    print(f"  {outcome.summary()}")
    return outcome, elapsed


def snapshot_values(db: Path, copy: Path) -> None:
    """Copy every line's stored values to a side file, to count changed lines later."""
    with sqlite3.connect(db) as conn:
        conn.execute("ATTACH DATABASE ? AS b", (str(copy),))
        conn.execute(f"CREATE TABLE b.before AS SELECT id, {VALUE_COLUMNS} FROM usage_lines")
        conn.commit()


def count_changed(db: Path, copy: Path) -> tuple[int, int]:
    """(lines whose stored values differ from the copy, lines not in the copy)."""
    same = " AND ".join(f"u.{c} IS b.{c}" for c in VALUE_COLUMNS.split(", "))
    with sqlite3.connect(db) as conn:
        conn.execute("ATTACH DATABASE ? AS b", (str(copy),))
        changed = conn.execute(
            f"SELECT count(*) FROM usage_lines u JOIN b.before b ON b.id = u.id WHERE NOT ({same})"
        ).fetchone()[0]
        added = conn.execute(
            "SELECT count(*) FROM usage_lines WHERE id NOT IN (SELECT id FROM b.before)"
        ).fetchone()[0]
    return int(changed), int(added)


def months_and_services(db: Path, share: float) -> tuple[str, str, int, list[str]]:
    with sqlite3.connect(db) as conn:
        first, last = conn.execute(
            "SELECT min(month), max(month) FROM usage_lines WHERE service != ''"
        ).fetchone()
        services = [r[0] for r in conn.execute("SELECT DISTINCT service FROM usage_lines")]
    services = sorted(s for s in services if s)
    step = max(1, round(1 / share))
    return first, last, len(services), services[::step]


async def change_lines(base_url: str, today: date, services: list[str]) -> None:
    events = [
        {"kind": "restate", "provider": "fastly", "day": today.isoformat(), "service": s}
        for s in services
    ]
    url = f"{base_url}/_sandbox/events"
    async with aiohttp.ClientSession() as session, session.post(url, json=events) as resp:
        if resp.status >= 300:
            raise SystemExit(f"adding events failed: {resp.status} {await resp.text()}")


async def floor(base_url: str, first: str, last: str, db: Path, limit: int) -> Figures:
    """Plain aiohttp + json(parse_float=Decimal) + sqlite3 executemany, nothing else."""
    conn = sqlite3.connect(db)
    conn.execute("PRAGMA journal_mode=WAL")
    conn.execute("PRAGMA synchronous=NORMAL")
    conn.execute(
        "CREATE TABLE lines (month TEXT, service_id TEXT, service_name TEXT, product_id TEXT, "
        "usage_type TEXT, region TEXT, unit TEXT, quantity TEXT, raw_quantity TEXT)"
    )
    params = {"start_month": first, "end_month": last, "limit": str(limit)}
    headers = {"Fastly-Key": TOKEN}
    lines = 0
    cursor = ""
    began = time.perf_counter()
    timeout = aiohttp.ClientTimeout(total=300)
    async with aiohttp.ClientSession(timeout=timeout) as session:
        while True:
            sent = dict(params, cursor=cursor) if cursor else params
            async with session.get(base_url + SERVICE_USAGE, params=sent, headers=headers) as r:
                r.raise_for_status()
                page = json.loads(await r.read(), parse_float=Decimal)
            rows = [
                (
                    d["month"],
                    d["service_id"],
                    d["service_name"],
                    d["product_id"],
                    d["usage_type"],
                    d["region"],
                    d["unit"],
                    str(d["quantity"]),
                    str(d["raw_quantity"]),
                )
                for d in page["data"]
            ]
            conn.executemany("INSERT INTO lines VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)", rows)
            lines += len(rows)
            cursor = page["meta"]["next_cursor"]
            if not cursor:
                break
    conn.commit()
    elapsed = time.perf_counter() - began
    conn.close()
    return Figures("floor", lines, elapsed, None, db_bytes(db), peak_rss_mib())


async def main(args: argparse.Namespace, work: Path) -> None:
    today = date.fromisoformat(args.today)
    proc, base_url = await start_sandbox(args.scenario, args.today)
    print(f"sandbox '{args.scenario}' today {today} at {base_url} (pid {proc.pid})")
    try:
        db = work / "state.db"
        engine = create_engine(f"sqlite+aiosqlite:///{db}", create=True)
        await upgrade(engine)
        source = {"name": "fastly", "provider": "fastly", "base_url": base_url}
        source["lookback_months"] = args.months
        settings = settings_from_mapping(
            {"state": {"database_url": f"sqlite+aiosqlite:///{db}"}, "sources": [source]}
        )
        rss_base = peak_rss_mib()
        print("run 1 (fresh state)")
        one, elapsed = await refresh(engine, settings, today)
        run1 = Figures(
            "run 1", one.stats.lines, elapsed, one.ingest.versions_added, db_bytes(db), 0
        )
        run1.rss_mib = peak_rss_mib()
        print(
            f"  database {db_bytes(db) / 2**20:.1f} MiB (of which -wal {wal_bytes(db) / 2**20:.1f})"
        )

        first, last, n_services, chosen = months_and_services(db, args.change_share)
        snapshot_values(db, work / "before.db")
        await change_lines(base_url, today, chosen)
        print(
            f"changed: restate of {first}..{last} for {len(chosen)} of {n_services} services "
            f"(expect {len(chosen)} x usage types x months service lines, plus the account "
            "lines that sum them)"
        )
        print("run 2 (about 1% changed)")
        two, elapsed = await refresh(engine, settings, today)
        run2 = Figures("run 2", two.stats.lines, elapsed, two.ingest.versions_added, 0, 0)
        run2.db_bytes = db_bytes(db)
        run2.rss_mib = peak_rss_mib()
        print(
            f"  database {db_bytes(db) / 2**20:.1f} MiB (of which -wal {wal_bytes(db) / 2**20:.1f})"
        )
        await engine.dispose()
        changed, added = count_changed(db, work / "before.db")

        print(f"floor: {SERVICE_USAGE} {first}..{last} at limit {args.limit}")
        base = await floor(base_url, first, last, work / "floor.db", args.limit)
        sandbox_peak = proc_kib(proc.pid, "VmHWM") / 1024
    finally:
        proc.terminate()
        await proc.wait()

    print()
    print(f"{'':8}{'lines':>11}{'seconds':>9}{'lines/s':>10}{'versions':>10}"
          f"{'db MiB':>8}{'peak RSS MiB':>14}")  # fmt: skip
    for f in (run1, run2, base):
        versions = "" if f.versions is None else f"{f.versions:,}"
        print(f"{f.name:8}{f.lines:>11,}{f.seconds:>9.1f}{f.rate:>10,.0f}{versions:>10}"
              f"{f.db_bytes / 2**20:>8.1f}{f.rss_mib:>14.0f}")  # fmt: skip
    print(
        f"this process's RSS before run 1: {rss_base:.0f} MiB; sandbox peak: {sandbox_peak:.0f} MiB"
    )
    print(f"end-to-end / floor (run 1): {run1.rate / base.rate:.2f} (aim: at least 0.5)")
    print(f"run 2: {run2.versions:,} versions added, {changed:,} lines changed in the database "
          f"({added} new)")  # fmt: skip
    if run2.versions != changed + added:
        raise SystemExit(
            f"FAIL: run 2 added {run2.versions} versions but {changed + added} lines changed"
        )
    if changed == 0:
        raise SystemExit("FAIL: the events changed no line")


async def postgres_case(args: argparse.Namespace) -> None:
    """Two pulls into a fresh PostgreSQL database; the second re-pulls the same snapshot."""
    import uuid

    import asyncpg
    from sqlalchemy.engine import make_url

    today = date.fromisoformat(args.today)
    admin = make_url(args.postgres)
    plain = admin.set(drivername="postgresql").render_as_string(hide_password=False)
    name = f"reconciler_bench_{uuid.uuid4().hex[:8]}"
    conn = await asyncpg.connect(plain)
    await conn.execute(f'CREATE DATABASE "{name}"')
    await conn.close()
    url = admin.set(database=name).render_as_string(hide_password=False)
    proc, base_url = await start_sandbox(args.scenario, args.today)
    print(f"sandbox '{args.scenario}' today {today} at {base_url}; PostgreSQL database {name}")
    try:
        engine = create_engine(url)
        await upgrade(engine)
        source = {"name": "fastly", "provider": "fastly", "base_url": base_url}
        source["lookback_months"] = args.months
        settings = settings_from_mapping({"state": {"database_url": url}, "sources": [source]})
        figures = []
        for label in ("run 1 (fresh state)", "run 2 (unchanged re-pull)"):
            print(label)
            outcome, elapsed = await refresh(engine, settings, today)
            figures.append((label, outcome.stats.lines, elapsed, outcome.ingest.versions_added))
        await engine.dispose()
    finally:
        proc.terminate()
        await proc.wait()
        conn = await asyncpg.connect(plain)
        await conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        await conn.close()
    print()
    print(f"{'PostgreSQL':28}{'lines':>11}{'seconds':>9}{'lines/s':>10}{'versions':>10}")
    for label, lines, seconds, versions in figures:
        print(f"{label:28}{lines:>11,}{seconds:>9.1f}{lines / seconds:>10,.0f}{versions:>10,}")
    if figures[1][3] != 0:
        raise SystemExit(f"FAIL: the unchanged re-pull added {figures[1][3]} versions")


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--scenario", default="large", help="sandbox scenario (large: 2800 x 20)")
    parser.add_argument("--months", type=int, default=18, help="lookback_months of the source")
    parser.add_argument("--today", default="2024-07-10", help="the simulated day of both pulls")
    parser.add_argument("--change-share", type=float, default=0.01, help="share of services")
    parser.add_argument("--limit", type=int, default=10000, help="floor's page size")
    parser.add_argument("--keep", action="store_true", help="keep the temporary directory")
    parser.add_argument("--postgres", metavar="URL", help="run the PostgreSQL case on this server")
    args = parser.parse_args()
    if args.postgres:
        asyncio.run(postgres_case(args))
        raise SystemExit(0)
    work = Path(tempfile.mkdtemp(prefix="reconciler-ingest-"))
    try:
        asyncio.run(main(args, work))
    finally:
        if args.keep:
            print(f"kept {work}")
        else:
            import shutil

            shutil.rmtree(work, ignore_errors=True)
