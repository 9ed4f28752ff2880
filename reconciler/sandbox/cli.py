"""``reconciler sandbox serve``: run the provider sandbox until SIGINT or SIGTERM."""

from __future__ import annotations

import asyncio
import os
import signal
from datetime import date, datetime
from pathlib import Path

import click

from reconciler.sandbox.scenario import SCENARIOS, named_scenario
from reconciler.sandbox.server import SandboxServer


def _parse_day(ctx: click.Context, param: click.Parameter, value: str | None) -> date | None:
    if value is None:
        return None
    try:
        return datetime.strptime(value, "%Y-%m-%d").date()
    except ValueError:
        raise click.BadParameter("expected a date YYYY-MM-DD") from None


@click.group("sandbox")
def sandbox_group() -> None:
    """A local stand-in for the Fastly and Akamai billing APIs, for trying reconciler."""


@sandbox_group.command("serve")
@click.option("--host", default="127.0.0.1", show_default=True, help="Address to listen on.")
@click.option("--port", default=8787, show_default=True, type=int, help="Port (0: any free).")
@click.option(
    "--scenario",
    "scenario_name",
    default="default",
    show_default=True,
    type=click.Choice(sorted(SCENARIOS)),
    help="Which account to simulate.",
)
@click.option("--seed", type=int, default=None, help="Seed for the scenario's numbers.")
@click.option(
    "--today",
    callback=_parse_day,
    default=None,
    help="Simulated day YYYY-MM-DD (default: the scenario's).",
)
@click.option(
    "--edgerc-out",
    type=click.Path(path_type=Path, dir_okay=False),
    default=None,
    help="Also write the .edgerc section to this file (mode 0600).",
)
def serve(
    host: str,
    port: int,
    scenario_name: str,
    seed: int | None,
    today: date | None,
    edgerc_out: Path | None,
) -> None:
    """Serve both providers and the /_sandbox/ control API until stopped."""
    scenario = named_scenario(scenario_name, seed=seed, today=today)
    try:
        asyncio.run(_serve(SandboxServer(scenario, host=host, port=port), edgerc_out))
    except OSError as e:
        raise click.ClickException(f"cannot listen on {host}:{port}: {e.strerror or e}") from e


async def _serve(server: SandboxServer, edgerc_out: Path | None) -> None:
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    async with server:
        edgerc_path = "sandbox.edgerc"
        if edgerc_out is not None:
            _write_private(edgerc_out, server.edgerc_text())
            edgerc_path = str(edgerc_out)
        click.echo(_banner(server, edgerc_path))
        await stop.wait()
        click.echo("sandbox: stopping")


def _write_private(path: Path, text: str) -> None:
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w", encoding="utf-8") as f:
        f.write(text)


def _banner(server: SandboxServer, edgerc_path: str) -> str:
    scenario = server.scenario
    return "\n".join(
        [
            f"sandbox: scenario '{scenario.name}' (seed {scenario.seed}), "
            f"today {server.state.today.isoformat()}, serving {server.base_url}",
            f"control API: {server.base_url}/_sandbox/ (no credentials)",
            "",
            "# Fastly token:",
            f"export FASTLY_API_TOKEN={server.fastly_token}",
            "",
            f"# Akamai .edgerc ({edgerc_path}):",
            server.edgerc_text().rstrip(),
            "",
            "# reconciler.toml:",
            server.config_snippet(edgerc_path=edgerc_path).rstrip(),
            "",
        ]
    )


if __name__ == "__main__":  # python -m reconciler.sandbox.cli serve ...
    sandbox_group()
