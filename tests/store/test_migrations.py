"""Each migration carries a database made at the previous revision forward, rows and all
(SQLite and PostgreSQL)."""

from __future__ import annotations

from datetime import UTC, datetime
from decimal import Decimal
from typing import Any

from sqlalchemy import text

from reconciler.store.db import create_engine, current_revision, head_revision, upgrade


async def test_0002_keeps_invoice_lines_and_reads_them_as_covering_their_month(
    state_url: str,
) -> None:
    engine = create_engine(state_url, create=True)
    try:
        await upgrade(engine, "0001_initial")
        now = datetime(2024, 7, 3, tzinfo=UTC)
        async with engine.begin() as conn:
            await conn.execute(
                text(
                    "INSERT INTO pull_runs (id, source, provider, status, started_at, lines_read,"
                    " pages, api_calls, retries, versions_added, changes_count, findings_count,"
                    " coverage, complete) VALUES (1, 'fastly', 'fastly', 'succeeded', :now,"
                    " 0, 0, 0, 0, 0, 0, 0, '{}', true)"
                ),
                {"now": now},
            )
            for usage_type, units, amount in (
                ("North America Bandwidth", "12345678901234567890.123456789", "0.0000000001"),
                ("North America Requests", "5000", None),
            ):
                await conn.execute(
                    text(
                        "INSERT INTO invoice_lines (source, account, month, usage_type,"
                        " product_name, region, units, amount, currency, run_id) VALUES"
                        " ('fastly', 'cust', '2024-06', 'bandwidth', :name, 'North America',"
                        " :units, :amount, 'USD', 1)"
                    ),
                    {"name": usage_type, "units": units, "amount": amount},
                )
        await upgrade(engine)
        assert await current_revision(engine) == head_revision()
        async with engine.connect() as conn:
            rows = (
                await conn.execute(
                    text(
                        "SELECT product_name, units, amount, currency, invoice_id, position,"
                        " description, unit, billing_start, billing_end FROM invoice_lines"
                        " ORDER BY id"
                    )
                )
            ).all()
        assert [_exact(r) for r in rows] == [
            (
                "North America Bandwidth",
                Decimal("12345678901234567890.123456789"),
                Decimal("0.0000000001"),
                "USD",
                "",
                0,
                "",
                None,
                None,
                None,
            ),
            ("North America Requests", Decimal(5000), None, "USD", "", 0, "", None, None, None),
        ]
        # The upgraded table takes what it could not before: a fee line without units.
        async with engine.begin() as conn:
            await conn.execute(
                text(
                    "INSERT INTO invoice_lines (source, account, month, usage_type, product_name,"
                    " region, units, amount, currency, run_id, description) VALUES ('fastly',"
                    " 'cust', '2024-06', '', '', '', NULL, '25.00', 'USD', 1, 'Support fee')"
                )
            )
            fee = (
                await conn.execute(
                    text(
                        "SELECT units, amount FROM invoice_lines WHERE description = 'Support fee'"
                    )
                )
            ).one()
        assert fee.units is None and Decimal(str(fee.amount)) == Decimal("25.00")
    finally:
        await engine.dispose()


def _exact(row: Any) -> tuple[Any, ...]:
    """A row with its exact-decimal columns (text on SQLite, NUMERIC on PostgreSQL) as Decimal."""
    values = list(row)
    for index in (1, 2):
        if values[index] is not None:
            values[index] = Decimal(str(values[index]))
    return tuple(values)
