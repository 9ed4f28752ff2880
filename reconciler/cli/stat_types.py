"""What ``config check`` says about the stat types in the state: each one's measure kind and why.

Read-only: a missing database or one at another schema is a note, never an error or a write.
"""

from __future__ import annotations

from typing import Any

from reconciler.errors import ReconcilerError
from reconciler.settings import Settings
from reconciler.store.db import check_schema, configured_engine, reader
from reconciler.store.measures import StatType, stat_types


async def seen_stat_types(settings: Settings) -> tuple[list[StatType], str]:
    """The stat types of the state classified with this configuration, or why there are none."""
    try:
        engine = configured_engine(settings)
    except ReconcilerError as exc:
        return [], f"no stat types listed: {exc}"
    try:
        await check_schema(engine)
        async with reader(engine).connect() as conn:
            return await stat_types(conn, settings.measures), ""
    except ReconcilerError as exc:
        return [], f"no stat types listed: {exc}"
    except OSError as exc:
        return [], f"no stat types listed: the state database cannot be read ({exc.strerror})"
    finally:
        await engine.dispose()


def describe(stat: StatType) -> str:
    product = stat.product_name or stat.product
    line = (
        f"{stat.source} · {product} · {stat.usage_type} ({stat.unit}): "
        f"{stat.classified.kind} — {stat.classified.reason}"
    )
    if stat.stored_kind != stat.classified.kind.value:
        line += f" (stored as {stat.stored_kind} until the source's next pull)"
    return line


def stat_types_text(found: list[StatType], note: str) -> list[str]:
    if note:
        return [f"# {note}"]
    if not found:
        return ["# no stat types in the state yet (nothing pulled)"]
    return ["# stat types in the state: measure kind and why"] + [
        f"#   {describe(stat)}" for stat in found
    ]


def stat_types_json(found: list[StatType]) -> list[dict[str, Any]]:
    return [
        {
            "source": s.source,
            "provider": s.provider,
            "product": s.product,
            "product_name": s.product_name,
            "usage_type": s.usage_type,
            "unit": s.unit,
            "lines": s.lines,
            "kind": s.classified.kind.value,
            "reason": s.classified.reason,
            "stored_kind": s.stored_kind,
        }
        for s in found
    ]
