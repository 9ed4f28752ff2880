"""``reconciler demo``: the whole loop on the embedded sandbox, in under a minute."""

from __future__ import annotations

import os
import sys
from datetime import date
from pathlib import Path

import click

from reconciler.cli import AppContext, command, pass_app, run_async
from reconciler.reconcile.plan import summary_line


class _Bar:
    """A progress bar on a terminal; a line per simulated week otherwise."""

    def __init__(self) -> None:
        self.tty = sys.stderr.isatty()

    def __call__(self, today: date, done: int, total: int) -> None:
        if self.tty:
            width = 30
            filled = width * done // total
            click.echo(
                f"\r  [{'#' * filled}{'.' * (width - filled)}] {today}  day {done}/{total}",
                nl=False,
                err=True,
            )
            if done == total:
                click.echo(err=True)
        elif today.weekday() == 0 or done == total:
            click.echo(f"  {today}: day {done}/{total}", err=True)


@command()
@click.option(
    "--dir",
    "directory",
    type=click.Path(path_type=Path, file_okay=False),
    default=Path("reconciler-demo"),
    show_default=True,
    help="Where to leave the demo's state, config and reports: a new or empty directory, "
    "or one an earlier demo made (its files are replaced; nothing else is touched).",
)
@pass_app
def demo(app: AppContext, directory: Path) -> None:
    """Fast-forward months of Fastly and Akamai billing against the embedded sandbox.

    Needs no configuration, credentials or network. Prints the plan, writes the report and
    shows the Slack messages it would send (or sends them when SLACK_WEBHOOK_URL is set).
    """
    from reconciler.demo import END, START, render_plan, run_demo
    from reconciler.demo_directory import prepare_directory

    prepare_directory(directory)
    click.echo(
        f"reconciler demo: daily pulls of a Fastly account and an Akamai contract, "
        f"{START} to {END}, with a monthly review (apply) on each 1st."
    )
    slack = {k: v for k, v in os.environ.items() if k == "SLACK_WEBHOOK_URL"}
    result = run_async(run_demo(directory, progress=None if app.quiet else _Bar(), environ=slack))
    click.echo("\nWhat the providers did after the last review:")
    for event in result.events:
        click.echo(f"  {event}")
    if result.notes:
        click.echo(
            "\nAkamai 95/5 Mbps (Web Application Accelerator), each month sent in two periods:"
        )
        for note in result.notes:
            click.echo(f"  {note}")
    if result.teams:
        click.echo("\nShowback ([[teams]]; shared account-level cost split by usage):")
        click.echo(f"  {result.teams}")
    click.echo(f"\n$ reconciler plan   # {result.pulls} pulls later\n")
    click.echo(render_plan(result.plan), nl=False)
    click.echo("\nSlack messages queued (text fallback; the blocks carry the details):")
    if not result.messages:
        click.echo("  none")
    for message in result.messages:
        click.echo("  - " + message.get("text", "").splitlines()[0][:200])
    if result.delivered:
        click.echo(f"  {result.delivered} delivered to the configured Slack webhook")
    else:
        click.echo("  (not sent: set SLACK_WEBHOOK_URL to deliver them)")
    html = next((p for p in result.report_paths if p.suffix == ".html"), None)
    click.echo("\nReports:")
    for path in result.report_paths:
        click.echo(f"  {path}")
    click.echo(
        f"\nKeep exploring:\n  cd {directory}\n  reconciler plan --no-refresh\n"
        "  reconciler state list --month 2024-07\n  reconciler findings --state acknowledged\n"
        f"  reconciler report --format md --as-of {END}\n  reconciler apply"
    )
    if html is not None:
        click.echo(f"\nOpen the report: {html}")
    click.echo(f"\n{summary_line(result.plan)}")
