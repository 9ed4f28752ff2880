"""Each migration carries a database made at the revision before it forward, rows and all.

:func:`database_at` builds a state database at any revision with the rows given (typed by the
current table definitions, restricted to the columns that revision has), so a case for a new
migration is: rows at the previous revision, ``upgrade``, then what the rows became.
"""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import AsyncIterator, Mapping, Sequence
from contextlib import asynccontextmanager
from datetime import UTC, date, datetime
from decimal import Decimal
from pathlib import Path
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Connection
from sqlalchemy.ext.asyncio import AsyncEngine
from sqlmodel import SQLModel

from reconciler.domain import Month
from reconciler.refresh import month_lines, month_lines_query
from reconciler.store.db import create_engine, current_revision, head_revision, upgrade
from reconciler.store.staging import last_run_pages

Rows = Mapping[str, Sequence[Mapping[str, Any]]]
NOW = datetime(2026, 8, 20, 12, tzinfo=UTC)


@asynccontextmanager
async def database_at(url: str, revision: str, rows: Rows) -> AsyncIterator[AsyncEngine]:
    """A database migrated to ``revision`` holding ``rows`` (table name -> rows), in order."""
    engine = create_engine(url, create=True)
    try:
        await upgrade(engine, revision)
        async with engine.begin() as conn:
            for name, table_rows in rows.items():
                table = await conn.run_sync(_table_as_of, name)
                if table_rows:
                    await conn.execute(sa.insert(table), list(table_rows))
        yield engine
    finally:
        await engine.dispose()


def _table_as_of(connection: Connection, name: str) -> sa.Table:
    """The table's current column types, for the columns the database has now."""
    present = {c["name"] for c in sa.inspect(connection).get_columns(name)}
    current = SQLModel.metadata.tables[name]
    columns = [sa.Column(c.name, c.type) for c in current.columns if c.name in present]
    return sa.Table(name, sa.MetaData(), *columns)


def pull_run(run_id: int, source: str, provider: str) -> dict[str, Any]:
    return {
        "id": run_id,
        "source": source,
        "provider": provider,
        "status": "succeeded",
        "started_at": NOW,
        "finished_at": NOW,
        "lines_read": 0,
        "pages": 0,
        "api_calls": 0,
        "retries": 0,
        "versions_added": 0,
        "changes_count": 0,
        "findings_count": 0,
        "coverage": "{}",
        "complete": True,
    }


def usage_line(
    line_id: int, provider: str, usage_type: str, unit: str, **extra: Any
) -> dict[str, Any]:
    values: dict[str, Any] = {
        "id": line_id,
        "key_hash": f"{line_id:032x}",
        "source": provider,
        "provider": provider,
        "account": "acct",
        "product": "1-7KLGH" if provider == "akamai" else "cdn_usage",
        "product_name": "Adaptive Media Delivery" if provider == "akamai" else "CDN",
        "usage_type": usage_type,
        "region": "EMEA" if provider == "akamai" else "Europe",
        "service": "",
        "service_name": "",
        "month": "2026-08",
        "period_start": date(2026, 8, 1),
        "period_end": date(2026, 8, 15),
        "quantity": Decimal("11.3"),
        "raw_quantity": None,
        "unit": unit,
        "status": "collecting",
        "billable": None,
        "provider_updated_at": None,
        "present": True,
        "versions": 1,
        "first_run_id": 1,
        "last_run_id": 1,
    }
    return {**values, **extra}


