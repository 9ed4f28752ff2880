"""Reliability figures from real runs: kills, provider faults, a Slack outage, load, concurrency.

Everything runs for real on loopback: the provider sandbox in its own process, ``reconciler
pull`` and ``reconciler run`` as processes, SQLite files and a PostgreSQL database, the Slack
stand-in. Each section prints its rows as it goes; one table of figures comes at the end.
The script exits 1 if any promise was broken (a row marked FAIL).

- kills: ``reconciler pull`` killed with SIGKILL during fetch, staging and the commit;
- faults: every sandbox fault at several rates against both providers;
- outage: minutes of Slack 500s and 429s while pulls raise findings;
- disk: Slack accepts a message the instant a real (tmpfs) disk fills: no duplicate while
  the deliverer lives, a labelled repeat after it dies;
- load: many sources and a million lines pulled by one daemon, watched by a watchdog (the
  longest event-loop stall is printed); then many pulls over simulated weeks with
  housekeeping's purge, showing the run rows level off;
- concurrency: several daemons on one PostgreSQL database.

    .venv/bin/python benchmarks/chaos.py                 # the full run (about 25 min, 2 cores)
    .venv/bin/python benchmarks/chaos.py --quick         # every section, small (under a minute)
    .venv/bin/python benchmarks/chaos.py --sections kills,faults --kills 40
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import os
import shutil
import sys
import tempfile
import time
from pathlib import Path

from chaos_support import Results

SECTIONS = ("kills", "faults", "outage", "disk", "load", "concurrency")
DEFAULT_PG = "postgresql+asyncpg://postgres@127.0.0.1:5432/postgres"


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="every section at a small scale")
    parser.add_argument("--sections", default=",".join(SECTIONS), help="comma-separated")
    parser.add_argument("--seed", type=int, default=1, help="random seed of kills and faults")
    parser.add_argument("--kills", type=int, help="SIGKILLed pulls (default 24; quick 3)")
    parser.add_argument(
        "--kill-services", type=int, help="Fastly services in the kill runs (default 2800)"
    )
    parser.add_argument("--fault-runs", type=int, help="runs per fault, rate, provider (def. 4)")
    parser.add_argument("--rates", help="fault rates, comma-separated (default 0.1,0.5)")
    parser.add_argument("--outage-minutes", type=int, help="simulated outage (default 30)")
    parser.add_argument(
        "--load-months", type=int, help="months of the large Fastly account (default 18: 1M lines)"
    )
    parser.add_argument("--load-akamai", type=int, help="Akamai sources under load (default 20)")
    parser.add_argument("--watchdog-s", type=float, default=2.0, help="WATCHDOG_USEC, in seconds")
    parser.add_argument("--daemons", type=int, help="daemons sharing PostgreSQL (default 3)")
    parser.add_argument("--slots", type=int, help="6-second slots the daemons pull (default 8)")
    parser.add_argument(
        "--postgres",
        default=os.environ.get("RECONCILER_CHAOS_POSTGRES_URL", DEFAULT_PG),
        help="a PostgreSQL server URL; a fresh database is created on it and dropped",
    )
    parser.add_argument("--keep", action="store_true", help="keep the work directory")
    args = parser.parse_args(argv)
    quick = args.quick

    def pick(value: object, full: object, small: object) -> object:
        return value if value is not None else (small if quick else full)

    args.kills = pick(args.kills, 24, 3)
    args.kill_services = pick(args.kill_services, 2800, 510)  # 510: two service pages
    args.fault_runs = pick(args.fault_runs, 4, 1)
    args.rates = [float(r) for r in str(pick(args.rates, "0.1,0.5", "0.5")).split(",")]
    args.outage_minutes = pick(args.outage_minutes, 30, 4)
    args.load_months = pick(args.load_months, 18, 1)
    args.load_akamai = pick(args.load_akamai, 20, 3)
    args.daemons = pick(args.daemons, 3, 2)
    args.slots = pick(args.slots, 8, 3)
    args.sections = [s for s in args.sections.split(",") if s]
    unknown = sorted(set(args.sections) - set(SECTIONS))
    if unknown:
        parser.error(f"unknown section(s): {', '.join(unknown)}")
    return args


async def run(args: argparse.Namespace, work: Path) -> Results:
    results = Results()
    for section in args.sections:
        began = time.monotonic()
        print(f"== {section}", flush=True)
        folder = work / section
        folder.mkdir()
        try:
            await run_section(section, args, results, folder)
        except Exception as exc:  # a section that cannot run is a failed row, not a traceback
            results.add(section, "section", f"{type(exc).__name__}: {exc}", False, "crashed")
        print(f"   ({time.monotonic() - began:.0f}s)", flush=True)
    return results


async def run_section(section: str, args: argparse.Namespace, results: Results, work: Path) -> None:
    if section == "kills":
        from chaos_kills import run_kills

        await run_kills(
            results,
            work,
            kills=args.kills,
            services=args.kill_services,
            seed=args.seed,
            grow=not args.quick,  # quick: a few changed lines, not a new day for every line
        )
    elif section == "faults":
        from chaos_faults import run_faults

        await run_faults(
            results, work, runs=args.fault_runs, rates=args.rates, seed=args.seed, fast=args.quick
        )
    elif section == "outage":
        from chaos_outage import run_outage

        await run_outage(results, work, minutes=args.outage_minutes)
    elif section == "disk":
        from chaos_disk import run_disk

        await run_disk(results, work)
    elif section == "load":
        from chaos_load import run_load

        await run_load(
            results,
            work,
            months=args.load_months,
            akamai_sources=args.load_akamai,
            watchdog_s=args.watchdog_s,
            quick=args.quick,
        )
        from chaos_retention import run_retention

        await run_retention(
            results, work, days=8 if args.quick else 60, keep_days=2 if args.quick else 14
        )
    elif section == "concurrency":
        from chaos_concurrency import run_concurrency

        await run_concurrency(
            results,
            work,
            daemons=args.daemons,
            slots=args.slots,
            admin=args.postgres,
        )


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    # Pulls run in this process too: their retry and failure logs would drown the rows
    # (what they say is counted and quoted in the table).
    logging.getLogger().addHandler(logging.NullHandler())
    work = Path(tempfile.mkdtemp(prefix="reconciler-chaos-"))
    began = time.monotonic()
    try:
        results = asyncio.run(run(args, work))
    finally:
        if args.keep:
            print(f"kept {work}")
        else:
            shutil.rmtree(work, ignore_errors=True)
    print()
    print(f"reconciler chaos: {' '.join(sys.argv[1:]) or '(full run)'}")
    print(results.table())
    failed = results.failures
    print(
        f"\n{len(results.rows)} rows, {len(failed)} failed, {time.monotonic() - began:.0f}s"
        + ("" if not failed else ": " + "; ".join(f"{r.section}/{r.case}" for r in failed))
    )
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
