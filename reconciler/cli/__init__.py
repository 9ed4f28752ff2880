"""The ``reconciler`` command line: a click group; the only place that runs an event loop.

Each command lives in a module of its own, imported only when that command runs: :data:`COMMANDS`
says where each is and :data:`SUMMARIES` what ``--help`` lists for it, so ``reconciler --version``
and ``--help`` load neither the settings nor the store, and ``pull`` never loads the sandbox,
Alembic or the reports. A
:class:`ReconcilerError` becomes one ``error: ...`` line on stderr and exit status 1.
"""

from __future__ import annotations

import importlib
import logging
import signal
import sys
from collections.abc import Callable, Coroutine, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar

import click

from reconciler import __version__
from reconciler.errors import ConfigError, ReconcilerError
from reconciler.logs import redact, setup_logging

if TYPE_CHECKING:
    from reconciler.settings import Settings

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
            from reconciler.secret_mask import register_configured_secrets
            from reconciler.settings import load_settings

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


def _prepare_for_work() -> None:
    from reconciler.memory import return_large_buffers

    return_large_buffers()  # a pull's freed pages are given back, not kept resident


def run_async(coro: Coroutine[Any, Any, T]) -> T:
    import asyncio  # here, not at the top: --version and help need no event loop

    _prepare_for_work()
    return asyncio.run(coro)


# How long the daemon's exit waits for the tasks still running once its work has ended.
STRAY_TASKS_GRACE_S = 5.0


def run_service(coro: Coroutine[Any, Any, T], *, grace_s: float = STRAY_TASKS_GRACE_S) -> T:
    """Run the daemon's ``coro`` like ``asyncio.run``, except that a task still running once
    it returns cannot keep the process alive: such tasks are cancelled and waited for at
    most ``grace_s``, and one that still has not ended is named in a warning and left
    behind (``asyncio.run`` would wait for it for ever, and systemd would have to kill the
    service)."""
    import asyncio

    _prepare_for_work()
    loop = asyncio.new_event_loop()
    asyncio.set_event_loop(loop)
    try:
        return loop.run_until_complete(coro)
    finally:
        try:
            loop.run_until_complete(_end_stray_tasks(grace_s))
            loop.run_until_complete(_bounded(loop.shutdown_asyncgens(), grace_s))
            loop.run_until_complete(loop.shutdown_default_executor())
        finally:
            asyncio.set_event_loop(None)
            loop.close()


async def _end_stray_tasks(grace_s: float) -> None:
    import asyncio

    current = asyncio.current_task()
    stray = [task for task in asyncio.all_tasks() if task is not current]
    if not stray:
        return
    for task in stray:
        task.cancel()
    _, left = await asyncio.wait(stray, timeout=grace_s)
    for task in stray:
        if task in left or task.cancelled() or task.exception() is None:
            continue
        error = task.exception()
        logging.getLogger(__name__).warning(
            "task %s failed while the process stopped: %s: %s",
            task.get_name(),
            error.__class__.__name__,
            error,
        )
    if left:
        logging.getLogger(__name__).warning(
            "exiting with %d tasks that did not end within %gs of their cancel: %s",
            len(left),
            grace_s,
            ", ".join(sorted(_describe_task(task) for task in left)),
        )


def _describe_task(task: Any) -> str:
    coro = task.get_coro()
    return f"{task.get_name()} ({getattr(coro, '__qualname__', coro)})"


async def _bounded(awaitable: Coroutine[Any, Any, None], timeout_s: float) -> None:
    import asyncio

    try:
        async with asyncio.timeout(timeout_s):
            await awaitable
    except TimeoutError:
        logging.getLogger(__name__).warning(
            "asynchronous generators still closing %gs after the stop: left behind", timeout_s
        )


class TerminatedError(ReconcilerError):
    """SIGTERM stopped a command that pulls; what it was doing was rolled back."""


