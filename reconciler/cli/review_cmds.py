"""``pull``, ``plan`` and ``apply``: refresh, review and acknowledge."""

from __future__ import annotations

import asyncio
import getpass
import json
import socket
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import replace
from datetime import date, timedelta
from pathlib import Path

import click
from sqlalchemy.ext.asyncio import AsyncEngine

from reconciler.cli import AppContext, command, pass_app, run_async, run_cancellable
from reconciler.cli.faults import explain
from reconciler.cli.options import check_sources, parse_day
from reconciler.display import plural
from reconciler.domain import Severity, utcnow
from reconciler.errors import ReconcilerError, SourceBusyError
from reconciler.providers.base import PullStats
from reconciler.providers.http import HttpClient
from reconciler.reconcile.plan import (
    Plan,
    SavedPlan,
    parse_saved_plan,
    render_json,
    render_text,
    shown_items,
)
from reconciler.reconcile.spend import below_min_impact
from reconciler.refresh import RunOutcome, refresh_source
from reconciler.settings import Settings
from reconciler.store.costs import projected_invoices
from reconciler.store.db import open_configured_state, reader
from reconciler.store.review import apply_acknowledgements, build_plan
from reconciler.store.runs import abandon_stale_runs, emptied_months


def _selected(settings: Settings, names: Sequence[str]) -> list[str]:
    return check_sources(settings, names)


class _Progress:
    """Each source's pages, lines and rate so far, on one refreshed line of a terminal's
    stderr (nothing when stderr is not a terminal, or with -q)."""

    def __init__(self, names: Sequence[str], *, quiet: bool = False) -> None:
        self.enabled = sys.stderr.isatty() and not quiet
        self.began = time.monotonic()
        self.stats: dict[str, PullStats] = {}
        self.names = list(names)

    def page_hook(self, source: str) -> Callable[[PullStats], None]:
        def seen(stats: PullStats) -> None:
            self.stats[source] = stats
            self.show()

        return seen

    def show(self) -> None:
        if not self.enabled:
            return
        elapsed = max(time.monotonic() - self.began, 1e-3)
        parts = [
            f"{name}: {plural(s.pages, 'page')}, {plural(s.lines, 'line')}, "
            f"{s.lines / elapsed:,.0f} lines/s"
            for name in self.names
            if (s := self.stats.get(name)) is not None
        ]
        click.echo("\r\033[K" + " · ".join(parts), nl=False, err=True)

    def done(self) -> None:
        if self.enabled and self.stats:
            click.echo("\r\033[K", nl=False, err=True)


as_of_option = click.option(
    "--as-of",
    callback=parse_day,
    help="Pull as of this UTC day (YYYY-MM-DD) instead of today: for backfills and the "
    "sandbox's simulated clock.",
)


async def refresh_all(
    engine: AsyncEngine,
    settings: Settings,
    names: Sequence[str],
    as_of: date | None = None,
    *,
    quiet: bool = False,
) -> list[RunOutcome]:
    """Pull these sources concurrently, each under its pull lock; outcomes in ``names``
    order. A source another process is pulling, or a database fault, fails that source
    alone."""
    from reconciler.alerts.hook import outbox_hook
    from reconciler.store.pull_lock import source_lock

    await abandon_stale_runs(
        engine,
        older_than=max(timedelta(seconds=settings.daemon.lease_ttl_s), timedelta(hours=1)),
        now=utcnow(),
    )
    progress = _Progress(names, quiet=quiet)

    async def one(name: str, http: HttpClient) -> RunOutcome:
        try:
            async with source_lock(engine, name):
                return await refresh_source(
                    engine,
                    settings,
                    name,
                    http,
                    today=as_of,
                    alert_hook=outbox_hook(settings),
                    on_page=progress.page_hook(name),
                )
        except SourceBusyError as exc:
            return _failed(settings, name, str(exc))
        except Exception as exc:
            return failed_outcome(settings, name, exc)

    try:
        async with HttpClient() as http:
            return list(await asyncio.gather(*(one(name, http) for name in names)))
    finally:
        progress.done()


