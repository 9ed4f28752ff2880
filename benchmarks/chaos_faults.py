"""Provider faults: every sandbox fault at several rates, against both providers.

A clean pull of the sandbox's day is the reference. Each (fault, rate, provider) starts from
a copy of the reference state and pulls ``runs`` times with the fault active. A run must
either succeed (through retries) leaving the state exactly the reference (same lines, same
values, no new version, no change), or fail cleanly: a ReconcilerError whose message names
the source and the endpoint, with the state untouched. Anything else is wrong data or a
crash.
"""

from __future__ import annotations

import asyncio
import contextlib
import re
import shutil
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import date
from pathlib import Path
from typing import Any

from chaos_support import Results, Sandbox, connect, line_values, sandbox, state_digest

from reconciler.providers.http import HttpClient
from reconciler.refresh import refresh_source
from reconciler.settings import Settings, settings_from_mapping
from reconciler.store.db import create_engine, upgrade

SECTION = "faults"
TODAY = date(2024, 7, 10)
BOTH = ("fastly", "akamai")
CLEAR_MESSAGE = re.compile(r"^source '(fastly|akamai)': (/\S+|pull)(?: \(HTTP \d+\))?: \S")
# The part of the tracked state a run after the reference compares: lines, values, history.
LINE_HISTORY_TABLES = ("usage_lines", "line_versions", "changes", "findings")

# (label, fault spec, providers it can apply to)
FAULTS: tuple[tuple[str, dict[str, Any], tuple[str, ...]], ...] = (
    ("429 + Retry-After", {"kind": "status", "status": 429}, BOTH),
    ("500", {"kind": "status", "status": 500}, BOTH),
    ("502", {"kind": "status", "status": 502}, BOTH),
    ("503 + Retry-After date", {"kind": "status", "status": 503, "retry_after": "date"}, BOTH),
    ("504", {"kind": "status", "status": 504}, BOTH),
    ("latency 300ms", {"kind": "latency", "latency_ms": 300}, BOTH),
    ("hang", {"kind": "hang", "hang_s": 60}, BOTH),
    ("HTML with 200", {"kind": "html"}, BOTH),
    ("truncated JSON", {"kind": "truncate"}, BOTH),
    ("repeated cursor", {"kind": "repeat_cursor"}, ("fastly",)),  # Akamai has no cursors
    ("lying meta.total", {"kind": "lie_total"}, ("fastly",)),  # nor meta
    ("wrong type", {"kind": "wrong_type"}, BOTH),
    ("NaN", {"kind": "nan"}, BOTH),
    ("negative", {"kind": "negative"}, BOTH),
    ("unknown dataStatus", {"kind": "unknown_status"}, ("akamai",)),  # Fastly has none
)


@dataclass
class Tally:
    runs: int = 0
    ok: int = 0
    retries: int = 0
    failed: int = 0
    unclear: list[str] = field(default_factory=list)
    wrong: list[str] = field(default_factory=list)
    example: str = ""

    @property
    def clean(self) -> bool:
        return not self.unclear and not self.wrong


# A request answers well within this on any machine, however loaded; only a hung request,
# which never answers, is given up on a short timeout (see ``timeout_for``).
GENEROUS_TIMEOUT_S = 120.0


def timeout_for(kind: str, *, fast: bool) -> float:
    """The request timeout of a run with fault ``kind``: short only where a request hangs.

    A short timeout for every fault would make a slow machine's answers time out: the run
    would then measure the machine, not the fault handling.
    """
    if kind == "hang":
        return 0.5 if fast else 1.0
    return GENEROUS_TIMEOUT_S


def settings_for(
    box: Sandbox, db: Path, edgerc: Path, *, fast: bool, timeout_s: float = GENEROUS_TIMEOUT_S
) -> Settings:
    common = {
        "base_url": box.base_url,
        "lookback_months": 3,
        # A hung request is given up after ``timeout_s``, then retried; Retry-After (1s from
        # the sandbox) is honoured up to the cap.
        "timeout_s": timeout_s,
        "max_retries": 4,
        "retry_cap_s": 0.2 if fast else 1.0,
    }
    return settings_from_mapping(
        {
            "state": {"database_url": f"sqlite+aiosqlite:///{db}"},
            "sources": [
                {"name": "fastly", "provider": "fastly", **common},
                {"name": "akamai", "provider": "akamai", "edgerc": str(edgerc), **common},
            ],
        }
    )


class Reference:
    """The state after a clean pull, and what a faulty run is compared with."""

    def __init__(self, db: Path) -> None:
        self.db = db
        self.values = line_values(db)
        self.digest = state_digest(db, LINE_HISTORY_TABLES)
        with contextlib.closing(connect(db)) as conn:
            self.lines = int(conn.execute("SELECT count(*) FROM usage_lines").fetchone()[0])

    def differences(self, db: Path) -> str:
        """'' when ``db`` tracks exactly the reference's lines, values and history."""
        if state_digest(db, LINE_HISTORY_TABLES) == self.digest:
            return ""
        values = line_values(db)
        changed = len(values ^ self.values)
        with contextlib.closing(connect(db)) as conn:
            changes = conn.execute("SELECT count(*) FROM changes").fetchone()[0]
        return f"{changed} line values differ, {changes} changes recorded"


