"""Options shared by several commands, validated the same way everywhere.

``--source`` names a configured source: an unknown one is an error that lists the configured
ones, in every command; ``--team`` names a declared team (or ``unallocated``). ``--month``
is a ``YYYY-MM`` month, ``--as-of`` a ``YYYY-MM-DD`` day.
"""

from __future__ import annotations

from collections.abc import Iterable
from datetime import date

import click

from reconciler.domain import Month
from reconciler.errors import ConfigError
from reconciler.settings import Settings
from reconciler.team_settings import UNALLOCATED, known_team


def check_sources(settings: Settings, names: Iterable[str]) -> list[str]:
    """``names`` if each is a configured source (all sources when none is given)."""
    known = [s.name for s in settings.sources]
    wanted = list(names)
    unknown = [n for n in wanted if n not in known]
    if unknown:
        raise ConfigError(
            [
                f"--source: no source named {n!r} (configured: {', '.join(known) or 'none'})"
                for n in unknown
            ]
        )
    return wanted or known


def check_team(settings: Settings, name: str | None) -> str | None:
    """``name`` if it is a declared team (or ``unallocated``); None stays None."""
    if name is None or known_team(settings.teams, name):
        return name
    known = ", ".join([t.name for t in settings.teams] + [UNALLOCATED])
    raise ConfigError([f"--team: no team named {name!r} (declared: {known})"])


def parse_month(_ctx: click.Context, _param: click.Parameter, value: str | None) -> Month | None:
    if value is None:
        return None
    try:
        return Month.parse(value)
    except ValueError:
        raise click.BadParameter(f"{value!r} is not a month (expected YYYY-MM)") from None


def parse_day(_ctx: click.Context, _param: click.Parameter, value: str | None) -> date | None:
    if value is None:
        return None
    try:
        return date.fromisoformat(value)
    except ValueError:
        raise click.BadParameter(f"{value!r} is not a date (expected YYYY-MM-DD)") from None
