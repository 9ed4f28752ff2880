"""Concurrency: several daemons on one PostgreSQL database; every slot pulled exactly once.

A fresh database is created on the server and dropped at the end. ``daemons`` processes of
``reconciler run`` start together on it (so they also race to migrate it), each configured
with the same three sources pulled every 6 seconds (checks jittered, as in production, so the
daemons race for each slot), and run for ``seconds``. Halfway through, the first daemon is
killed with SIGKILL while it holds a slot it has just claimed: another daemon must take that
slot over once the lease expires. Then, from the database: no slot succeeded twice, no two runs
of a slot overlapped, every slot inside the window was pulled, and the stored lines agree with
their versions; and the surviving daemons logged no error.
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

from chaos_support import Results, log_errors, sandbox, start_daemon, stop_process
from sqlalchemy.engine import make_url

from reconciler.cli.setup_cmds import to_toml

SECTION = "concurrency"
TODAY = date(2024, 7, 10)
# A dead holder's slot is taken over within the slot when its lease expires early enough:
# the daemon is killed within a second of its slot's start, its lease runs out 1.5s after its
# last renewal, and each survivor checks every 3s (half of pull_every).
PULL_EVERY_S = 6
LEASE_TTL_S = 1.5
KILL_WITHIN_S = 1.0


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
    results: Results,
    work: Path,
    *,
    daemons: int,
    seconds: float,
    admin: str,
    missed_fails: bool = True,
) -> None:
    """``missed_fails``: a slot nobody pulled is a FAIL. The quick run (in the test suite)
    reports missed slots without failing on them: whether a 6-second slot is reached on a
    loaded machine measures the machine; pulling a slot twice, or two runs overlapping, is a
    broken promise however slow the machine is."""
    try:
        url = await create_database(admin)
    except Exception as exc:
        results.add(SECTION, "PostgreSQL", f"unreachable at {make_url(admin)}: {exc}", False)
        return
    try:
        async with sandbox({}, today=TODAY.isoformat()) as box:
            edgerc = box.write_edgerc(work / "sandbox.edgerc")
            procs = []
            for n in range(1, daemons + 1):
                config = work / f"d{n}.toml"
                write_config(config, url, box.base_url, edgerc, f"chaos-d{n}")
                log = work / f"d{n}.log"
                procs.append(
                    await start_daemon(config, box.base_url, log, FASTLY_API_TOKEN=box.fastly_token)
                )
            try:
                async with asyncio.timeout(120):  # they migrate the empty database first
                    await _all_started(work, daemons)
                # Slow Akamai pulls (about 2s): a daemon holds its slot for a while.
                await box.add_faults({"kind": "latency", "latency_ms": 700, "endpoint": "akamai"})
                await asyncio.sleep(seconds / 2)
                held = await _holding(url, "chaos-d1", timeout_s=4 * PULL_EVERY_S)
                procs[0].send_signal(signal.SIGKILL)  # dies holding that slot
                await procs[0].wait()
                # Long enough for its leases to expire and its slots to be taken over.
                await asyncio.sleep(max(seconds / 2, LEASE_TTL_S + 2 * PULL_EVERY_S))
            finally:
                codes = [await stop_process(p, timeout_s=60) for p in procs]
        await _check(results, url, daemons, seconds, codes, held, missed_fails=missed_fails)
        errors = [e for n in range(2, daemons + 1) for e in log_errors(work / f"d{n}.log")]
        results.add(
            SECTION,
            "logs of the surviving daemons",
            f"{len(errors)} ERROR lines or tracebacks",
            not errors,
            "; ".join(errors[:2]),
        )
    finally:
        await drop_database(admin, url)


async def _holding(url: str, instance: str, *, timeout_s: float) -> str | None:
    """A slot ``instance`` holds that began under KILL_WITHIN_S ago (waiting up to
    ``timeout_s`` for one), or None."""
    query = (
        "SELECT slot FROM job_leases WHERE holder = $1 AND completed_at IS NULL "
        "AND expires_at > now() AND slot LIKE 'pull:%'"
    )
    try:
        async with asyncio.timeout(timeout_s):
            while True:  # polls the database: nothing to wait on but time
                now = datetime.now(UTC)
                for row in await fetch(url, query, instance):
                    if (now - _slot_start(row["slot"])).total_seconds() < KILL_WITHIN_S:
                        return str(row["slot"])
                await asyncio.sleep(0.05)
    except TimeoutError:
        return None


def _slot_start(slot: str) -> datetime:
    stamp = slot.rsplit(":", 1)[1]
    return datetime.strptime(stamp, "%Y%m%dT%H%M%SZ").replace(tzinfo=UTC)


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
    seconds: float,
    codes: list[int],
    held: str | None,
    *,
    missed_fails: bool,
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
    missed = _missed(by_slot)
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
    ok = succeeded > 0 and not twice and not overlapping and not inconsistent
    ok = ok and not (missed and missed_fails)
    results.add(
        SECTION,
        f"{daemons} daemons, one PostgreSQL database, {seconds:.0f}s",
        f"{len(by_slot)} slots ({PULL_EVERY_S}s, 3 sources): {succeeded} pulled once, "
        f"{len(twice)} twice, {len(overlapping)} overlapping, {len(missed)} missed inside the "
        f"window, {retried} retried after a failure or a dead holder; pulls by daemon: {by}; "
        f"{len(leases)} lease rows",
        ok,
        f"twice {twice[:2]} overlapping {overlapping[:2]} missed {missed[:3]}",
    )
    taken = _taken_over(by_slot, held)
    results.add(
        SECTION,
        "SIGKILL of a daemon holding a slot",
        (f"d1 killed holding {held.split(':', 1)[1]}: " if held else "d1 killed holding none; ")
        + (f"pulled afterwards by {taken}; " if held else "")
        + f"exit codes {codes}; lines whose version count disagrees with line_versions: "
        f"{inconsistent}",
        codes[0] == -signal.SIGKILL
        and all(c == 0 for c in codes[1:])
        and not inconsistent
        and (held is None or taken != "nobody"),
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


def _missed(by_slot: dict[tuple[str, str], list[Any]]) -> list[tuple[str, str]]:
    """Slots of each source between its first and last pulled slot that nobody pulled."""

    missed = []
    stamps: dict[str, list[datetime]] = defaultdict(list)
    for source, slot in by_slot:
        stamps[source].append(_slot_start(slot))
    for source, times in stamps.items():
        times.sort()
        expected = times[0]
        while expected < times[-1]:
            if expected not in times:
                missed.append((source, expected.isoformat()))
            expected += timedelta(seconds=PULL_EVERY_S)
    pulled = {k for k, rs in by_slot.items() if any(r["status"] == "succeeded" for r in rs)}
    missed += [k for k in by_slot if k not in pulled]
    return missed
