"""SQLite stores every quantity as its one canonical text, so that SQL compares values.

SQLite has no exact decimal type: quantities are text, and the ingest compares them in SQL.
Reading back canonicalizes, so only the stored text itself shows whether ``100.50`` was
written as ``100.5``: this test reads it with the plain ``sqlite3`` module.
"""

from __future__ import annotations

import contextlib
import sqlite3
from decimal import Decimal
from pathlib import Path

from sqlalchemy.ext.asyncio import AsyncEngine

from reconciler.domain import canonical_decimal
from reconciler.store.db import create_engine, upgrade
from tests.store.test_ingest import line, pull

# Each written in a form other than its canonical one.
WRITTEN = {"bandwidth": "100.50", "requests": "1E+3", "shield": "0.000", "origin": "-0.0"}


def stored_text(db: Path, query: str) -> list[tuple[str, str]]:
    with contextlib.closing(sqlite3.connect(db)) as conn:
        return [(str(a), str(b)) for a, b in conn.execute(query).fetchall()]


async def test_quantities_are_stored_as_canonical_text_and_compare_equal(tmp_path: Path) -> None:
    db = tmp_path / "state.db"
    engine: AsyncEngine = create_engine(f"sqlite+aiosqlite:///{db}", create=True)
    try:
        await upgrade(engine)
        await pull(engine, [line(name, text) for name, text in WRITTEN.items()])
        # The same values in other spellings are no change at all.
        again = await pull(
            engine, [line(name, str(Decimal(text).normalize())) for name, text in WRITTEN.items()]
        )
        assert again.changes == [] and again.versions_added == 0
    finally:
        await engine.dispose()
    canonical = {name: canonical_decimal(Decimal(text)) for name, text in WRITTEN.items()}
    assert canonical == {"bandwidth": "100.5", "requests": "1000", "shield": "0", "origin": "0"}
    assert dict(stored_text(db, "SELECT usage_type, quantity FROM usage_lines")) == canonical
    versions = stored_text(
        db,
        "SELECT l.usage_type, v.quantity FROM line_versions v JOIN usage_lines l "
        "ON l.id = v.line_id",
    )
    assert sorted(versions) == sorted(canonical.items())
