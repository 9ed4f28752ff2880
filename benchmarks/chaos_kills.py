"""Kills: ``reconciler pull`` processes killed with SIGKILL during fetch, staging and commit.

Each round moves the sandbox to the next simulated day (every collecting line grows, and one
service's bandwidth halves: a ``decreased`` drift item), so the killed pull had real changes
to make. The kill lands in its phase:

- fetch: the first request (invoices) hangs; killed while it hangs, before any line is
  staged;
- staging: the first service page hangs; killed while it hangs, once the account lines are
  staged;
- commit: the pull holds its reconcile transaction open, everything written, just before it
  commits (the test-only fault point ``RECONCILER_TEST_HOLD_BEFORE_COMMIT``); killed there,
  every time, with the write lock still held;
- random: killed a random time after the process started.

After each kill: ``PRAGMA integrity_check`` is ok, the tracked tables hash to what they were
before the pull, no row names the killed run, and the next pull completes and records the
day's changes.
"""

from __future__ import annotations

import asyncio
import contextlib
import random
import signal
import sqlite3
import sys
import time
from collections import Counter
from dataclasses import dataclass, field
from datetime import date, timedelta
from pathlib import Path
from typing import Any

from chaos_support import (
    Results,
    Sandbox,
    child_env,
    connect,
    integrity,
    sandbox,
    scalar,
    state_digest,
    traces_of_run,
)

from reconciler.cli.setup_cmds import to_toml
from reconciler.store.fault_point import HOLD_BEFORE_COMMIT_ENV

SECTION = "kills"
PHASES = ("fetch", "staging", "commit", "random")
CASES = {
    "startup": "killed during startup",
    "fetch": "killed during fetch",
    "staging": "killed during staging",
    "commit": "killed during commit",
    "after commit": "killed after its commit",
    "exited first": "finished before the kill",
}
POLL_S = 0.005
HUNG = {"fetch": "fastly.invoices", "staging": "fastly.service_usage_metrics"}
FIRST_DAY = date(2024, 7, 1)


@dataclass
class Timeline:
    """When a pull reached each point (seconds since the process started)."""

    run_id: int | None = None
    run_seen_s: float | None = None
    staged_full_s: float | None = None
    succeeded_s: float | None = None  # when the commit became visible
    finished_s: float | None = None  # when the process exited
    status: str | None = None

    @property
    def commit_s(self) -> float:
        if self.staged_full_s is None or self.succeeded_s is None:
            return 0.0
        return max(self.succeeded_s - self.staged_full_s, 0.0)


@dataclass
class KillOutcome:
    planned: str
    landed: str
    staged: int
    in_transaction: bool
    run_id: int | None = None
    problems: list[str] = field(default_factory=list)


def write_locked(db: Path) -> bool:
    """True while another connection holds the write lock (the apply transaction)."""
    conn = sqlite3.connect(db, timeout=0, isolation_level=None)
    try:
        conn.execute("BEGIN IMMEDIATE")
        conn.execute("ROLLBACK")
        return False
    except sqlite3.OperationalError:
        return True
    finally:
        conn.close()


class Watch:
    """Polls the state file for the newest run after ``after_id``: its status and staging."""

    def __init__(self, db: Path, after_id: int) -> None:
        self.conn = connect(db)
        self.after_id = after_id
        self.run_id: int | None = None
        self.status: str | None = None
        self.staged = 0

    def poll(self) -> None:
        # A running run's lines_read is its progress: the lines staged so far (its staging is a
        # temp table of the pulling process, which no other process can see).
        row = self.conn.execute(
            "SELECT id, status, lines_read FROM pull_runs WHERE id > ? ORDER BY id LIMIT 1",
            (self.after_id,),
        ).fetchone()
        if row is None:
            return
        self.run_id, self.status, self.staged = int(row[0]), str(row[1]), int(row[2])

    def close(self) -> None:
        self.conn.close()