def _failed(settings: Settings, name: str, message: str) -> RunOutcome:
    provider = settings.sources[settings.source_index(name)].provider
    return RunOutcome(name, provider, 0, PullStats(), 0.0, error=message)


def failed_outcome(settings: Settings, name: str, error: Exception) -> RunOutcome:
    """The outcome of a pull that a fault outside the provider stopped (re-raises a bug)."""
    message = explain(error)
    if message is None:
        raise error
    return _failed(settings, name, message)


def outcome_json(outcome: RunOutcome) -> dict[str, object]:
    s = outcome.stats
    return {
        "source": outcome.source,
        "provider": outcome.provider,
        "run_id": outcome.run_id or None,
        "ok": outcome.ok,
        "error": outcome.error,
        "duration_s": round(outcome.duration_s, 3),
        "lines_read": s.lines,
        "pages": s.pages,
        "api_calls": s.api_calls,
        "retries": s.retries,
        "new_lines": outcome.ingest.new_lines,
        "versions_added": outcome.ingest.versions_added,
        "changes": outcome.ingest.counts(),
        "items_raised": len(outcome.items.raised),
        "items_resolved": len(outcome.items.resolved),
    }


@command()
@click.option("--source", "sources", multiple=True, help="Pull only this source (repeatable).")
@click.option("--json", "as_json", is_flag=True, help="Print one JSON object per source.")
@as_of_option
@pass_app
def pull(app: AppContext, sources: tuple[str, ...], as_json: bool, as_of: date | None) -> None:
    """Pull every configured source now and reconcile it with the state.

    Prints one summary line per source; exits 1 if any source failed.
    """
    settings = app.settings
    names = _selected(settings, sources)
    if not names:
        raise click.ClickException("no sources configured: add [[sources]] to the configuration")

    async def _pull() -> tuple[list[RunOutcome], dict[str, list[tuple[str, int]]]]:
        async with open_configured_state(settings) as engine:
            outcomes = await refresh_all(engine, settings, names, as_of, quiet=app.quiet)
            emptied = {
                o.source: await emptied_months(engine, o.source, o.run_id)
                for o in outcomes
                if o.ok and o.run_id
            }
            return outcomes, emptied

    outcomes, emptied = run_cancellable(_pull())
    if as_json:
        rows = [
            {**outcome_json(o), "emptied_months": _emptied_json(emptied.get(o.source, []))}
            for o in outcomes
        ]
        click.echo(json.dumps(rows, indent=2))
    for outcome in outcomes if not as_json else []:
        if not (app.quiet and outcome.ok):
            click.echo(outcome.summary())
    for source, months in emptied.items():
        if months:
            click.echo(f"warning: {emptied_warning(source, months)}", err=True)
    if not all(o.ok for o in outcomes):
        raise click.exceptions.Exit(1)


def emptied_warning(source: str, months: Sequence[tuple[str, int]]) -> str:
    """``fastly returned no lines at all for 2024-06 (36 lines tracked there): …``"""
    listed = ", ".join(
        f"{month} ({plural(count, 'line')} tracked there)" for month, count in months
    )
    return (
        f"{source} returned no lines at all for {listed}; they are recorded as disappeared: "
        "check that the provider account, contract or token scope did not change"
    )


def _emptied_json(months: Sequence[tuple[str, int]]) -> list[dict[str, object]]:
    return [{"month": month, "lines": count} for month, count in months]


def _render_plan(the_plan: Plan, fmt: str, limit: int, stale: dict[str, str]) -> str:
    if fmt == "json":
        return render_json(the_plan, stale)
    if fmt == "md":
        from reconciler.reconcile.plan_markdown import render_markdown

        return render_markdown(the_plan)
    return render_text(the_plan, limit_per_kind=limit)