async def test_0002_fills_the_measure_kind_of_tracked_lines(state_url: str) -> None:
    rows: Rows = {
        "pull_runs": [pull_run(1, "akamai", "akamai"), pull_run(2, "fastly", "fastly")],
        "usage_lines": [
            usage_line(1, "akamai", "95/5 Mbps", "95/5 Mbps"),
            usage_line(2, "akamai", "Peak Mbps", "Peak Mbps"),
            usage_line(3, "akamai", "Total MB", "GB", quantity=Decimal("12345678901.0123456789")),
            usage_line(4, "akamai", "Storage GB", "GB", present=False),
            usage_line(5, "fastly", "Europe Bandwidth", "GB", first_run_id=2, last_run_id=2),
            usage_line(6, "akamai", "Edge Throughput", "Gbps"),
        ],
    }
    async with database_at(state_url, "0001_initial", rows) as engine:
        assert await upgrade(engine, "0002_measure_kinds") == ("0001_initial", "0002_measure_kinds")
        async with engine.connect() as conn:
            lines = SQLModel.metadata.tables["usage_lines"]
            got = (
                await conn.execute(
                    sa.select(lines.c.id, lines.c.measure_kind, lines.c.quantity).order_by(
                        lines.c.id
                    )
                )
            ).all()
        assert [(r.id, r.measure_kind) for r in got] == [
            (1, "percentile"),
            (2, "peak"),
            (3, "volume"),
            (4, "gauge"),
            (5, "volume"),
            (6, "percentile"),
        ]
        assert got[2].quantity == Decimal("12345678901.0123456789")  # carried exactly


async def test_upgrade_from_the_first_release_reaches_head(state_url: str) -> None:
    rows: Rows = {
        "pull_runs": [pull_run(1, "akamai", "akamai")],
        "usage_lines": [usage_line(1, "akamai", "95/5 Mbps", "95/5 Mbps")],
    }
    async with database_at(state_url, "0001_initial", rows) as engine:
        await upgrade(engine)
        assert await current_revision(engine) == head_revision()
        async with engine.connect() as conn:
            lines = SQLModel.metadata.tables["usage_lines"]
            count = (await conn.execute(sa.select(sa.func.count()).select_from(lines))).scalar()
        assert count == 1


def invoice_line(usage_type: str, units: Decimal, amount: Decimal | None) -> dict[str, Any]:
    return {
        "source": "fastly",
        "account": "cust",
        "month": "2026-07",
        "usage_type": "bandwidth",
        "product_name": usage_type,
        "region": "North America",
        "units": units,
        "amount": amount,
        "currency": "USD",
        "run_id": 1,
    }


async def test_0006_keeps_invoice_lines_and_reads_them_as_covering_their_month(
    state_url: str,
) -> None:
    rows: Rows = {
        "pull_runs": [pull_run(1, "fastly", "fastly")],
        "invoice_lines": [
            invoice_line(
                "North America Bandwidth",
                Decimal("12345678901234567890.123456789"),
                Decimal("0.0000000001"),
            ),
            invoice_line("North America Requests", Decimal(5000), None),
        ],
    }
    async with database_at(state_url, "0005_alert_blocks", rows) as engine:
        assert await upgrade(engine, "0006_invoice_line_items") == (
            "0005_alert_blocks",
            "0006_invoice_line_items",
        )
        invoices = SQLModel.metadata.tables["invoice_lines"]
        columns: tuple[str, ...] = ("product_name", "units", "amount", "currency", "invoice_id")
        columns += ("position", "description", "unit", "billing_start", "billing_end")
        async with engine.connect() as conn:
            got = (
                await conn.execute(
                    sa.select(*[invoices.c[c] for c in columns]).order_by(invoices.c.id)
                )
            ).all()
        assert [tuple(r) for r in got] == [
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
                sa.insert(invoices),
                {
                    **invoice_line("", Decimal(0), Decimal("25.00")),
                    "units": None,
                    "usage_type": "",
                    "description": "Support fee",
                },
            )
            fee = (
                await conn.execute(
                    sa.select(invoices.c.units, invoices.c.amount).where(
                        invoices.c.description == "Support fee"
                    )
                )
            ).one()
        assert fee.units is None and fee.amount == Decimal("25.00")


