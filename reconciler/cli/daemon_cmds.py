"""``run`` (the daemon) and ``check`` (is a running daemon ready?)."""

from __future__ import annotations

import json
import urllib.error
import urllib.request

import click

from reconciler.cli import AppContext, command, pass_app, run_service
from reconciler.logs import setup_logging


@command()
@click.option(
    "--sandbox-clock",
    metavar="URL",
    help="Take 'today' from a provider sandbox's simulated clock at URL, and the instant "
    "slots and leases are timed by once the sandbox sets one (for trying the daemon against "
    "'reconciler sandbox serve').",
)
@pass_app
def run(app: AppContext, sandbox_clock: str | None) -> None:
    """Run the daemon: scheduled pulls, alert delivery, reports and housekeeping.

    Meant to run under systemd (Type=notify, see config/reconciler.service). SIGTERM or
    SIGINT stops it gracefully, SIGHUP reloads the configuration.
    """
    from reconciler.daemon.service import Daemon, sandbox_schedule
    from reconciler.daemon.service import sandbox_clock as clock_from

    setup_logging(max(app.verbosity, 1))
    settings = app.settings
    today = clock_from(sandbox_clock) if sandbox_clock else None
    schedule = sandbox_schedule(sandbox_clock) if sandbox_clock else None
    daemon = Daemon(settings, app.loaded_from, today_source=today, schedule_source=schedule)
    status = run_service(daemon.run())
    raise click.exceptions.Exit(status)


@command()
@click.option("--timeout", default=5.0, show_default=True, help="Seconds to wait for an answer.")
@pass_app
def check(app: AppContext, timeout: float) -> None:
    """Exit 0 if the running daemon says it is ready, else 1 with the reason."""
    listen = app.settings.daemon.listen
    if not listen:
        raise click.ClickException("daemon.listen is off: the daemon has no health endpoint")
    host, _, port = listen.rpartition(":")
    host = "127.0.0.1" if host in ("0.0.0.0", "") else host
    url = f"http://{host}:{port}/readyz"
    try:
        with urllib.request.urlopen(url, timeout=timeout) as response:
            body = json.loads(response.read())
    except urllib.error.HTTPError as exc:
        body = json.loads(exc.read() or b"{}")
        problems = body.get("problems") or [f"HTTP {exc.code}"]
        click.echo("not ready: " + "; ".join(problems), err=True)
        raise click.exceptions.Exit(1) from None
    except (urllib.error.URLError, OSError, TimeoutError) as exc:
        reason = getattr(exc, "reason", exc)
        click.echo(f"not ready: no daemon answering at {url} ({reason})", err=True)
        raise click.exceptions.Exit(1) from None
    click.echo(f"ready ({url})")