class KillRounds:
    def __init__(self, box: Sandbox, work: Path, rng: random.Random, *, grow: bool) -> None:
        self.box = box
        self.grow = grow
        self.work = work
        self.rng = rng
        self.db = work / "state.db"
        self.config = work / "reconciler.toml"
        self.day = FIRST_DAY
        self.full = 0  # lines of a complete pull
        self.last = Timeline()

    def write_config(self) -> None:
        source = {
            "name": "fastly",
            "provider": "fastly",
            "base_url": self.box.base_url,
            "lookback_months": 1,
            "max_retries": 0,
            "timeout_s": 120,
        }
        expectation = {
            "name": "NA bandwidth cap",
            "source": "fastly",
            "usage_type": "North America Bandwidth",
            "monthly_max": "1",
        }
        data = {
            "state": {"database_url": f"sqlite+aiosqlite:///{self.db}"},
            "sources": [source],
            "expectations": [expectation],
        }
        self.config.write_text(to_toml(data))

    async def start_pull(self, **env: str) -> asyncio.subprocess.Process:
        log = (self.work / "pull.log").open("ab")
        try:
            return await asyncio.create_subprocess_exec(
                sys.executable,
                *("-m", "reconciler", "--config", str(self.config), "pull", "--source", "fastly"),
                *("--as-of", self.day.isoformat()),
                env=child_env(FASTLY_API_TOKEN=self.box.fastly_token, **env),
                stdin=asyncio.subprocess.DEVNULL,
                stdout=asyncio.subprocess.DEVNULL,
                stderr=log,
            )
        finally:
            log.close()

    def last_run_id(self) -> int:
        return int(scalar(self.db, "SELECT coalesce(max(id), 0) FROM pull_runs") or 0)

    async def complete_pull(self) -> tuple[int, Timeline]:
        """A pull left alone, timed; (exit status, timeline)."""
        watch = Watch(self.db, self.last_run_id())
        began = time.monotonic()
        proc = await self.start_pull()
        line = Timeline()
        try:
            async with asyncio.timeout(600):
                while proc.returncode is None:
                    watch.poll()
                    now = time.monotonic() - began
                    if watch.run_id is not None and line.run_seen_s is None:
                        line.run_seen_s = now
                    if self.full and watch.staged >= self.full and line.staged_full_s is None:
                        line.staged_full_s = now
                    if watch.status == "succeeded" and line.succeeded_s is None:
                        line.succeeded_s = now
                    with contextlib.suppress(TimeoutError):
                        async with asyncio.timeout(POLL_S):
                            await proc.wait()
            line.finished_s = time.monotonic() - began
            watch.poll()
            line.run_id, line.status = watch.run_id, watch.status
        finally:
            watch.close()
            await _reap(proc)
        return proc.returncode or 0, line

    async def next_day(self) -> None:
        """Tomorrow in the sandbox: one service's bandwidth halves and, unless ``grow`` is
        off, every collecting line grows (a long commit: every line gets a version)."""
        if self.grow:
            self.day += timedelta(days=1)
            await self.box.set_today(self.day.isoformat())
        with contextlib.closing(connect(self.db)) as conn:
            services = [
                r[0]
                for r in conn.execute(
                    "SELECT DISTINCT service FROM usage_lines WHERE service != '' "
                    "ORDER BY 1 LIMIT 50"
                )
            ]
        await self.box.add_events(
            {
                "kind": "decrease",
                "provider": "fastly",
                "day": self.day.isoformat(),
                "service": self.rng.choice(services),
                "usage_type": "North America Bandwidth",
                "factor": "0.5",
            }
        )

    async def killed_pull(self, phase: str) -> KillOutcome:
        watch = Watch(self.db, self.last_run_id())
        # The first request of the phase hangs: the kill lands there whatever the machine's
        # speed (invoices are read before any line is staged; the account lines are staged
        # while the first service page is asked for, and the staging kill waits for them).
        if phase in HUNG:
            await self.box.add_faults({"kind": "hang", "endpoint": HUNG[phase], "count": 1})
        held = self.work / "commit.held"
        held.unlink(missing_ok=True)
        hold = {HOLD_BEFORE_COMMIT_ENV: str(held)} if phase == "commit" else {}
        began = time.monotonic()
        proc = await self.start_pull(**hold)
        in_tx = False
        try:
            async with asyncio.timeout(600):
                in_tx = await self._wait_for_moment(phase, watch, proc, began)
            watch.poll()
            staged, before_status = watch.staged, watch.status
            with contextlib.suppress(ProcessLookupError):
                proc.send_signal(signal.SIGKILL)
            code = await proc.wait()
        finally:
            await _reap(proc)
            await self.box.clear_faults()
        watch.poll()
        landed = "commit" if held.exists() else _landed(watch, staged, before_status, self.full)
        watch.close()
        if code != -signal.SIGKILL:
            landed = "exited first"
        kill = KillOutcome(phase, landed, staged, in_tx and landed == "commit", watch.run_id)
        if phase == "commit" and not kill.in_transaction:
            kill.problems.append(f"aimed at the commit, landed {landed}, not inside it")
        return kill

    async def _wait_for_moment(
        self, phase: str, watch: Watch, proc: asyncio.subprocess.Process, began: float
    ) -> bool:
        """Sleep/poll until the moment to kill; True if the write lock was held then."""
        rng = self.rng

        async def until(condition: Any) -> None:
            while proc.returncode is None:
                watch.poll()
                if condition():
                    return
                await asyncio.sleep(POLL_S)

        if phase in HUNG:
            while proc.returncode is None:  # until its request hangs in the sandbox
                if any(fault["fired"] for fault in await self.box.faults()):
                    break
                await asyncio.sleep(POLL_S)
            if phase == "staging":  # and the lines before it are staged
                await until(lambda: watch.staged > 0)
        elif phase == "commit":  # until it holds its transaction open, just before it commits
            held = self.work / "commit.held"
            await until(held.exists)
        else:
            total = self.last.finished_s or 5.0
            await asyncio.sleep(max(rng.uniform(0, total) - (time.monotonic() - began), 0))
        return write_locked(self.db) if phase in ("commit", "random") else False


