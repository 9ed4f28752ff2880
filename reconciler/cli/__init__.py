"""The ``reconciler`` command line: a click group; the only place that runs an event loop.

Each command module registers its commands on :data:`cli`. A :class:`ReconcilerError` becomes
one ``error: ...`` line on stderr and exit status 1.
"""

from __future__ import annotations

import asyncio
import sys
from collections.abc import Coroutine
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

import click

from reconciler import __version__
from reconciler.errors import ConfigError, ReconcilerError
from reconciler.logs import redact, setup_logging
from reconciler.secret_mask import register_configured_secrets
from reconciler.settings import Settings, load_settings

T = TypeVar("T")


@dataclass
class AppContext:
    """What every command gets: where the config is and, once loaded, the settings."""

    config_path: Path | None
    verbosity: int = 0
    _settings: Settings | None = field(default=None, repr=False)
    _loaded_from: Path | None = None

    @property
    def settings(self) -> Settings:
        if self._settings is None:
            self._settings, self._loaded_from = load_settings(self.config_path)
            # Masked from here on, before any source is opened (one may echo another's).
            register_configured_secrets(self._settings)
        return self._settings

    @property
    def loaded_from(self) -> Path | None:
        _ = self.settings
        return self._loaded_from


pass_app = click.make_pass_decorator(AppContext)


def run_async(coro: Coroutine[Any, Any, T]) -> T:
    return asyncio.run(coro)


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, "--version", prog_name="reconciler")
@click.option(
    "--config",
    "config_path",
    type=click.Path(path_type=Path, dir_okay=False),
    help="Configuration file (default: $RECONCILER_CONFIG, ./reconciler.toml, "
    "/etc/reconciler/reconciler.toml).",
)
@click.option("-v", "--verbose", count=True, help="More log output (-v info, -vv debug).")
@click.pass_context
def cli(ctx: click.Context, config_path: Path | None, verbose: int) -> None:
    """Catch CDN billing surprises before the invoice does.

    reconciler pulls Fastly and Akamai billing usage into a state database, diffs each run
    against the last, checks usage against declared expectations, and shows what to review
    like 'terraform plan'.
    """
    setup_logging(verbose)
    ctx.obj = AppContext(config_path=config_path, verbosity=verbose)


def main() -> None:
    from reconciler.cli import commands  # noqa: F401  (registers the commands)

    try:
        status = cli.main(standalone_mode=False, prog_name="reconciler")
        if isinstance(status, int) and status:
            sys.exit(status)
    except click.exceptions.Exit as exc:
        sys.exit(exc.exit_code)
    except click.ClickException as exc:
        exc.show()
        sys.exit(exc.exit_code)
    except click.exceptions.Abort:
        click.echo("Aborted.", err=True)
        sys.exit(1)
    except ConfigError as exc:
        click.echo(redact(f"error: {exc}"), err=True)
        sys.exit(1)
    except ReconcilerError as exc:
        click.echo(redact(f"error: {exc}"), err=True)
        sys.exit(1)
    except KeyboardInterrupt:
        click.echo("interrupted", err=True)
        sys.exit(130)
