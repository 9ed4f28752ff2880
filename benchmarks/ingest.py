"""How fast ``reconciler pull`` ingests Fastly service lines, next to the floor.

The provider is not the bottleneck: a separate process (``ingest.py serve``) renders every
Fastly v3 ``service-usage-metrics`` page up front and serves the bytes from memory, in three
variants: the snapshot; the snapshot with its latest month's quantities changed (the usual
re-pull of a daemon: the finalized months as they were, the collecting one grown); and that
one with a further 1% of its lines' quantities changed.

For each line count (default 200,000 and 1,000,000) it runs, each as a whole process timed
from start to exit:

1. the floor: the same pages fetched with ``urllib``, parsed with ``json``
   (``parse_float=Decimal``) and inserted with plain ``sqlite3.executemany``;
2. ``reconciler pull`` into a fresh SQLite state (the first pull);
3. ``reconciler pull`` again, the provider unchanged (the unchanged re-pull);
4. ``reconciler pull`` with the latest month's lines changed (the last pages);
5. ``reconciler pull`` with 1% more of the lines changed, spread over every page.

It prints, per run, lines per second, the version rows the pull added, the process's peak
RSS and its ratio to the floor; and fails (exit 1) when a pull read or versioned the wrong
number of lines. With ``--postgres URL`` the pulls also run against a fresh PostgreSQL
database (the URL's user must be allowed to create databases).

    .venv/bin/python benchmarks/ingest.py                      # 200k and 1M lines
    .venv/bin/python benchmarks/ingest.py --lines 200000 \\
        --postgres postgresql+asyncpg://postgres@127.0.0.1:5432/postgres
    .venv/bin/python benchmarks/ingest.py --quick --json out.json  # small, for CI: counts only
"""

from __future__ import annotations

import argparse
import json
import os
import sqlite3
import subprocess
import sys
import tempfile
import time
import urllib.request
import uuid
from collections.abc import Iterator, Sequence
from dataclasses import asdict, dataclass
from datetime import date
from decimal import Decimal
from pathlib import Path
from typing import Any

TOKEN = "bench-fastly-token"
SERVICE_USAGE = "/billing/v3/service-usage-metrics"
USAGE = "/billing/v3/usage-metrics"
TODAY = date(2024, 7, 10)
MONTHS = 12
USAGE_TYPES = (
    ("North America Bandwidth", "North America", "GB"),
    ("Europe Bandwidth", "Europe", "GB"),
    ("Asia Bandwidth", "Asia", "GB"),
    ("North America Requests", "North America", "requests"),
    ("Europe Requests", "Europe", "requests"),
    ("Asia Requests", "Asia", "requests"),
    ("South America Bandwidth", "South America", "GB"),
    ("Australia Bandwidth", "Australia", "GB"),
    ("TLS Certificates", None, "certificates"),
    ("Shielding", "Global", "GB"),
)
CHANGED_EVERY = 100  # the changed variant: every 100th line's quantity differs (1%)
VARIANTS = ("base", "latest", "changed")


def months_pulled() -> list[str]:
    """The ``MONTHS`` months ending with TODAY's month, oldest first."""
    year, month = TODAY.year, TODAY.month
    out = []
    for _ in range(MONTHS):
        out.append(f"{year:04d}-{month:02d}")
        year, month = (year, month - 1) if month > 1 else (year - 1, 12)
    return out[::-1]


