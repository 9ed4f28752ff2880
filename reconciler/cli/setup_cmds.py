"""``init``, ``config check``, ``db upgrade`` and ``db current``."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import click
from pydantic import SecretStr

from reconciler.cli import AppContext, command, group, pass_app, run_async
from reconciler.cli.config_notes import config_warnings
from reconciler.cli.stat_types import seen_stat_types, stat_types_json, stat_types_text
from reconciler.errors import ConfigError, MissingSecretError
from reconciler.secrets import SecretRef, resolve_secret, secret_path
from reconciler.settings import LOCAL_CONFIG, AkamaiSourceSettings, Settings, find_config_file
from reconciler.store.backup import backup
from reconciler.store.db import (
    configured_engine,
    current_revision,
    head_revision,
    open_configured_state,
    sqlite_path,
    upgrade,
)
from reconciler.store.marker import marker_path


def example_config_text() -> str:
    """The commented example configuration shipped with reconciler."""
    package_dir = Path(__file__).resolve().parent.parent
    for candidate in (
        package_dir.parent / "config" / "reconciler.example.toml",
        package_dir / "_config" / "reconciler.example.toml",
    ):
        if candidate.is_file():
            return candidate.read_text(encoding="utf-8")
    raise click.ClickException("the example configuration is missing from this installation")


@command()
@click.option(
    "--write-config/--no-write-config",
    default=True,
    show_default=True,
    help="Write ./reconciler.toml from the example when no configuration file exists.",
)
@pass_app
def init(app: AppContext, write_config: bool) -> None:
    """Create the state directory and database (at the newest schema) and an example config."""
    if write_config and find_config_file(app.config_path) is None:
        LOCAL_CONFIG.write_text(example_config_text(), encoding="utf-8")
        click.echo(f"wrote example configuration to {LOCAL_CONFIG}")
    settings = app.settings
    settings.state_directory.mkdir(parents=True, exist_ok=True, mode=0o700)
    before, after = run_async(_upgrade(settings, fresh=True))
    click.echo(f"state directory: {settings.state_directory}")
    click.echo(f"database: {_display_url(settings.database_url)} (schema {after})")
    if before == after:
        click.echo("already up to date")


async def _upgrade(settings: Settings, *, fresh: bool = False) -> tuple[str | None, str | None]:
    """Migrate; only ``init`` (``fresh``) may build a state where one was lost."""
    url = settings.database_url
    engine = configured_engine(settings, create=True)
    try:
        marker = marker_path(settings.state_directory, url)
        return await upgrade(engine, marker=marker, fresh=fresh)
    finally:
        await engine.dispose()


@group()
def config() -> None:
    """Inspect the configuration."""


@config.command("check")
@click.option("--json", "as_json", is_flag=True, help="Print the effective configuration as JSON.")
@pass_app
def config_check(app: AppContext, as_json: bool) -> None:
    """Validate the configuration and its secrets; print it with secrets masked.

    Exits 0 when everything is valid, 1 with every problem and its key path otherwise.
    """
    try:
        settings = app.settings
    except ConfigError as exc:
        _print_problems(exc.problems, exc.path)
        raise click.exceptions.Exit(1) from None
    secrets, problems = check_secrets(settings)
    effective = effective_config(settings, secrets)
    seen, note = run_async(seen_stat_types(settings))
    warnings = run_async(config_warnings(settings, os.environ))
    if as_json:
        if seen:
            effective["stat_types"] = stat_types_json(seen)
        effective["warnings"] = warnings
        click.echo(json.dumps(effective, indent=2))
    else:
        origin = app.loaded_from or "no configuration file (built-in defaults)"
        click.echo(f"# configuration: {origin}")
        click.echo(f"# secrets (masked): {secrets_note(secrets)}")
        click.echo(to_toml(readable_config(effective)))
        click.echo("\n".join(stat_types_text(seen, note)))
        for warning in warnings:
            click.echo(f"warning: {warning}", err=True)
    if problems:
        _print_problems(problems, str(app.loaded_from) if app.loaded_from else None)
        raise click.exceptions.Exit(1)


def _print_problems(problems: list[str], path: str | None) -> None:
    where = f" in {path}" if path else ""
    click.echo(f"configuration problems{where}:", err=True)
    for problem in problems:
        click.echo(f"  {problem}", err=True)


def check_secrets(settings: Settings) -> tuple[dict[str, str], list[str]]:
    """Resolve every secret the configuration needs; return masked descriptions and problems."""
    found: dict[str, str] = {}
    problems: list[str] = []
    for index, source in enumerate(settings.sources):
        try:
            if isinstance(source, AkamaiSourceSettings):
                from reconciler.providers.edgegrid import EdgeGridCredentials

                path = secret_path(source.edgerc_ref(index))
                EdgeGridCredentials.from_edgerc(path, source.section)
                found[source.name] = f"edgerc {path} [{source.section}] (secrets masked)"
            else:
                resolve_secret(source.token_ref(index))
                found[source.name] = "token ********"
        except (MissingSecretError, ConfigError) as exc:
            problems.extend(exc.problems)
    try:
        url = resolve_secret(settings.alerts.slack.webhook_ref())
        found["slack"] = "webhook URL ********"
        problems += _url_problems(settings.alerts.slack.webhook_ref(), url)
    except MissingSecretError:
        found["slack"] = "no webhook configured (alerts are kept undelivered)"
    refs = [route.webhook_ref(i) for i, route in enumerate(settings.alerts.slack.routes)]
    refs += [channel.url_ref(i) for i, channel in enumerate(settings.alerts.channels)]
    for ref in refs:
        if ref is None:
            continue
        try:
            problems += _url_problems(ref, resolve_secret(ref))
        except MissingSecretError:
            continue  # delivery keeps such messages and says so; not a configuration error
    return found, problems


def _url_problems(ref: SecretRef, url: SecretStr) -> list[str]:
    """What ``alerts test`` and delivery would refuse about this URL, by key path."""
    from reconciler.alerts.webhook import webhook_url_problem

    text = url.get_secret_value()
    problem = webhook_url_problem(text)
    if problem is None:
        return []
    origin = f" (from ${ref.env})" if ref.env and os.environ.get(ref.env) == text else ""
    return [f"{ref.key_path}: {ref.what}{origin}: {problem}"]


def effective_config(settings: Settings, secrets: dict[str, str]) -> dict[str, Any]:
    data = settings.model_dump(mode="json", exclude_none=True)
    data["state"]["directory"] = str(settings.state_directory)
    data["state"]["database_url"] = _display_url(settings.database_url)
    for source in data["sources"]:
        source["credentials"] = secrets.get(source["name"], "")
    data["alerts"]["slack"]["webhook"] = secrets.get("slack", "")
    return data


def readable_config(effective: dict[str, Any]) -> dict[str, Any]:
    """The effective configuration without the secrets' descriptions: TOML that reads back
    as the same Settings (the secrets stay where the configuration says they are)."""
    data = json.loads(json.dumps(effective))
    for source in data["sources"]:
        source.pop("credentials", None)
    data["alerts"]["slack"].pop("webhook", None)
    return dict(data)


def secrets_note(secrets: dict[str, str]) -> str:
    return "; ".join(f"{name}: {what}" for name, what in secrets.items()) or "none needed"


def _display_url(url: str) -> str:
    from sqlalchemy.engine import make_url

    return make_url(url).render_as_string(hide_password=True)


def to_toml(data: dict[str, Any], prefix: str = "") -> str:
    """A small TOML writer for the effective configuration (scalars, lists, tables)."""
    lines: list[str] = []
    tables: list[str] = []
    for key, value in data.items():
        name = f"{prefix}.{key}" if prefix else key
        if isinstance(value, dict):
            body = to_toml(value, name)
            tables.append(f"[{name}]\n{body}" if body.strip() else f"[{name}]\n")
        elif isinstance(value, list) and value and all(isinstance(v, dict) for v in value):
            for item in value:
                tables.append(f"[[{name}]]\n{to_toml(item, name)}")
        else:
            lines.append(f"{key} = {json.dumps(value)}")
    return "\n".join(lines + ([""] if lines and tables else []) + tables)


@group()
def db() -> None:
    """Manage the state database schema."""


@db.command("upgrade")
@pass_app
def db_upgrade(app: AppContext) -> None:
    """Migrate the state database to the newest schema (safe to run on every start)."""
    settings = app.settings
    before, after = run_async(_upgrade(settings))
    if before == after:
        click.echo(f"already at {after}")
    else:
        click.echo(f"upgraded {before or 'empty'} -> {after}")


@db.command("backup")
@click.argument("file", type=click.Path(dir_okay=False, path_type=Path))
@pass_app
def db_backup(app: AppContext, file: Path) -> None:
    """Copy the SQLite state database to FILE, safely while the daemon runs (PostgreSQL:
    use pg_dump)."""
    settings = app.settings

    async def _backup() -> int:
        async with open_configured_state(settings) as engine:
            return await backup(engine, sqlite_path(settings.database_url), file)

    size = run_async(_backup())
    click.echo(f"backed up {_display_url(settings.database_url)} to {file} ({size} bytes)")


@db.command("current")
@click.option("--json", "as_json", is_flag=True, help="Print the revisions as JSON.")
@pass_app
def db_current(app: AppContext, as_json: bool) -> None:
    """Show the schema revision of the state database and the newest one."""

    async def _current() -> str | None:
        engine = configured_engine(app.settings)
        try:
            return await current_revision(engine)
        finally:
            await engine.dispose()

    current = run_async(_current())
    head = head_revision()
    if as_json:
        data = {"current": current, "newest": head, "up_to_date": current == head}
        click.echo(json.dumps(data, indent=2))
        return
    state = "up to date" if current == head else "out of date: run 'reconciler db upgrade'"
    click.echo(f"current: {current or 'empty'}\nnewest:  {head}\n{state}")