async def _reap(proc: asyncio.subprocess.Process) -> None:
    """Never leave a pull running behind (a timeout, an error of ours)."""
    if proc.returncode is None:
        with contextlib.suppress(ProcessLookupError):
            proc.kill()
        await proc.wait()


def _over(watch: Watch) -> bool:
    return watch.run_id is not None and watch.status != "running"


def _landed(watch: Watch, staged: int, status_before: str | None, full: int) -> str:
    """Where the kill really landed, from what the database says."""
    if watch.status == "succeeded":
        return "after commit"
    if watch.run_id is None:
        return "startup"
    if status_before != "running":
        return "after commit"
    if staged == 0:
        return "fetch"
    if staged < full:
        return "staging"
    return "commit"


async def run_kills(
    results: Results, work: Path, *, kills: int, services: int, seed: int, grow: bool = True
) -> None:
    """``kills`` rounds over the phases; rows per landed phase."""
    rng = random.Random(seed)
    scenario = {"fastly_services": services, "fastly_usage_types": 20, "seed": seed}
    async with sandbox(scenario, today=FIRST_DAY.isoformat()) as box:
        rounds = KillRounds(box, work, rng, grow=grow)
        rounds.write_config()
        await _init_state(rounds.db)
        code, line = await rounds.complete_pull()
        if code != 0 or line.status != "succeeded":
            results.add(SECTION, "baseline pull", f"exit {code}, run {line.status}", False)
            return
        rounds.full = int(
            scalar(rounds.db, "SELECT lines_read FROM pull_runs WHERE id = ?", line.run_id)
        )
        # Measure the commit of a pull with changes (the baseline was an import).
        await rounds.next_day()
        code, rounds.last = await rounds.complete_pull()
        tallies = _Tallies(rounds.full, rounds.last.commit_s)
        for index in range(kills):
            phase = PHASES[index % len(PHASES)]
            await rounds.next_day()
            before = state_digest(rounds.db)
            kill = await rounds.killed_pull(phase)
            problems = kill.problems
            check = integrity(rounds.db)
            if check != "ok":
                problems.append(f"integrity: {check}")
            run_id = kill.run_id
            if kill.landed not in ("after commit", "exited first"):
                if state_digest(rounds.db) != before:
                    problems.append("tracked state changed")
                if run_id is not None and traces_of_run(rounds.db, run_id):
                    problems.append(f"rows from the killed run {run_id}")
            code, line = await rounds.complete_pull()
            versions = scalar(
                rounds.db, "SELECT versions_added FROM pull_runs WHERE id = ?", line.run_id
            )
            if code != 0 or line.status != "succeeded":
                problems.append(f"next pull: exit {code}, run {line.status}")
            elif kill.landed not in ("after commit", "exited first") and not versions:
                problems.append("the next pull recorded no change")
            if integrity(rounds.db) != "ok":
                problems.append("integrity after the next pull")
            if line.commit_s:
                rounds.last = line
            tallies.add(kill)
        tallies.report(results, kills)


class _Tallies:
    def __init__(self, lines: int, commit_s: float) -> None:
        self.lines = lines
        self.commit_s = commit_s
        self.by_phase: Counter[str] = Counter()
        self.in_tx = 0
        self.problems: dict[str, list[str]] = {}
        self.planned: dict[str, Counter[str]] = {}

    def add(self, kill: KillOutcome) -> None:
        self.by_phase[kill.landed] += 1
        self.in_tx += kill.in_transaction
        self.planned.setdefault(kill.landed, Counter())[kill.planned] += 1
        if kill.problems:
            self.problems.setdefault(kill.landed, []).extend(kill.problems)

    def report(self, results: Results, kills: int) -> None:
        for landed in CASES:
            count = self.by_phase.get(landed, 0)
            if not count:
                continue
            problems = self.problems.get(landed, [])
            aimed = ", ".join(f"{n} aimed at {p}" for p, n in sorted(self.planned[landed].items()))
            figures = f"{count} SIGKILL{'s' if count > 1 else ''} ({aimed})"
            if landed == "commit":
                figures += f"; {self.in_tx} inside the open apply transaction"
            if landed in ("startup", "fetch", "staging", "commit"):
                figures += "; integrity ok, state = last complete run, 0 rows from killed runs"
            else:
                figures += "; integrity ok, state = that run's commit"
            figures += "; next pull completed"
            results.add(SECTION, CASES[landed], figures, not problems, "; ".join(problems[:3]))
        results.add(
            SECTION,
            "setup",
            f"{kills} kills of 'reconciler pull' (SQLite, {self.lines:,} lines a pull, "
            f"commit ≈ {self.commit_s:.2f}s)",
        )


async def _init_state(db: Path) -> None:
    from reconciler.store.db import create_engine, upgrade

    engine = create_engine(f"sqlite+aiosqlite:///{db}", create=True)
    try:
        await upgrade(engine)
    finally:
        await engine.dispose()
