"""Staging a pull: its lines are written, page by page, where its reconcile transaction reads them.

Nothing here touches the tracked state. On SQLite the lines go to a TEMP table of the one
connection that later runs the run's reconcile transaction: it lives outside the database file
(no WAL traffic, nothing to delete afterwards) and vanishes with the connection, so a pull
that dies leaves nothing behind. Like ``staging_lines`` it is append-only, with no index while
it fills (a random key would make every insert land at a random place in a B-tree); a
comparison indexes it once, whole (:func:`index_for_comparison`). On PostgreSQL the
lines go to ``staging_lines`` under the run's id, which the run deletes and housekeeping
removes once the run's heartbeat is old.

Every page renews the run's heartbeat (with the lines staged so far, the run's progress) in
its own short transaction, and fails if the run was abandoned meanwhile. The bulk insert goes
straight to the driver's ``executemany`` (SQLAlchemy's per-row type processing would dominate
at a million lines), with the rows in the text form of :mod:`reconciler.providers.rows`: a
provider's page of rows as it came, any other page's lines converted once. Text longer than
its column is refused as each page comes (SQLite would keep it, PostgreSQL would fail with a
database error), but in rows whose maker checked it already (``LineRows.within_limits``).
"""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator, Callable, Iterator, Sequence
from datetime import UTC, date, datetime
from decimal import Decimal
from operator import itemgetter
from typing import Any, Final

from sqlalchemy import Column, Integer, LargeBinary, MetaData, String, Table, select
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine
from sqlmodel.sql.sqltypes import AutoString

from reconciler.domain import UsageLine, utcnow
from reconciler.errors import BadProviderDataError
from reconciler.providers.rows import ROW_FIELDS, TIME_FORMAT, LineRows, Row, line_row
from reconciler.store.db import SQLITE_CACHE_KIB
from reconciler.store.runs import SUCCEEDED, heartbeat
from reconciler.store.snapshot import (
    PAGE_DIGEST_CHARS,
    SnapshotHash,
    pack_rows,
    page_digest,
    unpack_rows,
)
from reconciler.store.tables import PullRun, StagingLine

STAGING_COLUMNS: Final = ("run_id", *ROW_FIELDS)
# A row's stat type, which decides its measure kind: provider, product, product name, usage
# type, unit (see reconciler.store.measures).
StatKey = tuple[str, str, str, str, str]
_STAT_KEY: Final = itemgetter(
    *(
        ROW_FIELDS.index(name)
        for name in ("provider", "product", "product_name", "usage_type", "unit")
    )
)
staging_t: Final[Table] = StagingLine.__table__  # type: ignore[attr-defined]


def _temp_column(column: Column[Any]) -> Column[Any]:
    copy = column._copy()
    copy.index = None
    return copy


# SQLite's staging: a TEMP table of the reconcile connection, the columns of staging_lines.
pull_lines_t: Final = Table(
    "pull_lines",
    MetaData(),
    *(_temp_column(column) for column in staging_t.columns),
    prefixes=["TEMPORARY"],
)


# SQLite's pages kept packed while they match the last run's (see Stager): a row for every
# _PACKED_ROWS rows of a page, numbered in stream order from 1.
_PACKED_ROWS: Final = 1000
pull_pages_t: Final = Table(
    "pull_pages",
    MetaData(),
    Column("seq", Integer, primary_key=True),
    Column("rows", LargeBinary, nullable=False),
    prefixes=["TEMPORARY"],
)
_INSERT_PARTS: Final = f"INSERT INTO {pull_pages_t.name} (seq, rows) VALUES (?, ?)"
runs_t: Final[Table] = PullRun.__table__  # type: ignore[attr-defined]


# What the comparison reads of a staged line, key first (see index_for_comparison).
_COMPARED_COLUMNS: Final = (
    "key_hash",
    "run_id",
    "quantity",
    "unit",
    "status",
    "raw_quantity",
    "billable",
    "period_start",
    "period_end",
    "month",
)


def staging_table(dialect_name: str) -> Table:
    """Where a pull's lines are staged on this backend (the same columns on both)."""
    return pull_lines_t if dialect_name == "sqlite" else staging_t


DUPLICATE_LINE: Final = (
    "the provider returned the same usage line twice in one pull "
    "(same account, product, usage type, region, service, month and period)"
)


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
        _refuse_longer(source, what, name, longest, limit)


def _refuse_longer(source: str, what: str, name: str, longest: int, limit: int) -> None:
    if longest > limit:
        raise BadProviderDataError(
            source,
            "pull",
            f"{what}'s {name} has {longest} characters, longer than the {limit} "
            "the state database keeps",
        )


_STAGING_LIMITS = text_limits(StagingLine.__table__, ROW_FIELDS)  # type: ignore[attr-defined]


