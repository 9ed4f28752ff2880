from __future__ import annotations

import os
import stat
from datetime import UTC, date, datetime
from decimal import Decimal
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from sqlalchemy import select, text
from sqlalchemy.ext.asyncio import AsyncEngine

from reconciler.domain import canonical_decimal
from reconciler.errors import SchemaOutOfDateError, StateError
from reconciler.store.db import (
    check_schema,
    create_engine,
    current_revision,
    head_revision,
    sqlite_path,
    upgrade,
)
from reconciler.store.tables import LineVersion, PullRun, SourceRow, UsageLineRow

EXACT_VALUES = [
    Decimal("12345678901.0123456789"),
    Decimal("0.000000000000000001"),
    Decimal("99999999999999999999.99999999"),
    Decimal("1E+3"),
    Decimal("-42.5"),
    Decimal("0"),
]


async def test_migrates_from_empty_to_head(state_url: str) -> None:
    engine = create_engine(state_url, create=True)
    try:
        assert await current_revision(engine) is None
        with pytest.raises(SchemaOutOfDateError, match="reconciler db upgrade"):
            await check_schema(engine)
        before, after = await upgrade(engine)
        assert (before, after) == (None, head_revision())
        await check_schema(engine)
        again = await upgrade(engine)
        assert again == (head_revision(), head_revision())
    finally:
        await engine.dispose()


async def _insert_line(engine: AsyncEngine, quantity: Decimal) -> int:
    from sqlmodel.ext.asyncio.session import AsyncSession

    now = datetime.now(UTC)
    async with AsyncSession(engine) as session:
        session.add(SourceRow(name="s", provider="fastly", created_at=now))
        run = PullRun(source="s", provider="fastly", status="succeeded", started_at=now)
        session.add(run)
        await session.flush()
        assert run.id is not None
        line = UsageLineRow(
            key_hash="k" * 32,
            source="s",
            provider="fastly",
            account="acct",
            product="cdn_usage",
            product_name="CDN",
            usage_type="North America Bandwidth",
            region="North America",
            service="",
            month="2024-05",
            period_start=date(2024, 5, 1),
            period_end=date(2024, 5, 31),
            quantity=quantity,
            raw_quantity=quantity * 1000,
            unit="GB",
            status="collecting",
            first_run_id=run.id,
            last_run_id=run.id,
        )
        session.add(line)
        await session.flush()
        line_id = line.id
        assert line_id is not None
        session.add(
            LineVersion(
                line_id=line_id,
                run_id=run.id,
                quantity=quantity,
                unit="GB",
                status="collecting",
                period_end=date(2024, 5, 31),
                recorded_at=now,
            )
        )
        await session.commit()
        return line_id


@pytest.mark.parametrize("quantity", EXACT_VALUES, ids=str)
async def test_decimal_round_trip_is_exact(engine: AsyncEngine, quantity: Decimal) -> None:
    from sqlmodel import select as select_model
    from sqlmodel.ext.asyncio.session import AsyncSession

    line_id = await _insert_line(engine, quantity)
    async with AsyncSession(engine) as session:
        query = select_model(UsageLineRow).where(UsageLineRow.__table__.c.id == line_id)  # type: ignore[attr-defined]
        line = (await session.exec(query)).one()
        assert isinstance(line.quantity, Decimal)
        assert line.quantity == quantity
        assert canonical_decimal(line.quantity) == canonical_decimal(quantity)
        assert line.raw_quantity == quantity * 1000
        version = (await session.exec(select_model(LineVersion))).one()
        assert version.quantity == quantity


async def test_sqlite_numeric_would_lose_digits(tmp_path: Path) -> None:
    """Why ExactDecimal exists: SQLite's NUMERIC affinity turns this value into a float."""
    engine = create_engine(f"sqlite+aiosqlite:///{tmp_path / 'x.db'}", create=True)
    try:
        async with engine.begin() as conn:
            await conn.execute(text("CREATE TABLE t (q NUMERIC)"))
            await conn.execute(text("INSERT INTO t VALUES ('12345678901.0123456789')"))
            raw = (await conn.execute(text("SELECT CAST(q AS TEXT) FROM t"))).scalar_one()
        assert Decimal(raw) != Decimal("12345678901.0123456789")
    finally:
        await engine.dispose()


@settings(max_examples=40, deadline=None)
@given(
    st.decimals(allow_nan=False, allow_infinity=False, places=None).filter(
        lambda d: abs(d) < Decimal("1e25") and (d == 0 or abs(d) > Decimal("1e-25"))
    )
)
def test_any_decimal_survives_sqlite(quantity: Decimal) -> None:
    import asyncio
    import tempfile

    async def round_trip(path: str) -> Decimal:
        engine = create_engine(f"sqlite+aiosqlite:///{path}", create=True)
        try:
            await upgrade(engine)
            await _insert_line(engine, quantity)
            async with engine.connect() as conn:
                row = await conn.execute(select(UsageLineRow.__table__.c.quantity))  # type: ignore[attr-defined]
                return Decimal(row.scalar_one())
        finally:
            await engine.dispose()

    with tempfile.TemporaryDirectory() as tmp:
        assert asyncio.run(round_trip(f"{tmp}/s.db")) == quantity


async def test_sqlite_file_is_owner_only_with_wal(tmp_path: Path) -> None:
    url = f"sqlite+aiosqlite:///{tmp_path / 'state' / 'state.db'}"
    old_umask = os.umask(0o022)
    try:
        engine = create_engine(url, create=True)
        await upgrade(engine)
    finally:
        os.umask(old_umask)
    try:
        path = sqlite_path(url)
        assert path is not None
        assert stat.S_IMODE(path.stat().st_mode) == 0o600
        assert stat.S_IMODE(path.parent.stat().st_mode) == 0o700
        async with engine.connect() as conn:
            assert (await conn.execute(text("PRAGMA journal_mode"))).scalar_one() == "wal"
            assert (await conn.execute(text("PRAGMA foreign_keys"))).scalar_one() == 1
            assert (await conn.execute(text("PRAGMA busy_timeout"))).scalar_one() > 0
    finally:
        await engine.dispose()


def test_missing_sqlite_database_names_the_fix(tmp_path: Path) -> None:
    with pytest.raises(StateError, match="reconciler init"):
        create_engine(f"sqlite+aiosqlite:///{tmp_path / 'absent.db'}")
