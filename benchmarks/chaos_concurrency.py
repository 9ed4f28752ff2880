"""Concurrency: several daemons on one PostgreSQL database; every slot pulled exactly once.

A fresh database is created on the server and dropped at the end. ``daemons`` processes of
``reconciler run`` start together on it (so they also race to migrate it), each configured
with the same three sources pulled every 6 seconds (checks jittered, as in production, so the
daemons race for each slot). Their slots and leases are timed by the sandbox's schedule
clock (``--sandbox-clock``), which this script steps one slot at a time once every source's
slot is pulled, so a slow machine makes the run slower, never a slot missed. In the middle
slot the first Akamai request hangs: the daemon that claimed that slot is killed with SIGKILL
while it holds it, the clock moves past the lease (still inside the slot), and another
daemon must take the slot over. Then, from the database: every stepped slot was pulled, none
twice, no two runs of a slot overlapped, and the stored lines agree with their versions; and
the surviving daemons logged no error.
"""

from __future__ import annotations

import asyncio
import itertools
import signal
import uuid
from collections import Counter, defaultdict
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any

from chaos_support import Results, Sandbox, log_errors, sandbox, start_daemon, stop_process
from sqlalchemy.engine import make_url

from reconciler.cli.setup_cmds import to_toml
from reconciler.daemon.leases import slot_name, slot_start

SECTION = "concurrency"
TODAY = date(2024, 7, 10)
SOURCES = ("fastly-a", "fastly-b", "akamai")
PULL_EVERY_S = 6
LEASE_TTL_S = 1.5
# How long one slot may take to be pulled, in real time, before it counts as missed: far
# beyond what three small pulls need on a loaded machine. The schedule clock waits for them.
SLOT_DEADLINE_S = 180


def _dsn(url: str) -> str:
    return make_url(url).set(drivername="postgresql").render_as_string(hide_password=False)


async def create_database(admin: str) -> str:
    import asyncpg

    name = f"reconciler_chaos_{uuid.uuid4().hex[:10]}"
    conn = await asyncpg.connect(_dsn(admin), timeout=10)
    try:
        await conn.execute(f'CREATE DATABASE "{name}"')
    finally:
        await conn.close()
    return make_url(admin).set(database=name).render_as_string(hide_password=False)


async def drop_database(admin: str, url: str) -> None:
    import asyncpg

    conn = await asyncpg.connect(_dsn(admin), timeout=10)
    try:
        await conn.execute(f'DROP DATABASE IF EXISTS "{make_url(url).database}" WITH (FORCE)')
    finally:
        await conn.close()


async def fetch(url: str, query: str, *args: Any) -> list[Any]:
    import asyncpg

    conn = await asyncpg.connect(_dsn(url), timeout=10)
    try:
        return list(await conn.fetch(query, *args))
    finally:
        await conn.close()


def write_config(path: Path, url: str, base_url: str, edgerc: Path, instance: str) -> None:
    every = f"{PULL_EVERY_S}s"
    common = {"base_url": base_url, "lookback_months": 2, "pull_every": every, "max_retries": 1}
    data = {
        "state": {"database_url": url, "directory": str(path.parent / instance)},
        "daemon": {
            "listen": "",
            "jitter_s": PULL_EVERY_S / 4,  # checks race instead of one daemon always first
            "first_pull_delay_s": 0,
            "alert_every_s": 1,
            "lease_ttl_s": LEASE_TTL_S,
            "stop_timeout_s": 10,
            "instance": instance,
        },
        "sources": [
            {"name": "fastly-a", "provider": "fastly", **common},
            {"name": "fastly-b", "provider": "fastly", **common},
            {"name": "akamai", "provider": "akamai", "edgerc": str(edgerc), **common},
        ],
    }
    path.write_text(to_toml(data))


