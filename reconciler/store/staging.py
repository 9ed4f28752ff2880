"""Staging a pull: its lines are written, page by page, to ``staging_lines`` under its run id.

Nothing here touches the tracked state: a pull that dies while staging leaves only staging
rows behind, which housekeeping removes once the run's heartbeat is old. Every page renews
the heartbeat in its own transaction, and fails if the run was abandoned meanwhile. The bulk
insert goes straight to the driver's ``executemany`` (SQLAlchemy's per-row type processing
would dominate at a million lines), so values are converted here the way each backend stores
them.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from datetime import UTC, date, datetime
from decimal import Decimal
from operator import itemgetter
from typing import Any

from sqlalchemy import String, Table
from sqlalchemy.ext.asyncio import AsyncEngine
from sqlmodel.sql.sqltypes import AutoString

from reconciler.domain import UsageLine, canonical_decimal, iso_day, utcnow
from reconciler.errors import BadProviderDataError
from reconciler.store.runs import heartbeat
from reconciler.store.tables import StagingLine

STAGING_COLUMNS = (
    "run_id",
    "key_hash",
    "source",
    "provider",
    "account",
    "product",
    "product_name",
    "usage_type",
    "region",
    "service",
    "service_name",
    "month",
    "period_start",
    "period_end",
    "quantity",
    "raw_quantity",
    "unit",
    "status",
    "billable",
    "provider_updated_at",
)


def placeholders(paramstyle: str, count: int) -> str:
    if paramstyle == "qmark":
        return ", ".join("?" * count)
    if paramstyle == "numeric_dollar":
        return ", ".join(f"${i}" for i in range(1, count + 1))
    if paramstyle in ("format", "pyformat"):
        return ", ".join(["%s"] * count)
    raise ValueError(f"unsupported DB-API paramstyle {paramstyle}")


def _sqlite_datetime(value: datetime | None) -> str | None:
    if value is None:
        return None
    return value.astimezone(UTC).strftime("%Y-%m-%d %H:%M:%S.%f")


def _sqlite_decimal(value: Decimal | None) -> str | None:
    return None if value is None else canonical_decimal(value)


def _identity(value: Any) -> Any:
    return value


def row_converter(dialect_name: str) -> Callable[[int, UsageLine], tuple[Any, ...]]:
    """How one line becomes one driver row on this backend."""
    if dialect_name == "sqlite":
        as_decimal: Callable[[Decimal | None], Any] = _sqlite_decimal
        as_date: Callable[[date], Any] = iso_day
        as_datetime: Callable[[datetime | None], Any] = _sqlite_datetime
    else:
        as_decimal, as_date, as_datetime = _identity, _identity, _identity

    def convert(run_id: int, line: UsageLine) -> tuple[Any, ...]:
        return (
            run_id,
            line.digest,
            line.source,
            str(line.provider),
            line.account,
            line.product,
            line.product_name,
            line.usage_type,
            line.region,
            line.service,
            line.service_name,
            str(line.month),
            as_date(line.period_start),
            as_date(line.period_end),
            as_decimal(line.quantity),
            as_decimal(line.raw_quantity),
            line.unit,
            str(line.status),
            line.billable,
            as_datetime(line.updated_at),
        )

    return convert


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


_STAGING_LIMITS = text_limits(StagingLine.__table__, STAGING_COLUMNS)  # type: ignore[attr-defined]


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
        self._convert = row_converter(dialect.name)
        marks = placeholders(str(dialect.paramstyle), len(STAGING_COLUMNS))
        self._sql = f"INSERT INTO staging_lines ({', '.join(STAGING_COLUMNS)}) VALUES ({marks})"

    async def add(self, lines: Sequence[UsageLine]) -> None:
        if not lines:
            return
        run_id, convert = self.run_id, self._convert
        rows = [convert(run_id, line) for line in lines]
        check_lengths(self.source, "a usage line", _STAGING_LIMITS, rows)
        async with self.engine.begin() as conn:
            await heartbeat(conn, run_id, self.clock())
            await conn.exec_driver_sql(self._sql, rows)
        self.lines += len(rows)
