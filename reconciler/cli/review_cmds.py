"""``pull``, ``plan`` and ``apply``: refresh, review and acknowledge."""

from __future__ import annotations

import getpass
import socket
import sys
from collections.abc import Sequence
from dataclasses import replace
from datetime import date, timedelta
from pathlib import Path

import click
from sqlalchemy.ext.asyncio import AsyncEngine

from reconciler.cli import AppContext, cli, pass_app, run_async
from reconciler.domain import utcnow
from reconciler.errors import ConfigError
from reconciler.providers.base import PullStats
from reconciler.providers.http import HttpClient
from reconciler.reconcile.plan import Plan, parse_saved_plan, render_json, render_text
from reconciler.reconcile.spend import below_min_impact
from reconciler.refresh import RunOutcome, refresh_source
from reconciler.settings import Settings
from reconciler.store.costs import projected_invoices
from reconciler.store.db import open_state, reader
from reconciler.store.review import apply_acknowledgements, build_plan
from reconciler.store.runs import abandon_stale_runs


def _selected(settings: Settings, names: Sequence[str]) -> list[str]:
    known = [s.name for s in settings.sources]
    unknown = [n for n in names if n not in known]
    if unknown:
        raise ConfigError(
            [
                f"--source: no source named {n!r} (configured: {', '.join(known) or 'none'})"
                for n in unknown
            ]
        )
    return list(names) or known


class _Progress:
    """Pages and lines so far, on one refreshed terminal line (nothing when not a terminal)."""

    def __init__(self, source: str) -> None:
        self.source = source
        self.enabled = sys.stderr.isatty()

    def __call__(self, stats: PullStats) -> None:
        if self.enabled:
            click.echo(
                f"\r{self.source}: {stats.pages} pages, {stats.lines:,} lines, "
                f"{stats.api_calls} API calls",
                nl=False,
                err=True,
            )

    def done(self) -> None:
        if self.enabled:
            click.echo("\r\033[K", nl=False, err=True)


def _parse_as_of(ctx: click.Context, param: click.Parameter, value: str | None) -> date | None:
    if value is None:
        return None
    try:
        return date.fromisoformat(value)
    except ValueError:
        raise click.BadParameter(f"{value!r} is not a date (YYYY-MM-DD)") from None


as_of_option = click.option(
    "--as-of",
    callback=_parse_as_of,
    help="Pull as of this UTC day (YYYY-MM-DD) instead of today: for backfills and the "
    "sandbox's simulated clock.",
)


async def refresh_all(
    engine: AsyncEngine, settings: Settings, names: Sequence[str], as_of: date | None = None
) -> list[RunOutcome]:
    from reconciler.alerts.hook import outbox_hook

    await abandon_stale_runs(
        engine,
        older_than=max(timedelta(seconds=settings.daemon.lease_ttl_s), timedelta(hours=1)),
        now=utcnow(),
    )
    outcomes = []
    async with HttpClient() as http:
        for name in names:
            progress = _Progress(name)
            outcome = await refresh_source(
                engine,
                settings,
                name,
                http,
                today=as_of,
                alert_hook=outbox_hook(settings),
                on_page=progress,
            )
            progress.done()
            outcomes.append(outcome)
    return outcomes


@cli.command()
@click.option("--source", "sources", multiple=True, help="Pull only this source (repeatable).")
@as_of_option
@pass_app
def pull(app: AppContext, sources: tuple[str, ...], as_of: date | None) -> None:
    """Pull every configured source now and reconcile it with the state.

    Prints one summary line per source; exits 1 if any source failed.
    """
    settings = app.settings
    names = _selected(settings, sources)
    if not names:
        raise click.ClickException("no sources configured: add [[sources]] to the configuration")

    async def _pull() -> list[RunOutcome]:
        async with open_state(settings.database_url) as engine:
            return await refresh_all(engine, settings, names, as_of)

    outcomes = run_async(_pull())
    for outcome in outcomes:
        click.echo(outcome.summary())
    if not all(o.ok for o in outcomes):
        raise click.exceptions.Exit(1)


