"""Staging a pull: its lines are written, page by page, to ``staging_lines`` under its run id.

Nothing here touches the tracked state: a pull that dies while staging leaves only staging
rows behind, which housekeeping removes once the run's heartbeat is old. Every page renews
the heartbeat in its own transaction, and fails if the run was abandoned meanwhile. The bulk
insert goes straight to the driver's ``executemany`` (SQLAlchemy's per-row type processing
would dominate at a million lines), with the rows in the text form of
:mod:`reconciler.providers.rows`: a provider's page of rows as it came, any other page's lines
converted once.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from datetime import datetime
from operator import itemgetter
from typing import Any, Final

from sqlalchemy import String, Table
from sqlalchemy.ext.asyncio import AsyncEngine
from sqlmodel.sql.sqltypes import AutoString

from reconciler.domain import UsageLine, utcnow
from reconciler.errors import BadProviderDataError
from reconciler.providers.rows import ROW_FIELDS, LineRows, line_row
from reconciler.store.runs import heartbeat
from reconciler.store.tables import StagingLine

STAGING_COLUMNS: Final = ("run_id", *ROW_FIELDS)


# On PostgreSQL the rows' text is cast where the column is not text (see _values).
_CASTS: Final = {
    "period_start": "CAST(CAST({} AS text) AS date)",
    "period_end": "CAST(CAST({} AS text) AS date)",
    "quantity": "CAST(CAST({} AS text) AS numeric)",
    "raw_quantity": "CAST(CAST({} AS text) AS numeric)",
    "provider_updated_at": "CAST(CAST({} AS text) AS timestamp) AT TIME ZONE 'UTC'",
}


def _values(dialect_name: str, paramstyle: str, run_id: int) -> str:
    """The VALUES list of staging's insert: the run id, then one parameter per row field.

    Rows come in one text form (:mod:`reconciler.providers.rows`), which is how SQLite
    keeps them; PostgreSQL casts the dates, quantities and times from that text.
    """
    if paramstyle == "qmark":
        marks = ["?"] * len(ROW_FIELDS)
    elif paramstyle == "numeric_dollar":
        marks = [f"${i}" for i in range(1, len(ROW_FIELDS) + 1)]
    elif paramstyle in ("format", "pyformat"):
        marks = ["%s"] * len(ROW_FIELDS)
    else:
        raise ValueError(f"unsupported DB-API paramstyle {paramstyle}")
    if dialect_name == "postgresql":
        marks = [
            _CASTS.get(name, "{}").format(m) for name, m in zip(ROW_FIELDS, marks, strict=True)
        ]
    return ", ".join([str(int(run_id)), *marks])


def text_limits(table: Table, columns: Sequence[str]) -> list[tuple[int, str, int]]:
    """(position, name, length) of each length-limited text column among ``columns``."""
    limits = []
    for position, name in enumerate(columns):
        kind = table.c[name].type
        if isinstance(kind, String | AutoString) and kind.length:
            limits.append((position, name, int(kind.length)))
    return limits


def check_lengths(
    source: str, what: str, limits: Sequence[tuple[int, str, int]], rows: Sequence[Sequence[Any]]
) -> None:
    """Refuse text longer than its column, on every backend (SQLite would keep it, PostgreSQL
    would fail with a database error)."""
    for position, name, limit in limits:
        longest = max(map(len, filter(None, map(itemgetter(position), rows))), default=0)
        if longest > limit:
            raise BadProviderDataError(
                source,
                "pull",
                f"{what}'s {name} has {longest} characters, longer than the {limit} "
                "the state database keeps",
            )


_STAGING_LIMITS = text_limits(StagingLine.__table__, ROW_FIELDS)  # type: ignore[attr-defined]


class Stager:
    """Writes a pull's lines to staging, one short transaction per page."""

    def __init__(
        self,
        engine: AsyncEngine,
        run_id: int,
        source: str,
        *,
        clock: Callable[[], datetime] = utcnow,
    ) -> None:
        self.engine = engine
        self.clock = clock
        self.run_id = run_id
        self.source = source
        self.lines = 0
        dialect = engine.dialect
        values = _values(dialect.name, str(dialect.paramstyle), run_id)
        self._sql = f"INSERT INTO staging_lines ({', '.join(STAGING_COLUMNS)}) VALUES ({values})"

    async def add(self, lines: Sequence[UsageLine]) -> None:
        if not lines:
            return
        rows = lines.rows if isinstance(lines, LineRows) else [line_row(line) for line in lines]
        check_lengths(self.source, "a usage line", _STAGING_LIMITS, rows)
        async with self.engine.begin() as conn:
            await heartbeat(conn, self.run_id, self.clock())
            await conn.exec_driver_sql(self._sql, rows)
        self.lines += len(rows)