async def test_db_upgrade_command_carries_a_first_release_database(tmp_path: Path) -> None:
    """``reconciler db upgrade`` on a database made by the first release, then ``config check``
    lists its stat types with the kind each got."""
    url = f"sqlite+aiosqlite:///{tmp_path / '.reconciler' / 'state.db'}"
    rows: Rows = {
        "pull_runs": [pull_run(1, "akamai", "akamai")],
        "usage_lines": [
            usage_line(1, "akamai", "95/5 Mbps", "95/5 Mbps"),
            usage_line(2, "akamai", "Total MB", "GB"),
        ],
    }
    async with database_at(url, "0001_initial", rows):
        pass
    (tmp_path / "reconciler.toml").write_text(
        "[[measures]]\nprovider = 'akamai'\nusage_type = 'Total MB'\nkind = 'gauge'\n",
        encoding="utf-8",
    )
    upgraded = _cli("db", "upgrade", cwd=tmp_path)
    assert upgraded.returncode == 0, upgraded.stderr
    assert head_revision() in upgraded.stdout
    checked = _cli("config", "check", cwd=tmp_path)
    assert checked.returncode == 0, checked.stderr
    lines = checked.stdout.splitlines()
    start = lines.index("# stat types in the state: measure kind and why")
    assert lines[start + 1 :] == [
        "#   akamai · Adaptive Media Delivery · 95/5 Mbps (95/5 Mbps): percentile — "
        "built-in catalog (akamai '95/5 Mbps')",
        "#   akamai · Adaptive Media Delivery · Total MB (GB): gauge — "
        "[[measures]] entry 1 of the configuration (stored as volume until the source's next "
        "pull)",
    ]


def _cli(*args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("RECONCILER_")}
    return subprocess.run(
        [sys.executable, "-m", "reconciler", *args],
        cwd=cwd,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )


async def test_0003_gives_existing_runs_their_start_as_heartbeat(state_url: str) -> None:
    started = datetime(2026, 8, 20, 8, 30, tzinfo=UTC)
    running = {**pull_run(1, "fastly", "fastly"), "status": "running", "finished_at": None}
    rows: Rows = {
        "pull_runs": [
            {**running, "started_at": started, "lines_read": 7},
            {**pull_run(2, "fastly", "fastly"), "lines_read": 9},
        ]
    }
    async with database_at(state_url, "0002_measure_kinds", rows) as engine:
        assert await upgrade(engine, "0003_run_heartbeat") == (
            "0002_measure_kinds",
            "0003_run_heartbeat",
        )
        async with engine.connect() as conn:
            runs = SQLModel.metadata.tables["pull_runs"]
            got = (
                await conn.execute(
                    sa.select(runs.c.status, runs.c.lines_read, runs.c.heartbeat_at).order_by(
                        runs.c.id
                    )
                )
            ).all()
        assert [tuple(r) for r in got] == [("running", 7, started), ("succeeded", 9, NOW)]


async def test_0004_keeps_review_items_without_an_impact(state_url: str) -> None:
    finding = {
        "id": 1,
        "fingerprint": "f1",
        "category": "drift",
        "kind": "restated",
        "severity": "critical",
        "source": "akamai",
        "provider": "akamai",
        "account": "",
        "product": "",
        "product_name": "",
        "usage_type": "",
        "region": "",
        "service": "",
        "month": "2026-07",
        "after_quantity": Decimal("141.588"),
        "message": "",
        "state": "open",
        "values_hash": "h",
        "raised_at": NOW,
        "updated_at": NOW,
    }
    rows: Rows = {"pull_runs": [pull_run(1, "akamai", "akamai")], "findings": [finding]}
    async with database_at(state_url, "0003_run_heartbeat", rows) as engine:
        assert await upgrade(engine, "0004_cost") == ("0003_run_heartbeat", "0004_cost")
        async with engine.connect() as conn:
            findings = SQLModel.metadata.tables["findings"]
            got = (
                await conn.execute(
                    sa.select(
                        findings.c.fingerprint,
                        findings.c.after_quantity,
                        findings.c.impact_amount,
                        findings.c.impact_currency,
                    )
                )
            ).all()
            costs = SQLModel.metadata.tables["expected_costs"]
            count = (await conn.execute(sa.select(sa.func.count()).select_from(costs))).scalar()
        assert [tuple(r) for r in got] == [("f1", Decimal("141.588"), None, None)]
        assert count == 0


def outbox_row(row_id: int, state: str) -> dict[str, Any]:
    return {
        "id": row_id,
        "source": "fastly",
        "run_id": row_id,
        "kind": "run",
        "route": "default",
        "payload": '{"text":"x"}',
        "state": state,
        "attempts": 1,
        "next_attempt_at": NOW,
        "last_error": f"error {row_id}",
        "created_at": NOW,
        "sent_at": NOW if state == "sent" else None,
    }


