"""What ``config check`` adds to the validation: warnings that are not errors.

A configuration with no sources, each environment variable that overrides a key (named, so
a surprising value can be traced), and sources the state holds lines of that the
configuration no longer names (a renamed source: its lines stay in the state, unpulled);
with ``[[teams]]``, the rules that are the first match of no line in the state and the lines
no rule owns. Which lines those are follows the showback's rule per source and month
(:func:`reconciler.reconcile.group_shares.breakdown_lines`): an account-level line of a month
with per-service lines (Fastly services, Akamai CP codes) is shared cost, not listed, and a
CP-code line of a month its reporting groups break down (left from before a switch to
reporting groups) counts in nobody's usage, so it is not listed as unallocated either.
Read-only: a state that cannot be read is simply not consulted.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Mapping, Sequence
from typing import Any

from sqlalchemy import Select, func, select

from reconciler.cli.faults import explain
from reconciler.domain import reporting_group_of
from reconciler.errors import ReconcilerError
from reconciler.reconcile.group_shares import breakdown_lines
from reconciler.reconcile.ownership import owner_of, unused_rules
from reconciler.settings import Settings
from reconciler.store.db import check_schema, configured_engine, reader
from reconciler.store.ingest import lines_t
from reconciler.team_settings import UNALLOCATED, TeamSettings

PREFIX = "RECONCILER_"
NOT_KEYS = {"RECONCILER_CONFIG"}


def env_overrides(environ: Mapping[str, str]) -> list[str]:
    """``RECONCILER_SOURCES__0__TIMEOUT_S overrides sources[0].timeout_s`` for each override."""
    notes = []
    for name in sorted(environ):
        if not name.startswith(PREFIX) or name in NOT_KEYS or name.startswith(PREFIX + "TEST_"):
            continue
        parts = name.removeprefix(PREFIX).lower().split("__")
        key = "".join(f"[{p}]" if p.isdigit() else f".{p}" for p in parts).lstrip(".")
        notes.append(f"environment variable {name} overrides {key}")
    return notes


async def _read_state(settings: Settings, query: Select[Any]) -> list[Any] | None:
    """The rows of ``query`` on the state, or None when there is no readable state."""
    try:
        engine = configured_engine(settings)
    except ReconcilerError:
        return None
    try:
        await check_schema(engine)
        async with reader(engine).connect() as conn:
            return list((await conn.execute(query)).all())
    except Exception as exc:
        if isinstance(exc, ReconcilerError) or explain(exc) is not None:
            return None
        raise
    finally:
        await engine.dispose()


async def unconfigured_sources(settings: Settings) -> list[str]:
    """Sources with lines in the state that the configuration does not name."""
    stored = await _read_state(settings, select(lines_t.c.source).distinct())
    configured = {s.name for s in settings.sources}
    return sorted(str(r.source) for r in stored or [] if r.source not in configured)


async def ownership_warnings(settings: Settings) -> list[str]:
    """``[[teams]]`` rules no line is owned by, and what in the state no rule owns."""
    if not settings.teams:
        return []
    c = lines_t.c
    columns = ("source", "account", "product", "product_name", "usage_type", "region")
    grouping = (*(c[n] for n in columns), c.service, c.service_name, c.month)
    query = (
        select(*grouping, func.count().label("lines"))
        .where(c.present.is_(True))
        .group_by(*grouping)
    )
    rows = await _read_state(settings, query)
    if rows is None:
        return []
    notes = [
        f"{rule} is the first match of no line in the state"
        for rule in unused_rules(settings.teams, rows)
    ]
    return notes + unowned_notes(settings.teams, rows)


def unowned_notes(teams: Sequence[TeamSettings], rows: Sequence[Any]) -> list[str]:
    """``no [[teams]] rule matches ...`` for what no rule owns of ``rows`` (the state's lines
    counted per line identity and month), broken down per source and month as the showback
    breaks it down."""
    kept = breakdown_lines(rows)
    per_service = {
        (r.source, r.month) for r in kept if r.service and reporting_group_of(r.service) is None
    }
    unowned: Counter[str] = Counter()
    for r in kept:
        if owner_of(teams, r) != UNALLOCATED:
            continue
        if r.service:
            unowned[f"{r.source} service {r.service_name or r.service}"] += r.lines
        elif (r.source, r.month) not in per_service:
            unowned[f"{r.source} {r.account} product {r.product_name or r.product}"] += r.lines
    return [
        f"no [[teams]] rule matches {what} ({count} lines): unallocated"
        for what, count in sorted(unowned.items())
    ]


async def config_warnings(settings: Settings, environ: Mapping[str, str]) -> list[str]:
    warnings = []
    if not settings.sources:
        warnings.append("no [[sources]] configured: reconciler has nothing to pull")
    warnings += await ownership_warnings(settings)
    for name in await unconfigured_sources(settings):
        warnings.append(
            f"the state has lines of source {name!r}, which the configuration does not name "
            "(renamed or removed?): its lines are kept but no longer pulled"
        )
    return warnings + env_overrides(environ)
