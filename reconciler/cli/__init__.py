"""The ``reconciler`` command line: a click group; the only place that runs an event loop.

Each command module registers its commands on :data:`cli`. A :class:`ReconcilerError` becomes
one ``error: ...`` line on stderr and exit status 1.
"""

from __future__ import annotations

import asyncio
import logging
import signal
import sys
from collections.abc import Coroutine
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

import click

from reconciler import __version__
from reconciler.cli.faults import explain
from reconciler.errors import ConfigError, ReconcilerError
from reconciler.logs import redact, setup_logging
from reconciler.secret_mask import register_configured_secrets
from reconciler.settings import Settings, load_settings

T = TypeVar("T")


@dataclass
class AppContext:
    """What every command gets: where the config is and, once loaded, the settings."""

    config_path: Path | None = None
    verbosity: int = 0
    quiet: bool = False
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

    def apply_logging(self) -> None:
        setup_logging(0 if self.quiet else self.verbosity)
        if self.quiet:
            logging.getLogger().setLevel(logging.ERROR)


pass_app = click.make_pass_decorator(AppContext)


def run_async(coro: Coroutine[Any, Any, T]) -> T:
    return asyncio.run(coro)


class TerminatedError(ReconcilerError):
    """SIGTERM stopped a command that pulls; what it was doing was rolled back."""


def run_cancellable(coro: Coroutine[Any, Any, T]) -> T:
    """Run ``coro``; SIGTERM cancels it (a pull in progress records its run as cancelled and
    stores nothing) and raises :class:`TerminatedError`."""

    async def _main() -> T:
        loop = asyncio.get_running_loop()
        task = asyncio.current_task()
        assert task is not None
        loop.add_signal_handler(signal.SIGTERM, task.cancel)
        try:
            return await coro
        finally:
            loop.remove_signal_handler(signal.SIGTERM)

    try:
        return asyncio.run(_main())
    except asyncio.CancelledError:
        raise TerminatedError(
            "stopped by SIGTERM: the pull in progress was cancelled and nothing was stored"
        ) from None


# Global options are accepted before the command and after it ('reconciler pull -v').
CONFIG_HELP = (
    "Configuration file (default: $RECONCILER_CONFIG, ./reconciler.toml, "
    "/etc/reconciler/reconciler.toml)."
)
VERBOSE_HELP = "More log output (-v info, -vv debug)."
QUIET_HELP = "Only errors: no progress, no log lines below error, no summaries of success."


def _global_option(ctx: click.Context, param: click.Parameter, value: Any) -> None:
    if value in (None, 0, False):
        return
    app = ctx.ensure_object(AppContext)
    if param.name == "config_path":
        app.config_path = value
    elif param.name == "verbose":
        app.verbosity += value
    elif param.name == "quiet":
        app.quiet = True
    app.apply_logging()


def _global_params() -> list[click.Parameter]:
    common: dict[str, Any] = {"expose_value": False, "callback": _global_option}
    return [
        click.Option(
            ["--config", "config_path"],
            type=click.Path(path_type=Path, dir_okay=False),
            help=CONFIG_HELP,
            **common,
        ),
        click.Option(["-v", "--verbose", "verbose"], count=True, help=VERBOSE_HELP, **common),
        click.Option(["-q", "--quiet", "quiet"], is_flag=True, help=QUIET_HELP, **common),
    ]


def _add_global_params(command: click.Command) -> None:
    taken = {opt for param in command.params for opt in param.opts}
    command.params.extend(p for p in _global_params() if not taken & set(p.opts))


class ReconcilerCommand(click.Command):
    """A command that also accepts the global options after its name."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        _add_global_params(self)


class ReconcilerGroup(click.Group):
    """A group whose commands and sub-groups accept the global options after their name."""

    command_class = ReconcilerCommand
    group_class = type  # sub-groups are ReconcilerGroups too

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        _add_global_params(self)


@click.group(cls=ReconcilerGroup, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, "--version", prog_name="reconciler")
@click.pass_context
def cli(ctx: click.Context) -> None:
    """Catch CDN billing surprises before the invoice does.

    reconciler pulls Fastly and Akamai billing usage into a state database, diffs each run
    against the last, checks usage against declared expectations, and shows what to review
    like 'terraform plan'.

    Exit status: 0 done, 1 on any error (including bad usage); 'plan --detailed-exitcode'
    exits 2 when items need review. Global options (--config, -v, -q) go before or after
    the command.
    """
    ctx.ensure_object(AppContext).apply_logging()


def main() -> None:
    from reconciler.cli import commands  # noqa: F401  (registers the commands)

    try:
        status = cli.main(standalone_mode=False, prog_name="reconciler")
        if isinstance(status, int) and status:
            sys.exit(status)
    except click.exceptions.Exit as exc:
        sys.exit(exc.exit_code)
    except click.UsageError as exc:
        exc.show()
        sys.exit(1)  # never 2: with --detailed-exitcode, 2 means "items to review"
    except click.ClickException as exc:
        exc.show()
        sys.exit(exc.exit_code)
    except click.exceptions.Abort:
        click.echo("Aborted.", err=True)
        sys.exit(1)
    except ConfigError as exc:
        click.echo(redact(f"error: {exc}"), err=True)
        sys.exit(1)
    except TerminatedError as exc:
        click.echo(f"error: {exc}", err=True)
        sys.exit(128 + signal.SIGTERM)
    except ReconcilerError as exc:
        click.echo(redact(f"error: {exc}"), err=True)
        sys.exit(1)
    except KeyboardInterrupt:
        click.echo("interrupted", err=True)
        sys.exit(130)
    except Exception as exc:
        message = explain(exc)
        if message is None:
            raise
        click.echo(redact(f"error: {message}"), err=True)
        sys.exit(1)