def run_cancellable(coro: Coroutine[Any, Any, T]) -> T:
    """Run ``coro``; SIGTERM cancels it (a pull in progress records its run as cancelled and
    stores nothing) and raises :class:`TerminatedError`."""
    import asyncio

    _prepare_for_work()

    # The result is kept out of the task: when asyncio.run restores its SIGINT handler, the
    # signal module builds the repr of the old one, which names the task and the full repr
    # of its result (tens of megabytes for a pull with many changed lines).
    results: list[T] = []

    async def _main() -> None:
        loop = asyncio.get_running_loop()
        task = asyncio.current_task()
        assert task is not None

        terminated: list[bool] = []

        def terminate() -> None:
            # Once: a second cancel while the first one's cleanup closes a database
            # connection can leave that close waiting for ever (see reconciler.periodic).
            if not terminated:
                terminated.append(True)
                task.cancel()

        loop.add_signal_handler(signal.SIGTERM, terminate)
        try:
            results.append(await coro)
        finally:
            loop.remove_signal_handler(signal.SIGTERM)

    try:
        asyncio.run(_main())
        return results[0]
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
    """A group whose commands and sub-groups accept the global options after their name.

    ``lazy_commands`` maps a command's name to ``module:attribute``: the module is imported
    when the command is looked up, not before. ``summaries`` (name → the first paragraph of
    the command's help) lets help list a lazy command without importing it.
    """

    command_class = ReconcilerCommand
    group_class = type  # sub-groups are ReconcilerGroups too

    def __init__(
        self,
        *args: Any,
        lazy_commands: Mapping[str, str] | None = None,
        summaries: Mapping[str, str] | None = None,
        **kwargs: Any,
    ) -> None:
        super().__init__(*args, **kwargs)
        self.lazy_commands = dict(lazy_commands or {})
        self.summaries = dict(summaries or {})
        _add_global_params(self)

    def list_commands(self, ctx: click.Context) -> list[str]:
        return sorted({*super().list_commands(ctx), *self.lazy_commands})

    def get_command(self, ctx: click.Context, cmd_name: str) -> click.Command | None:
        where = self.lazy_commands.get(cmd_name)
        if where is None:
            return super().get_command(ctx, cmd_name)
        module_name, _, attribute = where.partition(":")
        found = getattr(importlib.import_module(module_name), attribute)
        if not isinstance(found, click.Command):
            raise TypeError(f"{where} is not a click command")
        return found

    def listed_help(self, ctx: click.Context, name: str, limit: int) -> str | None:
        """What help lists for command ``name`` (None: a hidden or unknown command)."""
        if name in self.summaries:
            # Shortened as click shortens a command's own help.
            return click.Command(name, help=self.summaries[name]).get_short_help_str(limit)
        found = self.get_command(ctx, name)
        return None if found is None or found.hidden else found.get_short_help_str(limit)

    def format_commands(self, ctx: click.Context, formatter: click.HelpFormatter) -> None:
        names = self.list_commands(ctx)
        if not names:
            return
        limit = formatter.width - 6 - max(map(len, names))
        rows = [(name, self.listed_help(ctx, name, limit)) for name in names]
        listed = [(name, text) for name, text in rows if text is not None]
        if listed:
            with formatter.section("Commands"):
                formatter.write_dl(listed)

    def resolve_command(
        self, ctx: click.Context, args: list[str]
    ) -> tuple[str | None, click.Command | None, list[str]]:
        try:
            return super().resolve_command(ctx, args)
        except click.exceptions.NoSuchCommand as exc:
            # click suggests a near name among the commands loaded so far: offer them all.
            raise click.exceptions.NoSuchCommand(
                exc.command_name, possibilities=self.list_commands(ctx), ctx=ctx
            ) from None


def command(name: str | None = None) -> Callable[[Callable[..., Any]], ReconcilerCommand]:
    """A top-level command, found by :class:`ReconcilerGroup` through :data:`COMMANDS`."""
    return click.command(name, cls=ReconcilerCommand)


def group(
    name: str | None = None, *, lazy_commands: Mapping[str, str] | None = None
) -> Callable[[Callable[..., Any]], ReconcilerGroup]:
    """A command group, found like :func:`command`; its own commands may be lazy too."""
    return click.group(name, cls=ReconcilerGroup, lazy_commands=lazy_commands)


# Where each top-level command is defined; its module is imported only when it is needed.
COMMANDS = {
    "alerts": "reconciler.cli.alerts_cmds:alerts",
    "apply": "reconciler.cli.review_cmds:apply",
    "check": "reconciler.cli.daemon_cmds:check",
    "config": "reconciler.cli.setup_cmds:config",
    "db": "reconciler.cli.setup_cmds:db",
    "demo": "reconciler.cli.demo_cmd:demo",
    "findings": "reconciler.cli.state_cmds:findings",
    "init": "reconciler.cli.setup_cmds:init",
    "plan": "reconciler.cli.review_cmds:plan",
    "pull": "reconciler.cli.review_cmds:pull",
    "report": "reconciler.cli.report_cmd:report",
    "run": "reconciler.cli.daemon_cmds:run",
    "sandbox": "reconciler.sandbox.cli:sandbox_group",
    "state": "reconciler.cli.state_cmds:state",
}
# What 'reconciler --help' lists for each (each command's first help paragraph; a test
# keeps the two the same).
SUMMARIES = {
    "alerts": "Slack alerts: send a test message, inspect, flush and retry the outbox.",
    "apply": "Acknowledge exactly what a plan showed; refuses a plan made from an older state.",
    "check": "Exit 0 if the running daemon says it is ready, else 1 with the reason.",
    "config": "Inspect the configuration.",
    "db": "Manage the state database schema.",
    "demo": "Fast-forward months of Fastly and Akamai billing against the embedded sandbox.",
    "findings": "List review items (drift and expectation findings) by state.",
    "init": (
        "Create the state directory and database (at the newest schema) and an example config."
    ),
    "plan": ("Refresh, then show drift and expectation findings to review, like 'terraform plan'."),
    "pull": "Pull every configured source now and reconcile it with the state.",
    "report": "Write a review report of the state and print its path.",
    "run": "Run the daemon: scheduled pulls, alert delivery, reports and housekeeping.",
    "sandbox": "A local stand-in for the Fastly and Akamai billing APIs, for trying reconciler.",
    "state": "Inspect the tracked usage lines.",
}


@click.group(
    cls=ReconcilerGroup,
    lazy_commands=COMMANDS,
    summaries=SUMMARIES,
    context_settings={"help_option_names": ["-h", "--help"]},
)
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
        from reconciler.cli.faults import explain

        message = explain(exc)
        if message is None:
            raise
        click.echo(redact(f"error: {message}"), err=True)
        sys.exit(1)
