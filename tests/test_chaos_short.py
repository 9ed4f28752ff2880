"""The short chaos run: ``benchmarks/chaos.py --quick``, every section at a small scale.

The script exits 1 if any promise is broken (a FAIL row): a SIGKILLed pull that changed the
state, a faulty provider run that stored wrong data or failed without a clear message, a lost
or duplicated alert (a real full disk included), a daemon that would have been killed by its
watchdog, a slot pulled twice or not at all. Nothing in it waits for a real-time window:
kills land on requests the sandbox holds, and the daemons' slots follow the sandbox's
schedule clock. Three processes share the work, to keep the test short: the kills and the
full disk, the daemons on PostgreSQL (both mostly waiting for their subprocesses), and the
faults, outage and load.
"""

from __future__ import annotations

import asyncio
import os
import sys
from pathlib import Path

import pytest

from tests.conftest import DEFAULT_PG_URL, _postgres_required

CHAOS = Path(__file__).resolve().parent.parent / "benchmarks" / "chaos.py"
TIMEOUT_S = 300
KILL_ROW = "SIGKILL of a daemon holding a slot"


async def chaos(*args: str) -> tuple[int, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("RECONCILER_")}
    proc = await asyncio.create_subprocess_exec(
        sys.executable,
        str(CHAOS),
        "--quick",
        *args,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.STDOUT,
        env=env,
    )
    try:
        async with asyncio.timeout(TIMEOUT_S):
            out, _ = await proc.communicate()
    finally:
        if proc.returncode is None:
            proc.kill()
            await proc.wait()
    return proc.returncode or 0, out.decode()


def table_rows(output: str) -> dict[tuple[str, str], tuple[str, str]]:
    """(section, case) → (figures, check) from the final table."""
    rows = {}
    for line in output.splitlines():
        cells = [c.strip() for c in line.strip().strip("|").split("|")]
        if line.startswith("| ") and len(cells) == 4 and cells[0] != "section":
            rows[(cells[0], cells[1])] = (cells[2], cells[3])
    return rows


async def postgres_reachable(url: str) -> bool:
    import asyncpg
    from sqlalchemy.engine import make_url

    dsn = make_url(url).set(drivername="postgresql").render_as_string(hide_password=False)
    try:
        conn = await asyncpg.connect(dsn, timeout=5)
    except Exception:
        return False
    await conn.close()
    return True


@pytest.mark.slow
async def test_a_quick_chaos_run_keeps_every_promise() -> None:
    pg_url = os.environ.get("RECONCILER_TEST_POSTGRES_URL", DEFAULT_PG_URL)
    with_postgres = await postgres_reachable(pg_url) or _postgres_required()
    runs = [chaos("--sections", "kills,disk"), chaos("--sections", "faults,outage,load")]
    if with_postgres:
        runs.append(chaos("--sections", "concurrency", "--postgres", pg_url))

    finished = await asyncio.gather(*runs)

    rows = {}
    for code, output in finished:
        assert code == 0, output
        rows.update(table_rows(output))
    assert rows
    assert all(check == "ok" for _, check in rows.values())
    landed = {case for section, case in rows if section == "kills"}
    assert {"killed during fetch", "killed during staging", "killed during commit"} <= landed
    # Held inside its reconcile transaction by the fault point: the kill lands there each time.
    commit_kills = rows[("kills", "killed during commit")][0]
    assert "1 SIGKILL (1 aimed at commit); 1 inside the open apply transaction" in commit_kills
    faults = {case for section, case in rows if section == "faults"}
    assert len(faults) == 28  # 27 (provider, fault) pairs at one rate, and the total
    assert "0 with wrong data" in rows[("faults", "all faults")][0]
    assert "0 duplicates, 0 lost, 0 rejected" in rows[("outage", "after recovery")][0]
    assert "received == queued, in order: yes" in rows[("outage", "after recovery")][0]
    assert (
        "0 repeats while the deliverer lived, 1 labelled repeat"
        in (rows[("disk", "full disk as Slack accepts")][0])
    )
    assert ("load", "memory") in rows
    assert ("load", "longest event-loop stall") in rows  # measured in the daemon
    if with_postgres:
        concurrency = [f for (s, _), (f, _) in rows.items() if s == "concurrency"]
        # Exactly once, every slot: the schedule clock waits for each slot to be pulled, so a
        # missed slot is a broken promise, not a slow machine.
        strict = " pulled once, 0 twice, 0 overlapping, 0 missed, 0 outside the stepped ones"
        assert any(strict in f for f in concurrency), concurrency
        [kill] = [f for (s, c), (f, _) in rows.items() if (s, c) == ("concurrency", KILL_ROW)]
        assert " killed holding akamai:" in kill and "pulled afterwards by d" in kill