async def run_concurrency(
    results: Results, work: Path, *, daemons: int, slots: int, admin: str
) -> None:
    try:
        url = await create_database(admin)
    except Exception as exc:
        results.add(SECTION, "PostgreSQL", f"unreachable at {make_url(admin)}: {exc}", False)
        return
    try:
        async with sandbox({}, today=TODAY.isoformat()) as box:
            # Near the machine's time (housekeeping purges leases by it), on a slot boundary.
            every = timedelta(seconds=PULL_EVERY_S)
            first = slot_start(datetime.now(UTC), every) + 10 * every
            await box.call("POST", "clock", {"now": first.isoformat()})
            edgerc = box.write_edgerc(work / "sandbox.edgerc")
            procs = []
            for n in range(1, daemons + 1):
                config = work / f"d{n}.toml"
                write_config(config, url, box.base_url, edgerc, f"chaos-d{n}")
                log = work / f"d{n}.log"
                procs.append(
                    await start_daemon(config, box.base_url, log, FASTLY_API_TOKEN=box.fastly_token)
                )
            stepped: list[datetime] = []
            missed: list[tuple[str, str]] = []
            killed: tuple[int, str] | None = None
            try:
                async with asyncio.timeout(120):  # they migrate the empty database first
                    await _all_started(work, daemons)
                for index in range(slots):
                    start = first + index * every
                    kill = index == slots // 2
                    if kill:  # before the slot begins: its claimant's first request hangs
                        await box.add_faults({"kind": "hang", "endpoint": "akamai", "count": 1})
                    if index:
                        await box.call("POST", "clock", {"now": start.isoformat()})
                    stepped.append(start)
                    if kill:
                        killed = await _kill_a_holder(box, url, procs, start)
                    missed += await _wait_pulled(url, start, every)
            finally:
                codes = [await stop_process(p, timeout_s=60) for p in procs]
        await _check(results, url, daemons, stepped, missed, codes, killed)
        survivors = [n for n in range(1, daemons + 1) if killed is None or n != killed[0] + 1]
        errors = [e for n in survivors for e in log_errors(work / f"d{n}.log")]
        results.add(
            SECTION,
            "logs of the surviving daemons",
            f"{len(errors)} ERROR lines or tracebacks",
            not errors,
            "; ".join(errors[:2]),
        )
    finally:
        await drop_database(admin, url)


async def _kill_a_holder(
    box: Sandbox, url: str, procs: list[Any], start: datetime
) -> tuple[int, str] | None:
    """In the slot at ``start``, the first Akamai request hangs: SIGKILL the daemon that
    holds that slot, then move the clock past its lease (staying inside the slot). The
    killed daemon's index and the slot."""
    slot = slot_name("pull", "akamai", start, timedelta(seconds=PULL_EVERY_S))
    holder = await _holder(url, slot)
    if holder is None:
        return None
    index = int(holder.removeprefix("chaos-d")) - 1
    procs[index].send_signal(signal.SIGKILL)  # dies holding the slot
    await procs[index].wait()
    await box.call("POST", "clock", {"advance_seconds": LEASE_TTL_S + 0.5})
    return index, slot


async def _holder(url: str, slot: str) -> str | None:
    """The daemon holding ``slot`` with its pull stuck on the hung request."""
    query = (
        "SELECT l.holder FROM job_leases l JOIN pull_runs r ON r.slot = l.slot "
        "AND r.instance = l.holder WHERE l.slot = $1 AND l.completed_at IS NULL "
        "AND r.status = 'running'"
    )
    try:
        async with asyncio.timeout(SLOT_DEADLINE_S):
            while True:  # polls the database: the daemons report nothing else
                rows = await fetch(url, query, slot)
                if rows:
                    return str(rows[0]["holder"])
                await asyncio.sleep(0.1)
    except TimeoutError:
        return None


async def _wait_pulled(url: str, start: datetime, every: timedelta) -> list[tuple[str, str]]:
    """Until every source's slot at ``start`` has a successful run; the ones that have none
    after SLOT_DEADLINE_S."""
    names = {slot_name("pull", source, start, every): source for source in SOURCES}
    query = "SELECT DISTINCT slot FROM pull_runs WHERE status = 'succeeded' AND slot = ANY($1)"
    try:
        async with asyncio.timeout(SLOT_DEADLINE_S):
            while True:  # polls the database: the daemons report nothing else
                done = {row["slot"] for row in await fetch(url, query, list(names))}
                if done == set(names):
                    return []
                await asyncio.sleep(0.1)
    except TimeoutError:
        done = {row["slot"] for row in await fetch(url, query, list(names))}
        return [(source, name) for name, source in names.items() if name not in done]


