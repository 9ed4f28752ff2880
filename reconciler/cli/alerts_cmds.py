"""``alerts test``, ``alerts status`` and ``alerts flush``: the Slack alert outbox by hand."""

from __future__ import annotations

import json
import socket

import aiohttp
import click

from reconciler import __version__
from reconciler.alerts.blocks import Requeued, requeue_failed
from reconciler.alerts.channels.render import render_test
from reconciler.alerts.channels.targets import find_channel, resolve_channel
from reconciler.alerts.delivery import DeliveryReport, deliver_due
from reconciler.alerts.routes import destination_name, route_for
from reconciler.alerts.slack import render_test_message
from reconciler.alerts.status import OutboxStatus, outbox_status, render_status
from reconciler.alerts.webhook import DeliveryResult, SlackWebhookClient
from reconciler.cli import AppContext, group, pass_app, run_async
from reconciler.display import plural
from reconciler.domain import utcnow
from reconciler.errors import ConfigError
from reconciler.logs import register_secret
from reconciler.secrets import resolve_secret
from reconciler.store.db import open_configured_state


@group()
def alerts() -> None:
    """Slack alerts: send a test message, inspect, flush and retry the outbox."""


@alerts.command("test")
@click.option(
    "--source",
    help="Test the webhook that this source's alerts go to (default: the global webhook).",
)
@click.option(
    "--channel",
    help="Test this [[alerts.channels]] channel (webhook, PagerDuty, Teams or email) instead.",
)
@pass_app
def alerts_test(app: AppContext, source: str | None, channel: str | None) -> None:
    """Send a clearly labelled test message to the Slack webhook (or a channel) now; print
    the answer.

    Exits 1 if the message was not accepted.
    """
    settings = app.settings
    if channel is not None:
        _test_channel(app, channel)
        return
    if source is not None:
        settings.source(source)  # an unknown source is a configuration error
        route = route_for(settings, source)
        ref, name = route.ref, destination_name(route.name, source)
    else:
        ref, name = settings.alerts.slack.webhook_ref(), "default"
    url = resolve_secret(ref)
    register_secret(url.get_secret_value())
    payload = render_test_message(hostname=socket.gethostname(), version=__version__)

    async def _send() -> DeliveryResult:
        async with aiohttp.ClientSession() as session:
            return await SlackWebhookClient(session).post(url, payload, name=name)

    result = run_async(_send())
    click.echo(result.describe(name))
    if not result.delivered:
        click.echo("error: the test message was not delivered", err=True)
        raise click.exceptions.Exit(1)


@alerts.command("status")
@click.option("--json", "as_json", is_flag=True, help="Print the status as JSON.")
@pass_app
def alerts_status(app: AppContext, as_json: bool) -> None:
    """Show the alert outbox: queue depth, oldest waiting message, last success, failures
    with their reasons, and messages kept because no webhook is configured."""
    settings = app.settings

    async def _status() -> OutboxStatus:
        async with open_configured_state(settings) as engine:
            return await outbox_status(engine, settings, now=utcnow())

    status = run_async(_status())
    if as_json:
        click.echo(json.dumps(status.to_json(), indent=2))
    else:
        click.echo(render_status(status), nl=False)


@alerts.command("flush")
@pass_app
def alerts_flush(app: AppContext) -> None:
    """Deliver every waiting alert now, ignoring retry backoff (still about one message per
    second per webhook); print what happened.

    Exits 1 if a message could not be delivered.
    """
    settings = app.settings

    async def _flush() -> DeliveryReport:
        async with (
            open_configured_state(settings) as engine,
            aiohttp.ClientSession() as session,
        ):
            client = SlackWebhookClient(session)
            return await deliver_due(engine, settings, client, now=utcnow(), ignore_backoff=True)

    report = run_async(_flush())
    click.echo(
        report.summary()
        if report.attempted or report.unconfigured or report.blocked or report.unrecorded
        else "nothing to deliver"
    )
    for problem in report.problems:
        click.echo(f"  {problem}")
    if report.failed or report.deferred or report.unconfigured or report.blocked:
        raise click.exceptions.Exit(1)


@alerts.command("retry")
@click.option(
    "--id",
    "ids",
    type=int,
    multiple=True,
    help="Re-queue only this failed message (repeatable; default: every failed message).",
)
@pass_app
def alerts_retry(app: AppContext, ids: tuple[int, ...]) -> None:
    """Re-queue failed alert messages (due now, with a fresh attempt count) and try every
    stopped webhook again; the daemon (or `alerts flush`) then delivers them."""
    settings = app.settings

    async def _retry() -> Requeued:
        async with open_configured_state(settings) as engine:
            return await requeue_failed(engine, now=utcnow(), ids=ids)

    done = run_async(_retry())
    click.echo(
        f"re-queued {plural(done.messages, 'failed message')}; "
        f"{plural(done.unblocked, 'webhook')} unblocked"
    )


def _test_channel(app: AppContext, name: str) -> None:
    settings = app.settings
    if find_channel(settings, name) is None:
        known = ", ".join(c.name for c in settings.alerts.channels) or "none configured"
        raise ConfigError([f"alerts test --channel: no channel named '{name}' (known: {known})"])
    target = resolve_channel(settings, name, None)
    payloads = render_test(
        target.channel, hostname=socket.gethostname(), version=__version__, now=utcnow()
    )

    async def _send() -> list[DeliveryResult]:
        async with aiohttp.ClientSession() as session:
            client = SlackWebhookClient(session, timeout_s=target.channel.timeout_s)
            return [
                await target.send(client, payload, message_id=0, repeat=False)
                for payload in payloads
            ]

    results = run_async(_send())
    for result in results:
        click.echo(result.describe(target.name))
    if not all(r.delivered for r in results):
        click.echo("error: the test message was not delivered", err=True)
        raise click.exceptions.Exit(1)
