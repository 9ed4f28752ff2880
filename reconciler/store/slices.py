"""Big bulk work in slices, giving the event loop a turn between two.

A pull in which every line changed is classified and written in one transaction: tens of
thousands of rows of pure Python (turning result rows into values, the rules, the parameters
SQLAlchemy builds for each written row). Done in one piece it holds the event loop for
seconds, and a daemon whose loop is held misses its watchdog pings, its lease renewals and its
health checks. In slices, the other tasks run between two slices; the transaction, and so the
result, is the same.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Iterable, Mapping, Sequence
from typing import Any, TypeVar

from sqlalchemy import Result, Row
from sqlalchemy.ext.asyncio import AsyncConnection

T = TypeVar("T")

# Rows handled between two turns of the event loop: a few milliseconds of Python.
SLICE_ROWS = 250
# Rows read or gathered before they are written: what a big pull holds in memory at a time.
WRITE_SLICE_ROWS = 1_000


async def result_rows(result: Result[Any] | None) -> AsyncIterator[Row[Any]]:
    """The rows of a buffered result (None: no rows), converted (decimals, dates) one slice
    at a time."""
    if result is None:
        return
    async for row in yielding(row for part in result.partitions(SLICE_ROWS) for row in part):
        yield row


async def yielding(rows: Iterable[T], every: int = SLICE_ROWS) -> AsyncIterator[T]:
    """Each of ``rows``, yielding to the event loop after every ``every`` of them."""
    for count, row in enumerate(rows):
        if count and count % every == 0:
            await asyncio.sleep(0)
        yield row


async def execute_in_slices(
    conn: AsyncConnection, statement: Any, rows: Sequence[Mapping[str, Any]]
) -> None:
    """``conn.execute(statement, rows)`` as several executemany calls of one slice each."""
    for start in range(0, len(rows), SLICE_ROWS):
        if start:
            await asyncio.sleep(0)
        await conn.execute(statement, list(rows[start : start + SLICE_ROWS]))
