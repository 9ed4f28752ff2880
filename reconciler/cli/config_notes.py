"""What ``config check`` adds to the validation: warnings that are not errors.

A configuration with no sources, each environment variable that overrides a key (named, so
a surprising value can be traced), and sources the state holds lines of that the
configuration no longer names (a renamed source: its lines stay in the state, unpulled).
Read-only: a state that cannot be read is simply not consulted.
"""

from __future__ import annotations

from collections.abc import Mapping

from sqlalchemy import select

from reconciler.cli.faults import explain
from reconciler.errors import ReconcilerError
from reconciler.settings import Settings
from reconciler.store.db import check_schema, configured_engine, reader
from reconciler.store.ingest import lines_t

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


async def unconfigured_sources(settings: Settings) -> list[str]:
    """Sources with lines in the state that the configuration does not name."""
    try:
        engine = configured_engine(settings)
    except ReconcilerError:
        return []
    try:
        await check_schema(engine)
        async with reader(engine).connect() as conn:
            stored = (await conn.execute(select(lines_t.c.source).distinct())).scalars().all()
    except Exception as exc:
        if isinstance(exc, ReconcilerError) or explain(exc) is not None:
            return []
        raise
    finally:
        await engine.dispose()
    configured = {s.name for s in settings.sources}
    return sorted(str(name) for name in stored if name not in configured)


async def config_warnings(settings: Settings, environ: Mapping[str, str]) -> list[str]:
    warnings = []
    if not settings.sources:
        warnings.append("no [[sources]] configured: reconciler has nothing to pull")
    for name in await unconfigured_sources(settings):
        warnings.append(
            f"the state has lines of source {name!r}, which the configuration does not name "
            "(renamed or removed?): its lines are kept but no longer pulled"
        )
    return warnings + env_overrides(environ)