@command()
@click.option("--no-refresh", is_flag=True, help="Plan from the stored state without pulling.")
@click.option(
    "--format",
    "fmt",
    type=click.Choice(["text", "json", "md"]),
    default="text",
    show_default=True,
    help="text for a terminal, json for tools, md for a CI log or pull-request comment.",
)
@click.option("--json", "as_json", is_flag=True, help="Print the plan as JSON (--format json).")
@click.option(
    "--out",
    type=click.Path(path_type=Path, dir_okay=False),
    help="Save the plan (JSON) for 'reconciler apply PLANFILE'.",
)
@click.option(
    "--detailed-exitcode",
    is_flag=True,
    help="Exit 2 when an item at or above --min-severity needs review, 0 when none does, "
    "1 on any error.",
)
@click.option(
    "--min-severity",
    type=click.Choice([s.value for s in Severity]),
    default=Severity.WARNING.value,
    show_default=True,
    help="The least severity that makes --detailed-exitcode exit 2 (info: routine month "
    "closes too).",
)
@click.option("--source", "sources", multiple=True, help="Only this source (repeatable).")
@click.option(
    "--limit",
    default=50,
    show_default=True,
    type=click.IntRange(min=0),
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
    fmt: str,
    as_json: bool,
    out: Path | None,
    detailed_exitcode: bool,
    min_severity: str,
    sources: tuple[str, ...],
    limit: int,
    min_impact: bool,
    as_of: date | None,
) -> None:
    """Refresh, then show drift and expectation findings to review, like 'terraform plan'.

    Exit status: 0 done, 1 on any error (a failed refresh, bad usage); with
    --detailed-exitcode, 2 when an item at or above --min-severity needs review.
    """
    settings = app.settings
    names = _selected(settings, sources)

    async def _plan() -> tuple[Plan, list[RunOutcome]]:
        async with open_configured_state(settings) as engine:
            outcomes = (
                []
                if no_refresh
                else await refresh_all(engine, settings, names, as_of, quiet=app.quiet)
            )
            async with reader(engine).connect() as conn:
                built = await build_plan(conn, utcnow(), list(sources) or None)
                invoices = await projected_invoices(conn, settings, sources, as_of)
                if min_impact:
                    built = without_small_changes(built, settings)
                return replace(built, invoices=tuple(invoices)), outcomes

    the_plan, outcomes = run_cancellable(_plan())
    for outcome in outcomes:
        if not (app.quiet and outcome.ok):
            click.echo(outcome.summary(), err=True)
    stale = {o.source: o.error or "" for o in outcomes if not o.ok}
    if out is not None:
        _write_private(out, render_json(the_plan, stale))
        click.echo(f"plan saved to {out} (serial {the_plan.serial})", err=True)
    click.echo(_render_plan(the_plan, "json" if as_json else fmt, limit, stale), nl=False)
    if stale:
        raise click.exceptions.Exit(1)
    if detailed_exitcode and the_plan.needs_review(Severity(min_severity)):
        raise click.exceptions.Exit(2)


def without_small_changes(plan: Plan, settings: Settings) -> Plan:
    """The plan without the items below their source's ``min_impact``."""
    limits = {s.name: s.min_impact for s in settings.sources}
    kept = tuple(i for i in plan.items if not below_min_impact(i, limits.get(i.source)))
    return replace(plan, items=kept)


def _write_private(path: Path, text: str) -> None:
    """Write a plan file atomically and owner-only (0600), even over an existing file."""
    import contextlib
    import os
    import secrets

    temporary = path.with_name(f".{path.name}.{secrets.token_hex(6)}.tmp")
    try:
        fd = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "w", encoding="utf-8") as handle:
            os.fchmod(handle.fileno(), 0o600)
            handle.write(text)
            handle.flush()
            os.fsync(handle.fileno())
        temporary.replace(path)
    except OSError as exc:
        with contextlib.suppress(OSError):
            temporary.unlink()
        raise ReconcilerError(
            f"cannot save the plan to {path}: {exc.strerror or exc} (nothing was written)"
        ) from exc