class Stager:
    """Writes a pull's lines to staging, one short transaction per page, and runs the
    pull's reconcile transaction where they are (:meth:`transaction`).

    On SQLite, a re-pull's pages are kept packed (a row for every thousand lines) for as long as
    each matches, in order from the first, the page its source's last succeeded run staged
    (``pull_runs.page_digests``): an unchanged re-pull then writes no staged line, which is
    most of its work. The first page that differs unpacks those kept, in order, and the rest
    are staged as lines; a comparison that runs after all unpacks them first
    (:meth:`unpack`).

    Call :meth:`close` when the pull fails before its transaction (the transaction closes
    the stager itself).
    """

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
        self.stat_keys: set[StatKey] = set()  # of the lines staged
        self.snapshot = SnapshotHash()  # of the rows staged, in stream order
        self.page_digests: list[str] = []  # of each page staged, in stream order
        self._last_run_pages: list[str] = []  # the source's last succeeded run's
        self._packed = 0  # pages kept packed, all before any page staged as lines
        self._packed_parts = 0  # the rows of pull_pages they fill, seq 1 to this
        dialect = engine.dialect
        self.table = staging_table(dialect.name)
        values = _values(dialect.name, str(dialect.paramstyle), run_id)
        columns = ", ".join(STAGING_COLUMNS)
        self._sql = f"INSERT INTO {self.table.name} ({columns}) VALUES ({values})"
        # asyncpg's COPY: PostgreSQL takes a page's rows in one binary stream.
        self._copy = dialect.name == "postgresql" and dialect.driver == "asyncpg"
        self._conn: AsyncConnection | None = None

    @property
    def in_temp_table(self) -> bool:
        return self.table is pull_lines_t

    async def _connection(self) -> AsyncConnection:
        if self._conn is None:
            conn = await self.engine.connect()
            try:
                async with conn.begin():
                    # A connection back from the pool whose last stager was never closed.
                    await conn.exec_driver_sql(f"DROP TABLE IF EXISTS temp.{pull_lines_t.name}")
                    # The temp table's own page cache, as big as the database's (else 2 MiB).
                    await conn.exec_driver_sql(f"PRAGMA temp.cache_size=-{SQLITE_CACHE_KIB}")
                    await conn.run_sync(pull_lines_t.create)
                    await conn.exec_driver_sql(f"DROP TABLE IF EXISTS temp.{pull_pages_t.name}")
                    await conn.run_sync(pull_pages_t.create)
                    self._last_run_pages = await last_run_pages(conn, self.source)
            except BaseException:
                await conn.close()
                raise
            self._conn = conn
        return self._conn

    async def add(self, lines: Sequence[UsageLine]) -> None:
        if not lines:
            return
        if isinstance(lines, LineRows):
            rows = lines.rows
            if not lines.within_limits:
                check_lengths(self.source, "a usage line", _STAGING_LIMITS, rows)
        else:
            rows = [line_row(line) for line in lines]
            check_lengths(self.source, "a usage line", _STAGING_LIMITS, rows)
        self.stat_keys.update(map(_STAT_KEY, rows))
        # Packed a slice at a time: no page's rows are ever copied whole.
        packed = [
            pack_rows(rows[at : at + _PACKED_ROWS]) for at in range(0, len(rows), _PACKED_ROWS)
        ]
        for part in packed:
            self.snapshot.add(part)
        digest = page_digest(packed)
        staged = self.lines + len(rows)
        if not self.in_temp_table:
            async with self.engine.begin() as conn:
                await heartbeat(conn, self.run_id, self.clock(), lines_read=staged)
                if self._copy:
                    await _copy_rows(conn, self.run_id, rows)
                else:
                    await conn.exec_driver_sql(self._sql, rows)
            self.page_digests.append(digest)
            self.lines = staged
            return
        conn = await self._connection()
        page = len(self.page_digests)
        keep_packed = self._packed == page and self._last_run_pages[page : page + 1] == [digest]
        async with conn.begin():
            await heartbeat(conn, self.run_id, self.clock(), lines_read=staged)
            if keep_packed:
                first = self._packed_parts + 1
                parts = [(first + n, part) for n, part in enumerate(packed)]
                await conn.exec_driver_sql(_INSERT_PARTS, parts)
            else:
                await self._unpack(conn)
                await conn.exec_driver_sql(self._sql, rows)
        self.page_digests.append(digest)
        self._packed = page + 1 if keep_packed else 0
        self._packed_parts = self._packed_parts + len(packed) if keep_packed else 0
        self.lines = staged

    @property
    def packed_pages(self) -> int:
        """The pages kept packed so far (every page staged, unless one differed)."""
        return self._packed

    @property
    def page_digests_text(self) -> str:
        """The staged pages' digests, as ``pull_runs.page_digests`` keeps them."""
        return "".join(self.page_digests)

    async def unpack(self, conn: AsyncConnection) -> None:
        """Stage the pages kept packed as lines, in order, in the caller's transaction on
        the stager's connection (the reconcile transaction's, before it compares)."""
        await self._unpack(conn)
        self._packed = self._packed_parts = 0

    async def _unpack(self, conn: AsyncConnection) -> None:
        for seq in range(1, self._packed_parts + 1):
            query = select(pull_pages_t.c.rows).where(pull_pages_t.c.seq == seq)
            packed = (await conn.execute(query)).scalar_one()
            await conn.exec_driver_sql(self._sql, unpack_rows(packed))
        if self._packed_parts:
            await conn.execute(pull_pages_t.delete())

    @contextlib.asynccontextmanager
    async def transaction(self, *, packed: bool = False) -> AsyncIterator[AsyncConnection]:
        """The run's reconcile transaction, on the connection holding its staged lines;
        committed when the block ends without an error. The stager is closed after.

        Pages kept packed are unpacked first, unless ``packed``: the caller then unpacks them
        (:meth:`unpack`) before anything reads the staged lines, as ``apply_staged`` does
        when it has to compare them.
        """
        try:
            conn = await self._connection() if self.in_temp_table else None
            if conn is None:
                async with self.engine.begin() as pg_conn:
                    yield pg_conn
            else:
                async with conn.begin():
                    if not packed:
                        await self.unpack(conn)
                    yield conn
        finally:
            await self.close()

    async def close(self) -> None:
        """Drop the staged lines of a temp table (the connection holding them is closed:
        SQLite frees the table with it)."""
        conn, self._conn = self._conn, None
        if conn is None:
            return
        try:
            await conn.invalidate()
        finally:
            await conn.close()


