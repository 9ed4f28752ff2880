"""``state list``, ``state show`` and ``findings``: read the tracked state."""

from __future__ import annotations

import json
from typing import Any

import click
from sqlalchemy import select

from reconciler.cli import AppContext, command, group, pass_app, run_async
from reconciler.cli.options import check_sources, check_team, parse_month
from reconciler.display import number as format_quantity
from reconciler.domain import FindingState, Month, PlanItem, canonical_decimal
from reconciler.reconcile.ownership import line_owner
from reconciler.reconcile.plan import describe, item_json
from reconciler.settings import Settings
from reconciler.store.db import open_configured_state, reader
from reconciler.store.ingest import lines_t, versions_t
from reconciler.store.items import load_items
from reconciler.store.review import ReviewRecord, review_records
from reconciler.team_settings import SHARED


def _line_json(row: Any, settings: Settings) -> dict[str, Any]:
    return {
        "key": row.key_hash,
        "source": row.source,
        "provider": row.provider,
        "account": row.account,
        "product": row.product,
        "product_name": row.product_name,
        "usage_type": row.usage_type,
        "region": row.region,
        "service": row.service,
        "service_name": row.service_name,
        "month": row.month,
        "period_start": str(row.period_start),
        "period_end": str(row.period_end),
        "quantity": canonical_decimal(row.quantity),
        "raw_quantity": canonical_decimal(row.raw_quantity)
        if row.raw_quantity is not None
        else None,
        "unit": row.unit,
        "status": row.status,
        "billable": row.billable,
        "present": row.present,
        "versions": row.versions,
        "owner": line_owner(settings, row),
    }


def _version_json(version: Any) -> dict[str, Any]:
    return {
        "run_id": version.run_id,
        "recorded_at": version.recorded_at.isoformat(),
        "quantity": canonical_decimal(version.quantity),
        "unit": version.unit,
        "status": version.status,
        "present": version.present,
    }


@group(lazy_commands={"invoices": "reconciler.cli.invoice_cmds:state_invoices"})
def state() -> None:
    """Inspect the tracked usage lines."""


@state.command("list")
@click.option("--json", "as_json", is_flag=True, help="One JSON object per line (JSON Lines).")
@click.option("--source", help="Only this source.")
@click.option("--month", callback=parse_month, help="Only this month (YYYY-MM).")
@click.option("--all", "include_absent", is_flag=True, help="Include lines that disappeared.")
@click.option("--team", help="Only the lines this team owns ([[teams]]; or 'unallocated').")
@pass_app
def state_list(
    app: AppContext,
    as_json: bool,
    source: str | None,
    month: Month | None,
    include_absent: bool,
    team: str | None,
) -> None:
    """List tracked lines with their current version (and owner, when teams are declared)."""
    settings = app.settings
    if source is not None:
        check_sources(settings, [source])
    if team != SHARED:
        check_team(settings, team)

    async def _rows() -> list[Any]:
        query = select(lines_t).order_by(
            lines_t.c.source,
            lines_t.c.month,
            lines_t.c.product,
            lines_t.c.usage_type,
            lines_t.c.region,
            lines_t.c.service,
            lines_t.c.period_start,
        )
        if source:
            query = query.where(lines_t.c.source == source)
        if month:
            query = query.where(lines_t.c.month == str(month))
        if not include_absent:
            query = query.where(lines_t.c.present.is_(True))
        async with open_configured_state(settings) as engine, reader(engine).connect() as conn:
            return list((await conn.execute(query)).all())

    teams = settings.teams
    for row in run_async(_rows()):
        owner = line_owner(settings, row)
        if team is not None and owner != team:
            continue
        if as_json:
            click.echo(json.dumps(_line_json(row, settings)))
        else:
            service = f" service {row.service_name or row.service}" if row.service else ""
            region = f" [{row.region}]" if row.region else ""
            owned = f"  team {owner}" if teams else ""
            click.echo(
                f"{row.key_hash[:12]}  {row.source}  {row.month}  {row.product_name or row.product}"
                f" / {row.usage_type}{region}{service}  {format_quantity(row.quantity)} "
                f"{row.unit}  {row.status}{'' if row.present else '  (disappeared)'}{owned}"
            )