async def pull(db: Path, settings: Settings, source: str, token: str) -> tuple[str | None, int]:
    """One refresh; (error or None, retries). A non-ReconcilerError escapes as 'crash: ...'."""
    engine = create_engine(f"sqlite+aiosqlite:///{db}")
    try:
        async with HttpClient() as http:
            outcome = await refresh_source(
                engine, settings, source, http, today=TODAY, environ={"FASTLY_API_TOKEN": token}
            )
        return outcome.error, outcome.stats.retries
    except Exception as exc:
        return f"crash: {type(exc).__name__}: {exc}", 0
    finally:
        await engine.dispose()


def fresh_copy(source: Path, db: Path) -> None:
    for suffix in ("", "-wal", "-shm"):
        Path(f"{db}{suffix}").unlink(missing_ok=True)
    shutil.copy(source, db)


async def run_combination(
    box: Sandbox,
    ref: Reference,
    work: Path,
    settings: Settings,
    fault_id: int,
    provider: str,
    runs: int,
) -> tuple[Tally, int]:
    """``runs`` pulls of ``provider`` with fault ``fault_id`` active; (tally, times fired)."""
    db = work / f"{provider}.db"
    fresh_copy(ref.db, db)
    tally = Tally()
    for _ in range(runs):
        before = state_digest(db)
        error, retries = await pull(db, settings, provider, box.fastly_token)
        tally.runs += 1
        tally.retries += retries
        if error is None:
            tally.ok += 1
            if problem := ref.differences(db):
                tally.wrong.append(problem)
            continue
        tally.failed += 1
        tally.example = tally.example or error
        if error.startswith("crash: ") or not CLEAR_MESSAGE.match(error):
            tally.unclear.append(error[:160])
        if state_digest(db) != before:
            tally.wrong.append("a failed run changed the state")
    fired = sum(int(f["fired"]) for f in await box.faults() if f["id"] == fault_id)
    return tally, fired


async def run_faults(
    results: Results,
    work: Path,
    *,
    runs: int,
    rates: Sequence[float],
    seed: int,
    fast: bool = False,
) -> None:
    # 200 services x 20 usage types x 3 months: two service-usage pages, so cursors are used.
    scenario = {"fastly_services": 200, "fastly_usage_types": 20, "seed": seed}
    async with sandbox(scenario, today=TODAY.isoformat()) as box:
        edgerc = box.write_edgerc(work / "sandbox.edgerc")
        ref_db = work / "reference.db"
        settings = settings_for(box, ref_db, edgerc, fast=fast)
        engine = create_engine(f"sqlite+aiosqlite:///{ref_db}", create=True)
        await upgrade(engine)
        await engine.dispose()
        for source in BOTH:
            error, _ = await pull(ref_db, settings, source, box.fastly_token)
            if error:
                results.add(SECTION, "reference pull", error, False, "no reference")
                return
        ref = Reference(ref_db)
        totals = Tally()
        for label, spec, providers in FAULTS:
            for rate in rates:
                # One fault per provider, scoped to its routes: both run at the same time.
                ids = await box.add_faults(
                    *({**spec, "rate": rate, "endpoint": p} for p in providers)
                )
                timeout_s = timeout_for(str(spec["kind"]), fast=fast)
                faulty = settings_for(box, ref_db, edgerc, fast=fast, timeout_s=timeout_s)
                try:
                    outcomes = await asyncio.gather(
                        *(
                            run_combination(box, ref, work, faulty, fault_id, provider, runs)
                            for fault_id, provider in zip(ids, providers, strict=True)
                        )
                    )
                finally:
                    await box.clear_faults()
                for provider, (tally, fired) in zip(providers, outcomes, strict=True):
                    _report(results, f"{provider} {label} @{rate:.0%}", tally, fired)
                    totals.runs += tally.runs
                    totals.ok += tally.ok
                    totals.failed += tally.failed
                    totals.retries += tally.retries
                    totals.unclear += tally.unclear
                    totals.wrong += tally.wrong
        results.add(
            SECTION,
            "all faults",
            f"{totals.runs} faulty runs: {totals.ok} succeeded ({totals.retries} retries), "
            f"{totals.failed} failed cleanly, {len(totals.unclear)} unclear, "
            f"{len(totals.wrong)} with wrong data (reference: {ref.lines:,} lines)",
            totals.clean,
        )


def _report(results: Results, case: str, tally: Tally, fired: int) -> None:
    figures = (
        f"{tally.ok}/{tally.runs} ok ({tally.retries} retries), {tally.failed} failed cleanly, "
        f"{len(tally.wrong)} wrong; fired {fired}x"
    )
    if tally.example:
        figures += f"; e.g. {_short(tally.example)}"
    note = "; ".join([*tally.wrong[:2], *tally.unclear[:2]])
    results.add(SECTION, case, figures, tally.clean, note)


def _short(message: str, limit: int = 110) -> str:
    text = " ".join(message.split())
    return text if len(text) <= limit else text[: limit - 1] + "…"