async def test_0005_alert_blocks_keeps_the_outbox(state_url: str) -> None:
    rows: Rows = {
        "alert_outbox": [outbox_row(1, "sent"), outbox_row(2, "pending"), outbox_row(3, "failed")]
    }
    async with database_at(state_url, "0004_cost", rows) as engine:
        assert await upgrade(engine, "0005_alert_blocks") == ("0004_cost", "0005_alert_blocks")
        blocks = SQLModel.metadata.tables["alert_destination_blocks"]
        async with engine.begin() as conn:
            outbox = await conn.run_sync(_table_as_of, "alert_outbox")
            got = (await conn.execute(sa.select(outbox).order_by(outbox.c.id))).all()
            await conn.execute(
                sa.insert(blocks).values(
                    key="k", destination="default", reason="refused", blocked_at=NOW
                )
            )
        assert [r._asdict() for r in got] == [
            outbox_row(i, s) for i, s in ((1, "sent"), (2, "pending"), (3, "failed"))
        ]
        async with engine.connect() as conn:
            assert (await conn.execute(sa.select(blocks.c.key))).scalars().all() == ["k"]


def finding(finding_id: int, kind: str, state: str, **extra: Any) -> dict[str, Any]:
    values: dict[str, Any] = {
        "id": finding_id,
        "fingerprint": f"f{finding_id}",
        "category": "finding",
        "kind": kind,
        "severity": "warning",
        "source": "fastly",
        "provider": "fastly",
        "account": "",
        "product": "",
        "product_name": "bandwidth cap",
        "usage_type": "Europe Bandwidth",
        "region": "",
        "service": "",
        "month": "2026-08",
        "before_quantity": Decimal(20000),
        "before_unit": "GB",
        "before_status": "collecting",
        "after_quantity": Decimal("21700.125"),
        "after_unit": "GB",
        "after_status": "collecting",
        "message": "projects 21700.125 GB",
        "state": state,
        "values_hash": f"h{finding_id}",
        "raised_at": NOW,
        "updated_at": NOW,
        "acknowledged_at": None,
        "acknowledged_by": None,
    }
    return {**values, **extra}


async def test_0007_keeps_findings_and_gives_them_no_forecast_yet(state_url: str) -> None:
    rows: Rows = {
        "findings": [
            finding(
                1, "projected_overage", "acknowledged", acknowledged_at=NOW, acknowledged_by="ops"
            ),
            finding(2, "over_expectation", "open"),
        ]
    }
    async with database_at(state_url, "0006_invoice_line_items", rows) as engine:
        assert await upgrade(engine, "0007_forecast") == (
            "0006_invoice_line_items",
            "0007_forecast",
        )
        async with engine.connect() as conn:
            table = await conn.run_sync(_table_as_of, "findings")
            got = (await conn.execute(sa.select(table).order_by(table.c.id))).all()
        assert [(r.fingerprint, r.kind, r.state, r.values_hash) for r in got] == [
            ("f1", "projected_overage", "acknowledged", "h1"),
            ("f2", "over_expectation", "open", "h2"),
        ]
        assert got[0].after_quantity == Decimal("21700.125") and got[0].acknowledged_by == "ops"
        assert [(r.forecast, r.acknowledged_forecast) for r in got] == [(None, None)] * 2


async def test_0008_keeps_acknowledgements_and_queued_messages(state_url: str) -> None:
    acked = {"acknowledged_at": NOW, "acknowledged_by": "ops"}
    rows: Rows = {
        "findings": [
            finding(1, "over_expectation", "acknowledged", **acked),
            finding(2, "over_expectation", "open"),
        ],
        "alert_outbox": [outbox_row(1, "pending"), outbox_row(2, "sent")],
    }
    async with database_at(state_url, "0007_forecast", rows) as engine:
        assert await upgrade(engine, "0008_acknowledged_values") == (
            "0007_forecast",
            "0008_acknowledged_values",
        )
        findings = SQLModel.metadata.tables["findings"]
        outbox = SQLModel.metadata.tables["alert_outbox"]
        async with engine.connect() as conn:
            got = (await conn.execute(sa.select(findings).order_by(findings.c.id))).all()
            queued = (await conn.execute(sa.select(outbox).order_by(outbox.c.id))).all()
        assert [(r.fingerprint, r.state, r.acknowledged_by) for r in got] == [
            ("f1", "acknowledged", "ops"),
            ("f2", "open", None),
        ]
        # What an acknowledgement accepted was not recorded then: such an item is raised
        # again only by new values, as before.
        assert [(r.acknowledged_quantity, r.acknowledged_status) for r in got] == [(None, None)] * 2
        # A message queued before the column existed announces nothing known: never withdrawn.
        assert [(r.state, r.payload, r.fingerprints) for r in queued] == [
            ("pending", '{"text":"x"}', "[]"),
            ("sent", '{"text":"x"}', "[]"),
        ]