@state.command("show")
@click.argument("key")
@click.option("--json", "as_json", is_flag=True, help="Print the line and its history as JSON.")
@pass_app
def state_show(app: AppContext, key: str, as_json: bool) -> None:
    """Show one line (KEY: its key or a unique prefix, from 'state list') and its history."""
    settings = app.settings

    async def _load() -> tuple[list[Any], list[Any]]:
        async with open_configured_state(settings) as engine, reader(engine).connect() as conn:
            matches = (
                await conn.execute(
                    select(lines_t).where(lines_t.c.key_hash.startswith(key)).limit(2)
                )
            ).all()
            if len(matches) != 1:
                return list(matches), []
            history = (
                await conn.execute(
                    select(versions_t)
                    .where(versions_t.c.line_id == matches[0].id)
                    .order_by(versions_t.c.id)
                )
            ).all()
            return list(matches), list(history)

    matches, history = run_async(_load())
    if not matches:
        raise click.ClickException(f"no tracked line with key {key!r}: see 'reconciler state list'")
    if len(matches) > 1:
        raise click.ClickException(f"key prefix {key!r} is ambiguous: give more characters")
    if as_json:
        data = {
            "line": _line_json(matches[0], settings),
            "history": [_version_json(v) for v in history],
        }
        click.echo(json.dumps(data, indent=2))
        return
    for name, value in _line_json(matches[0], settings).items():
        click.echo(f"{name:>13}: {value}")
    click.echo("\nhistory (run, recorded at, quantity, unit, status):")
    for version in history:
        gone = "  disappeared" if not version.present else ""
        click.echo(
            f"  run {version.run_id:<6} {version.recorded_at:%Y-%m-%d %H:%M}Z  "
            f"{format_quantity(version.quantity)} {version.unit}  {version.status}{gone}"
        )


@command()
@click.option(
    "--state",
    "states",
    type=click.Choice([s.value for s in FindingState]),
    multiple=True,
    help="Only items in this state (repeatable; default: open).",
)
@click.option("--source", "sources", multiple=True, help="Only this source (repeatable).")
@click.option("--json", "as_json", is_flag=True, help="Print the items as a JSON array.")
@pass_app
def findings(
    app: AppContext, states: tuple[str, ...], sources: tuple[str, ...], as_json: bool
) -> None:
    """List review items (drift and expectation findings) by state."""
    settings = app.settings
    check_sources(settings, sources)
    wanted = [FindingState(s) for s in states] or [FindingState.OPEN]

    async def _load() -> tuple[list[PlanItem], dict[str, ReviewRecord]]:
        async with open_configured_state(settings) as engine, reader(engine).connect() as conn:
            items = await load_items(conn, wanted, list(sources) or None)
            return items, await review_records(conn, wanted)

    items, records = run_async(_load())
    if as_json:
        click.echo(
            json.dumps(
                [_finding_json(item, records.get(item.fingerprint)) for item in items], indent=2
            )
        )
        return
    if not items:
        click.echo(f"No {' or '.join(s.value for s in wanted)} items.")
        return
    for item in items:
        click.echo("\n".join(describe(item)))
        record = records.get(item.fingerprint)
        if record is not None and record.acknowledged_at is not None:
            click.echo(f"      {record.describe()}")


def _finding_json(item: PlanItem, record: ReviewRecord | None) -> dict[str, Any]:
    data = item_json(item)
    at = record.acknowledged_at if record else None
    data["state"] = record.state if record else None
    data["acknowledged_at"] = at.isoformat() if at else None
    data["acknowledged_by"] = record.acknowledged_by if record else None
    data["note"] = record.note if record else None
    return data
