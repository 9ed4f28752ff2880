"""``reconciler report``: write one review report and print where it went."""

from __future__ import annotations

import json
from datetime import UTC, date, datetime, time
from pathlib import Path
from typing import cast

import click

from reconciler.cli import AppContext, command, pass_app, run_async
from reconciler.cli.options import check_sources, check_team, parse_day, parse_month
from reconciler.domain import Month, utcnow
from reconciler.settings import ReportFormat, Settings

FORMATS = ("html", "md", "json", "focus-csv")


def months_of(
    settings: Settings,
    now: datetime,
    month: Month | None,
    first: Month | None,
    last: Month | None,
) -> tuple[Month, Month]:
    """The report's months from the options; default: the last ``reports.months`` months."""
    if month is not None:
        if first is not None or last is not None:
            raise click.UsageError("use either --month or --from/--to, not both")
        return month, month
    span = settings.reports.months
    last = last or (Month.of(now.date()) if first is None else max(first, Month.of(now.date())))
    first = first or last - (span - 1)
    if first > last:
        raise click.UsageError(f"--from {first} is after --to {last}")
    return first, last


@command()
@click.option("--month", callback=parse_month, help="Report on one month (YYYY-MM).")
@click.option("--from", "first", callback=parse_month, help="First month of the report (YYYY-MM).")
@click.option(
    "--to", "last", callback=parse_month, help="Last month of the report (YYYY-MM; default: now)."
)
@click.option(
    "--source",
    "sources",
    multiple=True,
    help="Only this source (repeat for several; default: all).",
)
@click.option(
    "--team",
    help="A report on one team: its own cost and projected share, share of the bill, "
    "findings and the usage charts of the lines it owns.",
)
@click.option(
    "--format",
    "fmt",
    type=click.Choice(FORMATS),
    default="html",
    show_default=True,
    help="html (one self-contained file), md (charts as .svg beside it), json or focus-csv.",
)
@click.option(
    "--out",
    type=click.Path(path_type=Path, dir_okay=False),
    help="File to write (default: a dated file in the reports directory).",
)
@click.option(
    "--as-of",
    callback=parse_day,
    help="Report as of this UTC day (YYYY-MM-DD): its months and month-end projections "
    "(for backfills, the demo and the sandbox's simulated clock).",
)
@click.option("--json", "as_json", is_flag=True, help="Print what was written as JSON.")
@pass_app
def report(
    app: AppContext,
    month: Month | None,
    first: Month | None,
    last: Month | None,
    sources: tuple[str, ...],
    team: str | None,
    fmt: str,
    out: Path | None,
    as_of: date | None,
    as_json: bool,
) -> None:
    """Write a review report of the state and print its path.

    Shows open findings, what changed since the previous report, run health, monthly usage
    against expectations with month-end projections, restated lines and every finding.
    """
    # Imported here: rendering pulls in Jinja2 and more that other commands do not need.
    from reconciler.reports.data import ReportRequest
    from reconciler.reports.writer import dated_name, previous_report_time, write_report
    from reconciler.store.db import open_configured_state

    settings = app.settings
    check_sources(settings, sources)
    check_team(settings, team)
    now = utcnow()
    described = now if as_of is None else datetime.combine(as_of, time(23, 59, 59), tzinfo=UTC)
    first_month, last_month = months_of(settings, described, month, first, last)
    report_format = cast(ReportFormat, fmt)
    path = out or settings.reports_directory / dated_name(report_format, now)
    request = ReportRequest(
        first_month,
        last_month,
        sources,
        since=previous_report_time(settings.reports_directory, now),
        team=team,
    )

    async def _write() -> Path:
        async with open_configured_state(settings) as engine:
            outputs = await write_report(
                engine, settings, request, described, [report_format], {report_format: path}
            )
        return outputs[0].path

    written = run_async(_write())
    if as_json:
        data = {"path": str(written), "format": fmt, "first_month": str(first_month)}
        data["last_month"] = str(last_month)
        click.echo(json.dumps(data, indent=2))
    else:
        click.echo(str(written))
