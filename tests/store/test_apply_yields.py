"""Applying a pull in which every line changed gives the event loop a turn every slice of rows.

Counted, not timed: a task that takes every turn the loop offers records how many lines had
been classified at each turn, and the database driver is asked how many rows each bulk write
carried. In one piece (every line classified, then one write of every row) the daemon's other
tasks (its watchdog pings among them) would wait for all of it.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import event

from reconciler.domain import ChangeKind
from reconciler.providers.base import Coverage
from reconciler.reconcile import diff
from reconciler.store import ingest
from reconciler.store.db import create_engine, upgrade
from reconciler.store.ingest import apply_staged
from reconciler.store.runs import start_run
from reconciler.store.slices import SLICE_ROWS
from reconciler.store.staging import Stager
from tests.store.test_apply_scales import JULY, lines

NOW = datetime(2024, 7, 2, tzinfo=UTC)
COUNT = 6 * SLICE_ROWS


class Turns:
    """How many lines had been classified at each turn the event loop gave other tasks."""

    def __init__(self) -> None:
        self.classified = 0
        self.seen: list[int] = []

    async def take(self) -> None:
        while True:
            self.seen.append(self.classified)
            await asyncio.sleep(0)

    def longest_run(self) -> int:
        marks = [0, *self.seen, self.classified]
        return max(b - a for a, b in itertools.pairwise(marks))


@contextlib.contextmanager
def running(turns: Turns) -> Iterator[None]:
    task = asyncio.create_task(turns.take())
    try:
        yield
    finally:
        task.cancel()


async def test_every_slice_of_changed_lines_gives_the_loop_a_turn(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    engine = create_engine(f"sqlite+aiosqlite:///{tmp_path / 'state.db'}", create=True)
    await upgrade(engine)
    turns = Turns()

    def counted(*args: Any, **kwargs: Any) -> ChangeKind | None:
        turns.classified += 1
        return diff.classify(*args, **kwargs)

    batches: list[int] = []

    def written(
        conn: Any, cursor: Any, statement: str, params: Any, context: Any, many: bool
    ) -> None:
        if many:
            batches.append(len(params))

    monkeypatch.setattr(ingest, "classify", counted)
    coverage = Coverage(months=(JULY,), accounts=None)
    try:
        for day in (1, 2):
            run_id = await start_run(engine, source="fastly", provider="fastly", now=NOW)
            stager = Stager(engine, run_id, "fastly")
            await stager.add(lines(COUNT, quantity=day * 100))
            if day == 2:
                turns.classified = 0
                event.listen(engine.sync_engine, "before_cursor_execute", written)
            async with stager.transaction() as conn:
                with running(turns) if day == 2 else contextlib.nullcontext():
                    result = await apply_staged(
                        conn,
                        run_id=run_id,
                        source="fastly",
                        coverage=coverage,
                        now=NOW,
                        severities={},
                    )
        event.remove(engine.sync_engine, "before_cursor_execute", written)
    finally:
        await engine.dispose()

    assert len(result.changes) == COUNT  # every line grew
    assert turns.classified == COUNT
    assert turns.longest_run() <= SLICE_ROWS
    # The line updates, their versions and the changes, each written in slices.
    assert sum(batches) == 3 * COUNT
    assert max(batches) <= SLICE_ROWS