async def _all_started(work: Path, daemons: int) -> None:
    logs = [work / f"d{n}.log" for n in range(1, daemons + 1)]
    while True:  # polls log files: nothing to wait on but time
        if all(" started: " in log.read_text() for log in logs):
            return
        await asyncio.sleep(0.2)


async def _check(
    results: Results,
    url: str,
    daemons: int,
    stepped: list[datetime],
    missed: list[tuple[str, str]],
    codes: list[int],
    killed: tuple[int, str] | None,
) -> None:
    runs = await fetch(
        url,
        "SELECT source, slot, status, instance, started_at, finished_at FROM pull_runs "
        "WHERE slot IS NOT NULL ORDER BY started_at",
    )
    by_slot: dict[tuple[str, str], list[Any]] = defaultdict(list)
    for run in runs:
        by_slot[(run["source"], run["slot"])].append(run)
    twice = [k for k, rs in by_slot.items() if sum(r["status"] == "succeeded" for r in rs) > 1]
    overlapping = [k for k, rs in by_slot.items() if _overlap(rs)]
    retried = sum(1 for rs in by_slot.values() if len(rs) > 1)
    every = timedelta(seconds=PULL_EVERY_S)
    expected = {(s, slot_name("pull", s, start, every)) for start in stepped for s in SOURCES}
    unexpected = sorted(set(by_slot) - expected)
    pulls_by = Counter(r["instance"] for r in runs if r["status"] == "succeeded")
    by = ", ".join(f"{name.removeprefix('chaos-')} {n}" for name, n in sorted(pulls_by.items()))
    leases = await fetch(url, "SELECT slot, count(*) AS n FROM job_leases GROUP BY slot")
    consistency = await fetch(
        url,
        "SELECT count(*) AS n FROM usage_lines u WHERE u.versions != "
        "(SELECT count(*) FROM line_versions v WHERE v.line_id = u.id)",
    )
    inconsistent = int(consistency[0]["n"])
    succeeded = sum(1 for rs in by_slot.values() if any(r["status"] == "succeeded" for r in rs))
    results.add(
        SECTION,
        f"{daemons} daemons, one PostgreSQL database, {len(stepped)} slots",
        f"{len(expected)} slots ({PULL_EVERY_S}s, {len(SOURCES)} sources) stepped by the "
        f"schedule clock: {succeeded} pulled once, {len(twice)} twice, {len(overlapping)} "
        f"overlapping, {len(missed)} missed, {len(unexpected)} outside the stepped ones, "
        f"{retried} retried after a failure or a dead holder; pulls by daemon: {by}; "
        f"{len(leases)} lease rows",
        succeeded == len(expected)
        and not (twice or overlapping or missed or unexpected)
        and not inconsistent,
        f"twice {twice[:2]} overlapping {overlapping[:2]} missed {missed[:3]} "
        f"unexpected {unexpected[:2]}",
    )
    held = killed[1] if killed else None
    taken = _taken_over(by_slot, held)
    dead = f"d{killed[0] + 1}" if killed else "none"
    results.add(
        SECTION,
        "SIGKILL of a daemon holding a slot",
        (f"{dead} killed holding {held.split(':', 1)[1]}: " if held else "no holder found; ")
        + (f"pulled afterwards by {taken}; " if held else "")
        + f"exit codes {codes}; lines whose version count disagrees with line_versions: "
        f"{inconsistent}",
        killed is not None
        and codes[killed[0]] == -signal.SIGKILL
        and all(c == 0 for n, c in enumerate(codes) if n != killed[0])
        and not inconsistent
        and taken not in ("nobody", dead),
    )


def _taken_over(by_slot: dict[tuple[str, str], list[Any]], held: str | None) -> str:
    """Which daemon pulled the slot the killed one held, once its lease expired."""
    if held is None:
        return "nobody"
    source = held.split(":")[1]
    runs = by_slot.get((source, held), [])
    done = [r["instance"] for r in runs if r["status"] == "succeeded"]
    return done[0].removeprefix("chaos-") if done else "nobody"


def _overlap(runs: list[Any]) -> bool:
    spans = sorted((r["started_at"], r["finished_at"]) for r in runs if r["finished_at"])
    return any(b[0] < a[1] for a, b in itertools.pairwise(spans))