def _read_plan(path: Path) -> SavedPlan:
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        reason = exc.strerror if isinstance(exc, OSError) else "it is not UTF-8 text"
        raise ReconcilerError(f"cannot read the plan {path}: {reason}") from None
    return parse_saved_plan(text, str(path))


def _who() -> str:
    try:
        user = getpass.getuser()
    except Exception:
        user = "unknown"
    return f"{user}@{socket.gethostname()}"


_NO_TERMINAL = (
    "apply asks for confirmation and there is no terminal to ask on: review with "
    "'reconciler plan', then run 'reconciler apply --auto-approve', or save a plan with "
    "'reconciler plan --out FILE' and run 'reconciler apply FILE'"
)


@command()
@click.argument(
    "planfile", required=False, type=click.Path(path_type=Path, dir_okay=False, exists=True)
)
@click.option("--auto-approve", is_flag=True, help="Do not ask for confirmation.")
@click.option(
    "--limit",
    default=50,
    show_default=True,
    type=click.IntRange(min=0),
    help="Items shown per kind and source (0: all); only the items shown are acknowledged.",
)
@click.option("--note", help="A note recorded with the acknowledgement.")
@click.option("--by", "who", help="Who acknowledges (default: user@host).")
@pass_app
def apply(
    app: AppContext,
    planfile: Path | None,
    auto_approve: bool,
    limit: int,
    note: str | None,
    who: str | None,
) -> None:
    """Acknowledge exactly what a plan showed; refuses a plan made from an older state.

    With PLANFILE (from 'plan --out') applies that plan without asking, like 'terraform
    apply PLANFILE'. Without, shows the current plan (from the stored state, no refresh),
    asks for 'yes' and acknowledges exactly the items it showed; items it did not show
    (past --limit) stay open.
    """
    settings = app.settings

    async def _current() -> Plan:
        async with open_configured_state(settings) as engine, reader(engine).connect() as conn:
            return await build_plan(conn, utcnow())

    left_open = 0
    if planfile is not None:
        saved = _read_plan(planfile)
        serial, expected = saved.serial, saved.acknowledgements
        click.echo(
            f"Applying {planfile}: {plural(len(expected), 'item')}, made at serial {serial}."
        )
    else:
        current = run_async(_current())
        click.echo(render_text(current, limit_per_kind=limit), nl=False)
        shown = shown_items(current, limit_per_kind=limit)
        serial = current.serial
        expected = {i.fingerprint: current.values_hashes[i.fingerprint] for i in shown}
        left_open = len(current.items) - len(expected)
    if not expected:
        click.echo("Nothing to acknowledge.")
        return
    if planfile is None and not auto_approve:
        _confirm(len(expected), left_open)

    async def _apply() -> int:
        async with open_configured_state(settings) as engine:
            return await apply_acknowledgements(
                engine,
                settings,
                serial=serial,
                expected=expected,
                who=who or _who(),
                note=note,
                now=utcnow(),
            )

    count = run_async(_apply())
    click.echo(f"Apply complete! {plural(count, 'item')} acknowledged.")
    if left_open:
        click.echo(
            f"{plural(left_open, 'item')} not shown {'stays' if left_open == 1 else 'stay'} "
            "open: run 'reconciler apply' again, or with --limit 0 to see every item."
        )


def _confirm(count: int, left_open: int) -> None:
    if not sys.stdin.isatty():
        raise ReconcilerError(_NO_TERMINAL)
    what = f"the {plural(count, 'item')} above" if count != 1 else "the item above"
    if left_open:
        what += f" (not the {plural(left_open, 'item')} left out)"
    click.echo(f"\nreconciler will acknowledge {what}. Only 'yes' will be accepted.")
    answer = click.prompt("Enter a value", default="", show_default=False)
    if answer.strip() != "yes":
        click.echo("Apply cancelled.")
        raise click.exceptions.Exit(1)