@cli.command()
@click.option("--no-refresh", is_flag=True, help="Plan from the stored state without pulling.")
@click.option("--json", "as_json", is_flag=True, help="Print the plan as JSON.")
@click.option(
    "--out",
    type=click.Path(path_type=Path, dir_okay=False),
    help="Save the plan (JSON) for 'reconciler apply PLANFILE'.",
)
@click.option(
    "--detailed-exitcode",
    is_flag=True,
    help="Exit 0 when there is nothing to review, 2 when there is, 1 on error.",
)
@click.option("--source", "sources", multiple=True, help="Only this source (repeatable).")
@click.option(
    "--limit",
    default=50,
    show_default=True,
    help="Items shown per kind and source in the text plan (0: all).",
)
@click.option(
    "--min-impact",
    "min_impact",
    is_flag=True,
    help="Leave out items whose money impact is below their source's min_impact.",
)
@as_of_option
@pass_app
def plan(
    app: AppContext,
    no_refresh: bool,
    as_json: bool,
    out: Path | None,
    detailed_exitcode: bool,
    sources: tuple[str, ...],
    limit: int,
    min_impact: bool,
    as_of: date | None,
) -> None:
    """Refresh, then show drift and expectation findings to review, like 'terraform plan'."""
    settings = app.settings
    names = _selected(settings, sources)

    async def _plan() -> tuple[Plan, list[RunOutcome]]:
        async with open_state(settings.database_url) as engine:
            outcomes = [] if no_refresh else await refresh_all(engine, settings, names, as_of)
            async with reader(engine).connect() as conn:
                built = await build_plan(conn, utcnow(), list(sources) or None)
                invoices = await projected_invoices(conn, settings, sources, as_of)
                if min_impact:
                    built = without_small_changes(built, settings)
                return replace(built, invoices=tuple(invoices)), outcomes

    the_plan, outcomes = run_async(_plan())
    for outcome in outcomes:
        click.echo(outcome.summary(), err=True)
    if out is not None:
        _write_private(out, render_json(the_plan))
        click.echo(f"plan saved to {out} (serial {the_plan.serial})", err=True)
    click.echo(
        render_json(the_plan) if as_json else render_text(the_plan, limit_per_kind=limit), nl=False
    )
    if not all(o.ok for o in outcomes):
        raise click.exceptions.Exit(1)
    if detailed_exitcode and not the_plan.empty:
        raise click.exceptions.Exit(2)


def without_small_changes(plan: Plan, settings: Settings) -> Plan:
    """The plan without the items below their source's ``min_impact``."""
    limits = {s.name: s.min_impact for s in settings.sources}
    kept = tuple(i for i in plan.items if not below_min_impact(i, limits.get(i.source)))
    return replace(plan, items=kept)


def _write_private(path: Path, text: str) -> None:
    import os

    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w", encoding="utf-8") as handle:
        handle.write(text)


def _who() -> str:
    try:
        user = getpass.getuser()
    except Exception:
        user = "unknown"
    return f"{user}@{socket.gethostname()}"


@cli.command()
@click.argument(
    "planfile", required=False, type=click.Path(path_type=Path, dir_okay=False, exists=True)
)
@click.option("--auto-approve", is_flag=True, help="Do not ask for confirmation.")
@click.option("--note", help="A note recorded with the acknowledgement.")
@click.option("--by", "who", help="Who acknowledges (default: user@host).")
@pass_app
def apply(
    app: AppContext, planfile: Path | None, auto_approve: bool, note: str | None, who: str | None
) -> None:
    """Acknowledge exactly what a plan showed; refuses a plan made from an older state.

    With PLANFILE (from 'plan --out') applies that plan; without, shows the current plan
    (from the stored state, no refresh) and asks for 'yes'.
    """
    settings = app.settings

    async def _current() -> Plan:
        async with open_state(settings.database_url) as engine, reader(engine).connect() as conn:
            return await build_plan(conn, utcnow())

    if planfile is not None:
        saved = parse_saved_plan(planfile.read_text(encoding="utf-8"), str(planfile))
        serial, expected = saved.serial, saved.acknowledgements
        click.echo(f"Applying {planfile}: {len(expected)} item(s), made at serial {serial}.")
    else:
        current = run_async(_current())
        click.echo(render_text(current), nl=False)
        serial, expected = current.serial, current.expected_acknowledgements()
    if not expected:
        click.echo("Nothing to acknowledge.")
        return
    if not auto_approve:
        click.echo("\nreconciler will acknowledge the items above. Only 'yes' will be accepted.")
        answer = click.prompt("Enter a value", default="", show_default=False)
        if answer.strip() != "yes":
            click.echo("Apply cancelled.")
            raise click.exceptions.Exit(1)

    async def _apply() -> int:
        async with open_state(settings.database_url) as engine:
            return await apply_acknowledgements(
                engine, serial=serial, expected=expected, who=who or _who(), note=note, now=utcnow()
            )

    count = run_async(_apply())
    click.echo(f"Apply complete! {count} item(s) acknowledged.")
