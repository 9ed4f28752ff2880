"""A pull sets the measure kind of the lines it wrote from the stat types it staged.

New lines arrive as volumes and take their kind at once (first pull included); a rewritten
line whose stat type changed takes its new kind; lines the pull did not write keep theirs.
"""

from __future__ import annotations

from dataclasses import replace

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncEngine

from reconciler.domain import UsageLine
from reconciler.reconcile.measures import MeasureKind
from reconciler.settings import MeasureSettings
from reconciler.store.ingest import apply_staged, lines_t
from reconciler.store.measures import apply_measure_kinds
from reconciler.store.runs import start_run
from reconciler.store.staging import Stager
from tests.store.test_ingest import COVER, JUNE, NOW, line

RULES = [MeasureSettings(usage_type="Origin Shield", unit="Mbps", kind=MeasureKind.PEAK)]


async def pull(engine: AsyncEngine, lines: list[UsageLine]) -> int:
    run_id = await start_run(engine, source="fastly", provider="fastly", now=NOW)
    stager = Stager(engine, run_id, "fastly")
    await stager.add(lines)
    async with stager.transaction() as conn:
        result = await apply_staged(
            conn, run_id=run_id, source="fastly", coverage=COVER, now=NOW, severities={}
        )
        return await apply_measure_kinds(
            conn,
            "fastly",
            RULES,
            COVER.months,
            run_id=run_id,
            wrote_lines=bool(result.versions_added),
            staged_stats=stager.stat_keys,
            updated_ids=result.updated_ids,
        )


async def kinds(engine: AsyncEngine) -> dict[tuple[str, str], str]:
    query = select(lines_t.c.usage_type, lines_t.c.month, lines_t.c.measure_kind)
    async with engine.connect() as conn:
        return {(r.usage_type, r.month): r.measure_kind for r in await conn.execute(query)}


async def test_a_pull_classifies_the_lines_it_wrote(engine: AsyncEngine) -> None:
    peak = line("Origin Shield", "40", unit="Mbps")
    first = [line("North America Bandwidth", "10"), peak]
    assert await pull(engine, first) == 1
    assert await kinds(engine) == {
        ("North America Bandwidth", "2024-05"): "volume",
        ("Origin Shield", "2024-05"): "peak",
    }

    # Unchanged: nothing written, nothing classified.
    assert await pull(engine, first) == 0

    # The peak's unit changes (no rule matches it any more): a volume again; a new June peak.
    june_peak = line("Origin Shield", "50", unit="Mbps", month=JUNE)
    changed = [first[0], replace(peak, unit="GB"), june_peak]
    assert await pull(engine, changed) == 2
    assert await kinds(engine) == {
        ("North America Bandwidth", "2024-05"): "volume",
        ("Origin Shield", "2024-05"): "volume",
        ("Origin Shield", "2024-06"): "peak",
    }