async def test_0009_keeps_runs_and_gives_them_no_snapshot_digest(state_url: str) -> None:
    rows: Rows = {"pull_runs": [pull_run(1, "fastly", "fastly"), pull_run(2, "edge", "akamai")]}
    async with database_at(state_url, "0008_acknowledged_values", rows) as engine:
        assert await upgrade(engine, "0009_snapshot_digest") == (
            "0008_acknowledged_values",
            "0009_snapshot_digest",
        )
        runs = SQLModel.metadata.tables["pull_runs"]
        columns = (runs.c.source, runs.c.status, runs.c.snapshot_digest)
        async with engine.connect() as conn:
            got = (await conn.execute(sa.select(*columns).order_by(runs.c.id))).all()
        # A run recorded before the digest existed is never taken for an identical one:
        # the next pull of its source compares its snapshot line by line.
        assert [(r.source, r.status, r.snapshot_digest) for r in got] == [
            ("fastly", "succeeded", None),
            ("edge", "succeeded", None),
        ]


async def test_0010_indexes_the_account_level_lines_and_the_expectations_read_them(
    state_url: str,
) -> None:
    rows: Rows = {
        "pull_runs": [pull_run(1, "fastly", "fastly")],
        "usage_lines": [
            usage_line(1, "fastly", "Europe Bandwidth", "GB"),
            usage_line(2, "fastly", "Europe Bandwidth", "GB", service="svc-1"),
            usage_line(3, "fastly", "Europe Requests", "requests"),
        ],
    }
    async with database_at(state_url, "0009_snapshot_digest", rows) as engine:
        assert await upgrade(engine, "0010_account_level_index") == (
            "0009_snapshot_digest",
            "0010_account_level_index",
        )
        async with engine.connect() as conn:
            indexes = await conn.run_sync(lambda sync: sa.inspect(sync).get_indexes("usage_lines"))
            account = await month_lines(conn, "fastly", [Month(2026, 8)], services=False)
            every = await month_lines(conn, "fastly", [Month(2026, 8)], services=True)
        (index,) = [i for i in indexes if i["name"] == "ix_usage_lines_account_level"]
        assert index["column_names"] == ["source", "month"]
        assert sorted(line.usage_type for line in account) == [
            "Europe Bandwidth",
            "Europe Requests",
        ]
        assert sorted(line.service for line in every) == ["", "", "svc-1"]
        if engine.dialect.name == "sqlite":
            query = month_lines_query("fastly", [Month(2026, 8)], services=False)
            compiled = query.compile(engine, compile_kwargs={"literal_binds": True})
            async with engine.connect() as conn:
                plan = (await conn.exec_driver_sql(f"EXPLAIN QUERY PLAN {compiled}")).all()
            assert "ix_usage_lines_account_level" in " ".join(str(step) for step in plan)


async def test_0011_keeps_runs_and_gives_them_no_page_digests(state_url: str) -> None:
    rows: Rows = {"pull_runs": [pull_run(1, "fastly", "fastly"), pull_run(2, "edge", "akamai")]}
    async with database_at(state_url, "0010_account_level_index", rows) as engine:
        assert await upgrade(engine) == ("0010_account_level_index", "0011_page_digests")
        runs = SQLModel.metadata.tables["pull_runs"]
        async with engine.connect() as conn:
            got = (await conn.execute(sa.select(runs).order_by(runs.c.id))).all()
            # The next pull of a source finds no page digests: it stages every page as lines.
            pages = [await last_run_pages(conn, source) for source in ("fastly", "edge")]
        assert [(r.source, r.status, r.page_digests) for r in got] == [
            ("fastly", "succeeded", None),
            ("edge", "succeeded", None),
        ]
        assert pages == [[], []]