def latest_month_lines(lines: int) -> int:
    """How many of ``lines`` fall in the latest month (see :func:`records`)."""
    per_month = -(-lines // MONTHS)
    return max(0, lines - per_month * (MONTHS - 1))


def records(lines: int, variant: str) -> Iterator[dict[str, Any]]:
    """``lines`` service lines, month by month (the order Fastly sorts them in): the
    ``base`` snapshot, its ``latest`` month grown, or that with 1% more ``changed``."""
    months = months_pulled()
    per_month = -(-lines // len(months))
    index = 0
    for month in months:
        for slot in range(per_month):
            if index == lines:
                return
            service, kind = divmod(slot, len(USAGE_TYPES))
            usage_type, region, unit = USAGE_TYPES[kind]
            quantity = Decimal(index % 9973 * 1000 + 17) / 1000  # three decimals, exact
            if variant != "base" and month == months[-1]:
                quantity += Decimal("0.5")
            if variant == "changed" and index % CHANGED_EVERY == 0:
                quantity += Decimal("0.125")
            record = {
                "customer_id": "x4xCwxxJxGCx123Rx5xTx",
                "service_id": f"SU{service:019d}",
                "service_name": f"service-{service}.example.com",
                "month": month,
                "product_id": "cdn_usage",
                "usage_type": usage_type,
                "name": usage_type,
                "region": region,
                "unit": unit,
                "quantity": quantity,
                "raw_quantity": int(quantity * 1000),
            }
            yield record
            index += 1


def record_json(record: dict[str, Any]) -> str:
    """One record as JSON, its numbers written digit for digit (never through a float)."""
    numbers = {k: v for k, v in record.items() if isinstance(v, Decimal | int)}
    texts = json.dumps({k: v for k, v in record.items() if k not in numbers})
    return texts[:-1] + "".join(f', "{k}": {v}' for k, v in numbers.items()) + "}"


def render_pages(lines: int, page_size: int, variant: str) -> dict[str, bytes]:
    """cursor ("" for the first) -> the page's bytes."""
    pages: dict[str, bytes] = {}
    batch: list[dict[str, Any]] = []
    chunks: list[list[dict[str, Any]]] = []
    for record in records(lines, variant):
        batch.append(record)
        if len(batch) == page_size:
            chunks.append(batch)
            batch = []
    if batch or not chunks:
        chunks.append(batch)
    for number, chunk in enumerate(chunks):
        cursor = "" if number == 0 else f"c{number:06d}"
        following = f"c{number + 1:06d}" if number + 1 < len(chunks) else None
        meta = {"next_cursor": following, "limit": page_size, "sort": "month", "total": lines}
        data = ",".join(map(record_json, chunk))
        pages[cursor] = f'{{"data":[{data}],"meta":{json.dumps(meta)}}}'.encode()
    return pages


# ---------------------------------------------------------------------------------------------
# The provider: its own process, pages from memory.


def serve(lines: int, page_size: int) -> None:
    from aiohttp import web

    variants = {name: render_pages(lines, page_size, name) for name in VARIANTS}
    current = {"name": "base"}
    empty = json.dumps({"data": [], "meta": {"total": 0}}).encode()

    async def service_usage(request: web.Request) -> web.Response:
        if request.headers.get("Fastly-Key") != TOKEN:
            return web.json_response({"msg": "bad token"}, status=401)
        page = variants[current["name"]].get(request.query.get("cursor", ""))
        if page is None:
            return web.json_response({"msg": "no such cursor"}, status=400)
        return web.Response(body=page, content_type="application/json")

    async def usage(request: web.Request) -> web.Response:
        return web.Response(body=empty, content_type="application/json")

    async def variant(request: web.Request) -> web.Response:
        current["name"] = request.match_info["name"]
        return web.json_response({"variant": current["name"]})

    app = web.Application()
    app.router.add_get(SERVICE_USAGE, service_usage)
    app.router.add_get(USAGE, usage)
    app.router.add_post("/_bench/variant/{name}", variant)

    async def started(app: web.Application) -> None:
        print("ready", flush=True)

    app.on_startup.append(started)
    web.run_app(app, host="127.0.0.1", port=int(os.environ["BENCH_PORT"]), print=None)


class Provider:
    def __init__(self, lines: int, page_size: int) -> None:
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        env = dict(os.environ, BENCH_PORT=str(self.port))
        command = [sys.executable, __file__, "serve", "--lines", str(lines)]
        command += ["--page-size", str(page_size)]
        self.proc = subprocess.Popen(command, env=env, stdout=subprocess.PIPE, text=True)
        assert self.proc.stdout is not None
        if self.proc.stdout.readline().strip() != "ready":
            raise SystemExit("the provider did not start")

    def use(self, name: str) -> None:
        request = urllib.request.Request(f"{self.url}/_bench/variant/{name}", method="POST")
        with urllib.request.urlopen(request) as response:
            response.read()

    def close(self) -> None:
        self.proc.terminate()
        self.proc.wait()


def free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


# ---------------------------------------------------------------------------------------------
# The floor: its own process, nothing but urllib, json and sqlite3.


def floor(url: str, db: Path) -> None:
    conn = sqlite3.connect(db)
    conn.execute("PRAGMA journal_mode=WAL")
    conn.execute("PRAGMA synchronous=NORMAL")
    conn.execute(
        "CREATE TABLE lines (month TEXT, customer_id TEXT, service_id TEXT, service_name TEXT, "
        "product_id TEXT, usage_type TEXT, region TEXT, unit TEXT, quantity TEXT, "
        "raw_quantity TEXT)"
    )
    sql = "INSERT INTO lines VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)"
    months = months_pulled()
    query = f"start_month={months[0]}&end_month={months[-1]}&limit=10000"
    lines, cursor = 0, ""
    while True:
        target = f"{url}{SERVICE_USAGE}?{query}" + (f"&cursor={cursor}" if cursor else "")
        request = urllib.request.Request(target, headers={"Fastly-Key": TOKEN})
        with urllib.request.urlopen(request) as response:
            page = json.loads(response.read(), parse_float=Decimal)
        rows = [
            (
                d["month"],
                d["customer_id"],
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
        conn.executemany(sql, rows)
        lines += len(rows)
        cursor = page["meta"]["next_cursor"]
        if not cursor:
            break
    conn.commit()
    conn.close()
    print(json.dumps({"lines_read": lines, "versions_added": None, "new_lines": None}))


# ---------------------------------------------------------------------------------------------
# Timing whole processes.


@dataclass
class Run:
    backend: str
    lines_asked: int
    name: str
    lines_read: int
    new_lines: int | None
    versions_added: int | None
    seconds: float
    peak_rss_mib: float
    ratio: float | None = None

    @property
    def rate(self) -> float:
        return self.lines_read / self.seconds if self.seconds else 0.0


def timed(command: Sequence[str], env: dict[str, str], work: Path) -> tuple[str, float, float]:
    """(stdout, wall seconds from start to exit, peak RSS MiB) of one process."""
    with (work / "out").open("w+b") as out, (work / "err").open("w+b") as err:
        began = time.perf_counter()
        proc = subprocess.Popen(command, env=env, stdout=out, stderr=err)
        _, status, usage = os.wait4(proc.pid, 0)  # this child's own peak RSS
        seconds = time.perf_counter() - began
        proc.returncode = os.waitstatus_to_exitcode(status)
        out.seek(0)
        err.seek(0)
        if proc.returncode != 0:
            raise SystemExit(
                f"{' '.join(command)} failed ({proc.returncode}):\n{err.read().decode()}"
            )
        return out.read().decode(), seconds, usage.ru_maxrss / 1024  # Linux: KiB


def reconciler_pull(config: Path, env: dict[str, str]) -> dict[str, Any]:
    command = [sys.executable, "-m", "reconciler", "--config", str(config), "pull", "--json"]
    command += ["--as-of", TODAY.isoformat()]
    out, seconds, rss = timed(command, env, config.parent)
    (outcome,) = json.loads(out)
    if not outcome["ok"]:
        raise SystemExit(f"the pull failed: {outcome['error']}")
    return {**outcome, "seconds": seconds, "rss": rss}


def write_config(path: Path, database_url: str, provider_url: str) -> None:
    path.write_text(
        f'[state]\ndatabase_url = "{database_url}"\n\n'
        "[[sources]]\n"
        'name = "fastly"\nprovider = "fastly"\n'
        f'base_url = "{provider_url}"\n'
        f"lookback_months = {MONTHS}\n"
        "invoices = false\n"
    )


def pulls(backend: str, lines: int, provider: Provider, database_url: str, work: Path) -> list[Run]:
    config = work / f"{backend}-{lines}.toml"
    write_config(config, database_url, provider.url)
    env = dict(os.environ, FASTLY_API_TOKEN=TOKEN)
    subprocess.run(
        [sys.executable, "-m", "reconciler", "--config", str(config), "db", "upgrade"],
        env=env,
        cwd=work,  # where the pulls run: the state's marker goes with them
        check=True,
        stdout=subprocess.DEVNULL,
    )
    changed = len(range(0, lines, CHANGED_EVERY))
    expected = {  # run: (variant, new lines, versions added)
        "first pull": ("base", lines, lines),
        "unchanged re-pull": ("base", 0, 0),
        "latest month changed": ("latest", 0, latest_month_lines(lines)),
        "1% changed": ("changed", 0, changed),
    }
    runs = []
    for name, (variant, new_lines, versions) in expected.items():
        provider.use(variant)
        o = reconciler_pull(config, env)
        run = Run(
            backend,
            lines,
            name,
            o["lines_read"],
            o["new_lines"],
            o["versions_added"],
            o["seconds"],
            o["rss"],
        )
        runs.append(run)
        print(f"  {backend} {name}: {run.lines_read:,} lines in {run.seconds:.2f}s", flush=True)
        got = (run.lines_read, run.new_lines, run.versions_added)
        if got != (lines, new_lines, versions):
            raise SystemExit(
                f"FAIL: {backend} {name} read {got[0]} lines, added {got[1]} lines and "
                f"{got[2]} versions; expected {lines}, {new_lines} and {versions}"
            )
    provider.use("base")
    return runs


def floor_run(lines: int, provider: Provider, work: Path) -> Run:
    db = work / f"floor-{lines}.db"
    command = [sys.executable, __file__, "floor", "--url", provider.url, "--db", str(db)]
    out, seconds, rss = timed(command, dict(os.environ), work)
    got = json.loads(out)["lines_read"]
    if got != lines:
        raise SystemExit(f"FAIL: the floor read {got} lines, expected {lines}")
    return Run("sqlite", lines, "floor", got, None, None, seconds, rss, 1.0)


def postgres_database(admin_url: str) -> tuple[str, str]:
    """(a fresh database's URL, a plain URL of the server) for the PostgreSQL case."""
    from sqlalchemy.engine import make_url

    admin = make_url(admin_url)
    name = f"reconciler_bench_{uuid.uuid4().hex[:8]}"
    plain = admin.set(drivername="postgresql").render_as_string(hide_password=False)
    _pg(plain, f'CREATE DATABASE "{name}"')
    return admin.set(database=name).render_as_string(hide_password=False), plain


def _pg(plain_url: str, statement: str) -> None:
    import asyncio

    import asyncpg

    async def run() -> None:
        conn = await asyncpg.connect(plain_url)
        try:
            await conn.execute(statement)
        finally:
            await conn.close()

    asyncio.run(run())


def benchmark(args: argparse.Namespace, work: Path) -> list[Run]:
    runs: list[Run] = []
    for lines in args.lines:
        print(f"rendering {lines:,} lines x 2 variants ...", flush=True)
        provider = Provider(lines, args.page_size)
        try:
            base = floor_run(lines, provider, work)
            print(f"  floor: {lines:,} lines in {base.seconds:.2f}s", flush=True)
            found = pulls(
                "sqlite", lines, provider, f"sqlite+aiosqlite:///{work}/state-{lines}.db", work
            )
            if args.postgres:
                url, plain = postgres_database(args.postgres)
                try:
                    found += pulls("postgresql", lines, provider, url, work)
                finally:
                    name = url.rsplit("/", 1)[1]
                    _pg(plain, f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        finally:
            provider.close()
        for run in found:
            run.ratio = run.rate / base.rate
        runs += [base, *found]
    return runs


def table(runs: Sequence[Run]) -> str:
    head = (
        "| backend | lines | run | seconds | lines/s | ratio to floor | versions added "
        "| peak RSS MiB |"
    )
    out = [head, "|---|---:|---|---:|---:|---:|---:|---:|"]
    for r in runs:
        versions = "" if r.versions_added is None else f"{r.versions_added:,}"
        ratio = "" if r.ratio is None else f"{r.ratio:.2f}"
        out.append(
            f"| {r.backend} | {r.lines_asked:,} | {r.name} | {r.seconds:.2f} | {r.rate:,.0f} "
            f"| {ratio} | {versions} | {r.peak_rss_mib:.0f} |"
        )
    return "\n".join(out)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    sub = parser.add_subparsers(dest="role")
    server = sub.add_parser("serve", help="(internal) the in-memory provider")
    server.add_argument("--lines", type=int, required=True)
    server.add_argument("--page-size", type=int, required=True)
    low = sub.add_parser("floor", help="(internal) the floor's own process")
    low.add_argument("--url", required=True)
    low.add_argument("--db", type=Path, required=True)
    parser.add_argument("--lines", type=int, nargs="+", default=[200_000, 1_000_000])
    parser.add_argument("--page-size", type=int, default=10_000, help="lines per page (<= 10000)")
    parser.add_argument("--quick", action="store_true", help="3,000 lines in pages of 500")
    parser.add_argument("--postgres", metavar="URL", help="also pull into PostgreSQL here")
    parser.add_argument("--json", type=Path, help="write the runs here as JSON too")
    args = parser.parse_args(argv)
    if args.role == "serve":
        serve(args.lines, args.page_size)
        return 0
    if args.role == "floor":
        floor(args.url, args.db)
        return 0
    if args.quick:
        args.lines, args.page_size = [3_000], 500
    with tempfile.TemporaryDirectory(prefix="reconciler-ingest-") as work:
        runs = benchmark(args, Path(work))
    print()
    print(table(runs))
    if args.json:
        args.json.write_text(json.dumps([asdict(r) for r in runs], indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