async def last_run_pages(conn: AsyncConnection, source: str) -> list[str]:
    """The page digests of the source's last succeeded run (none recorded: empty)."""
    query = (
        select(runs_t.c.page_digests)
        .where(runs_t.c.source == source, runs_t.c.status == SUCCEEDED)
        .order_by(runs_t.c.id.desc())
        .limit(1)
    )
    text = (await conn.execute(query)).scalar_one_or_none() or ""
    return [text[at : at + PAGE_DIGEST_CHARS] for at in range(0, len(text), PAGE_DIGEST_CHARS)]


_DAY: Final = ROW_FIELDS.index("period_start"), ROW_FIELDS.index("period_end")
_QUANTITY: Final = ROW_FIELDS.index("quantity"), ROW_FIELDS.index("raw_quantity")
_UPDATED: Final = ROW_FIELDS.index("provider_updated_at")


def _typed_records(run_id: int, rows: Sequence[Row]) -> Iterator[tuple[Any, ...]]:
    """The rows as COPY's binary format takes them, one at a time: each field in its column's
    own type (what the casts of the INSERT make of the text form)."""
    days: dict[str, date] = {}
    for row in rows:
        record = [run_id, *row]
        for at in _DAY:
            text = record[at + 1]
            day = days.get(text)
            if day is None:
                day = days[text] = date.fromisoformat(text)
            record[at + 1] = day
        for at in _QUANTITY:
            if record[at + 1] is not None:
                record[at + 1] = Decimal(record[at + 1])
        updated = record[_UPDATED + 1]
        if updated is not None:
            record[_UPDATED + 1] = datetime.strptime(updated, TIME_FORMAT).replace(tzinfo=UTC)
        yield tuple(record)


async def _copy_rows(conn: AsyncConnection, run_id: int, rows: Sequence[Row]) -> None:
    """Stage ``rows`` in PostgreSQL's staging_lines with one COPY, in the caller's
    transaction (the connection's own asyncpg session)."""
    raw = await conn.get_raw_connection()
    driver: Any = raw.driver_connection
    try:
        await driver.copy_records_to_table(
            staging_t.name, records=_typed_records(run_id, rows), columns=list(STAGING_COLUMNS)
        )
    except Exception:
        if driver.is_closed():
            # What SQLAlchemy does with a statement's lost connection: invalidated, so the
            # transaction is not rolled back on a closed connection (whose error would
            # hide this one).
            await conn.invalidate()
        raise


async def index_for_comparison(conn: AsyncConnection, table: Table) -> None:
    """Index SQLite's staged lines by key, with every column the comparison reads.

    The comparison then walks the staged lines in key order through this index alone and
    meets the tracked lines' key index in the same order (and their rows too, which a pull
    inserts in key order) instead of at random: at a million lines the join costs a fraction
    of a random walk, more than paying for the index. The duplicate check reads the same
    index in order instead of sorting the keys. A first pull, which joins nothing, skips it.
    """
    if table is not pull_lines_t:
        return
    columns = ", ".join(_COMPARED_COLUMNS)
    await conn.exec_driver_sql(
        f"CREATE INDEX temp.{pull_lines_t.name}_by_key ON {pull_lines_t.name} ({columns})"
    )
